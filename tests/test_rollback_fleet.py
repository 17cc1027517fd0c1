"""Rollbacks that drive real worker processes, recorded step by step.

Every test here runs the real `ledger` command in child processes and real
`ledger.sim.worker` processes that hold calls and drain on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.sim.local_driver import LocalProcessDriver
from tests.conftest import Env

#: Short calls arriving often: the simulated fleet drains within a second or two.
FAST = {"call_seconds": [0.2, 0.6], "arrival_rate": 6}


def sim(env: Env, **changes: Any) -> list[str]:
    """The local driver with simulated workers set to FAST (and `changes`), as CLI options."""
    path = env.dir / f"sim-{len(list(env.dir.glob('sim-*.json')))}.json"
    path.write_text(json.dumps({**FAST, **changes}))
    return ["--driver", "local", "--driver-config", str(path)]


def ledger_cmd(env: Env, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger.cli", *argv, *env.args(), "--fleet", "prod"],
                          capture_output=True, text=True, timeout=timeout)


def records(env: Env) -> list[dict[str, Any]]:
    with env.open(writable=False) as lg:
        return list(lg.records("prod"))


def events(env: Env) -> Counter[str]:
    return Counter(r["event"] for r in records(env))


def stop_workers(rundir: Path, grace: float = 20) -> None:
    """Drain whatever is still running for up to `grace` seconds, then make sure nothing
    outlives the test."""
    if not rundir.exists():
        return
    driver = LocalProcessDriver("", "", "prod", rundir)
    driver.stop_all()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(driver.is_alive(p.stem) for p in rundir.glob("*.lock")):
        time.sleep(0.1)
    for path in rundir.glob("*.lock"):
        pid = driver.pid(path.stem)
        if pid and driver.is_alive(path.stem):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fleet_env(env: Env) -> Iterator[Env]:
    yield env
    stop_workers(env.rundir)


def deploy(env: Env, version: str, **settings: Any) -> None:
    done = ledger_cmd(env, "deploy", version, "--actor", "ci", "--drive", "--workers", "2",
                      *sim(env, **settings))
    assert done.returncode == 0, done.stderr
    assert "fleet clean" in done.stdout


def record_deploy(env: Env, version: str) -> None:
    """A deploy recorded without workers: for tests of decisions, not of the fleet."""
    for argv in (["deploy", version], ["complete", version]):
        assert ledger_cmd(env, *argv, "--actor", "ci").returncode == 0


def test_rollback_returns_to_last_good_and_confirms_the_fleet_clean(fleet_env: Env) -> None:
    env = fleet_env
    deploy(env, "v1")
    deploy(env, "v2", fail_rate={"v2": 0.7})
    done = ledger_cmd(env, "rollback", "--actor", "on-call", "--reason", "elevated session errors", *sim(env))
    assert done.returncode == 0, done.stderr
    history = records(env)
    rolled = [r for r in history if r["event"] == "deployment.rolled_back"]
    assert len(rolled) == 1
    assert (rolled[0]["version"], rolled[0]["from_version"]) == ("v1", "v2")
    assert rolled[0]["actor"] == "on-call" and rolled[0]["reason"] == "elevated session errors"
    after = [r for r in history if r["seq"] > rolled[0]["seq"]]
    started = {r["worker_id"] for r in after if r["event"] == "worker.started"}
    assert started == set(rolled[0]["start_workers"])
    drains = [r["worker_id"] for r in after if r["event"] == "deployment.drain_started"]
    assert sorted(drains) == sorted(rolled[0]["drain_workers"]) and len(drains) == 2
    exits = [r for r in after if r["event"] == "worker.exited"]
    assert {r["worker_id"] for r in exits} == set(drains)
    assert all(r["active_sessions"] == 0 for r in exits)  # zero dropped calls
    first_drain = min(r["seq"] for r in after if r["event"] == "deployment.drain_started")
    assert all(r["seq"] < first_drain for r in after if r["event"] == "worker.started")
    completed = [r for r in after if r["event"] == "rollback.completed"]
    assert len(completed) == 1 and completed[0]["dropped_calls"] == 0
    assert completed[0]["seq"] > max(r["seq"] for r in exits)
    fleet = orjson.loads(ledger_cmd(env, "fleet", "--json").stdout)
    assert fleet["summary"]["clean"] and fleet["summary"]["versions"] == {"v1": 2}
    assert ledger_cmd(env, "verify").returncode == 0


def test_refused_rollback_is_recorded_and_leaves_the_fleet_alone(fleet_env: Env) -> None:
    env = fleet_env
    deploy(env, "v1")
    stop_workers(env.rundir)  # a quiet fleet, so every new record is the command's
    before = events(env)
    done = ledger_cmd(env, "rollback", "--actor", "on-call", "--reason", "panic", "--to", "v1")
    assert done.returncode == 1
    assert "target_is_current" in done.stderr
    after = events(env)
    assert after - before == Counter({"rollback.rejected": 1})
    rejected = next(r for r in records(env) if r["event"] == "rollback.rejected")
    assert rejected["actor"] == "on-call" and rejected["check"] == "target_is_current"


def test_malformed_rollback_writes_nothing(fleet_env: Env) -> None:
    env = fleet_env
    record_deploy(env, "v1")
    record_deploy(env, "v2")
    before = records(env)
    for argv in (["--actor", "", "--reason", "x"], ["--actor", "a", "--reason", " "],
                 ["--actor", "a"], ["--actor", "a", "--reason", "r", "--workers", "0"]):
        done = ledger_cmd(env, "rollback", *argv)
        assert done.returncode == 2, argv
        assert done.stderr.count("\n") == 1
    assert records(env) == before


def test_dry_run_prints_the_plan_and_writes_nothing(fleet_env: Env) -> None:
    env = fleet_env
    record_deploy(env, "v1")
    record_deploy(env, "v2")
    assert ledger_cmd(env, "worker", "start", "w7", "--version", "v2", "--actor", "p").returncode == 0
    before = records(env)
    done = ledger_cmd(env, "rollback", "--actor", "on-call", "--reason", "errors", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "return to v1" in done.stdout and "good since seq" in done.stdout
    assert "skipped v2: is the version being left" in done.stdout
    assert "drain workers: w7" in done.stdout and "drain timeout: 120s" in done.stdout
    assert records(env) == before


def test_a_repeated_idempotency_key_returns_the_first_result(fleet_env: Env) -> None:
    env = fleet_env
    record_deploy(env, "v1")
    record_deploy(env, "v2")
    args = ["rollback", "--actor", "on-call", "--reason", "errors", "--idempotency-key", "inc-42",
            "--no-drive"]
    first = ledger_cmd(env, *args)
    assert first.returncode == 0, first.stderr
    before = records(env)
    again = ledger_cmd(env, *args)
    assert again.returncode == 0
    assert "writing nothing" in again.stdout
    assert records(env) == before
    rejected_first = ledger_cmd(env, "rollback", "--actor", "a", "--reason", "r", "--to", "v9",
                                "--idempotency-key", "inc-43")
    assert rejected_first.returncode == 1
    before = records(env)
    rejected_again = ledger_cmd(env, "rollback", "--actor", "a", "--reason", "r", "--to", "v9",
                                "--idempotency-key", "inc-43")
    assert rejected_again.returncode == 1 and "target_unknown" in rejected_again.stderr
    assert records(env) == before


def test_a_drain_past_its_timeout_is_recorded_stuck_and_the_worker_left_running(fleet_env: Env) -> None:
    env = fleet_env
    deploy(env, "v1")
    # v2's calls last long; the rollback allows 1 s to drain
    deploy(env, "v2", call_seconds=[30, 40], arrival_rate=20)
    time.sleep(1.0)
    done = ledger_cmd(env, "rollback", "--actor", "on-call", "--reason", "errors",
                      "--drain-timeout", "1", *sim(env))
    assert done.returncode == 1
    counted = events(env)
    assert counted["deployment.drain_stuck"] == 2
    assert counted["rollback.failed"] == 1 and counted["rollback.completed"] == 0
    driver = LocalProcessDriver("", "", "prod", env.rundir)
    stuck = [r["worker_id"] for r in records(env) if r["event"] == "deployment.drain_stuck"]
    assert all(driver.is_alive(w) for w in stuck)  # holding calls: never killed
    stop_workers(env.rundir, grace=0)  # their 30-40 s calls would outlast any drain the teardown waits for


def test_a_worker_that_dies_holding_calls_is_recorded_as_dropped_calls(fleet_env: Env) -> None:
    env = fleet_env
    deploy(env, "v1")
    deploy(env, "v2", call_seconds=[20, 30], arrival_rate=20)
    time.sleep(1.5)
    driver = LocalProcessDriver("", "", "prod", env.rundir)
    victims = [r["worker_id"] for r in records(env) if r["event"] == "worker.started"
               and r["version"] == "v2"]
    rollback = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "rollback", "--actor", "on-call", "--reason", "errors",
         "--drain-timeout", "60", *sim(env), *env.args(), "--fleet", "prod"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and events(env)["deployment.drain_started"] < 4:
        time.sleep(0.1)
    for worker_id in victims:  # the machine dies under them
        pid = driver.pid(worker_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    _out, err = rollback.communicate(timeout=120)
    assert rollback.returncode == 0, err
    exits = [r for r in records(env) if r["event"] == "worker.exited" and r["worker_id"] in victims]
    assert len(exits) == 2 and all(r["active_sessions"] > 0 for r in exits)
    assert all(r["reason"] == "exited without reporting" for r in exits)
    completed = next(r for r in records(env) if r["event"] == "rollback.completed")
    assert completed["dropped_calls"] == sum(r["active_sessions"] for r in exits)


def wait_for(env: Env, event: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events(env)[event] >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event} within {timeout}s")


@pytest.mark.parametrize("kill_after", [
    "deployment.rolled_back", "worker.started", "deployment.drain_started", "worker.exited",
    "rollback.completed",
])
def test_the_executor_killed_at_any_step_resumes_and_repeats_nothing(fleet_env: Env,
                                                                     kill_after: str) -> None:
    env = fleet_env
    deploy(env, "v1")
    deploy(env, "v2")
    already = events(env)
    before = {k: v for k, v in already.items() if k != "worker.sessions"}
    seq_before = max(r["seq"] for r in records(env))
    rollback = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "rollback", "--actor", "on-call", "--reason", "errors",
         "--step-delay", "0.7", *sim(env), *env.args(), "--fleet", "prod"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(r["event"] == kill_after for r in records(env) if r["seq"] > seq_before):
            break
        time.sleep(0.05)
    rollback.send_signal(signal.SIGKILL)
    rollback.wait(timeout=10)
    resumed = ledger_cmd(env, "drive", *sim(env))
    assert resumed.returncode == 0, resumed.stderr
    after = [r for r in records(env) if r["seq"] > seq_before]
    counted = Counter(r["event"] for r in after)
    rolled = [r for r in after if r["event"] == "deployment.rolled_back"]
    assert len(rolled) == 1
    assert counted["rollback.completed"] == 1 and counted["rollback.failed"] == 0
    started = Counter(r["worker_id"] for r in after if r["event"] == "worker.started")
    assert started == Counter({w: 1 for w in rolled[0]["start_workers"]})
    drained = Counter(r["worker_id"] for r in after if r["event"] == "deployment.drain_started")
    assert drained == Counter({w: 1 for w in rolled[0]["drain_workers"]})
    exited = Counter(r["worker_id"] for r in after if r["event"] == "worker.exited")
    assert exited == Counter({w: 1 for w in rolled[0]["drain_workers"]})
    assert all(r["active_sessions"] == 0 for r in after if r["event"] == "worker.exited")
    assert before["deployment.completed"] == 2
    again = ledger_cmd(env, "drive")
    assert again.returncode == 0 and "nothing to drive" in again.stdout
    assert ledger_cmd(env, "verify").returncode == 0


def test_a_rollback_of_a_deploy_in_flight_stops_the_deploys_executor(fleet_env: Env) -> None:
    """The deploy's executor sees a newer move in flight and stops without another step:
    it never drains the rollback's workers, never records its deploy as completed."""
    env = fleet_env
    deploy(env, "v1", call_seconds=[6, 8], arrival_rate=20)  # v1 calls take a while to end
    time.sleep(1.0)
    deploying = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "deploy", "v2", "--actor", "ci", "--drive", "--workers", "2",
         *sim(env), *env.args(), "--fleet", "prod"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    wait_for(env, "deployment.drain_started")  # v2 is up, v1 is draining
    rollback = ledger_cmd(env, "rollback", "--actor", "on-call", "--reason", "v2 is bad", *sim(env))
    assert rollback.returncode == 0, rollback.stderr
    out, _err = deploying.communicate(timeout=120)
    assert deploying.returncode == 1 and "no longer in flight" in out
    history = records(env)
    rolled = next(r for r in history if r["event"] == "deployment.rolled_back")
    after = [r for r in history if r["seq"] > rolled["seq"]]
    assert not any(r["event"] == "deployment.completed" for r in after)
    drained = {r["worker_id"] for r in after if r["event"] == "deployment.drain_started"}
    assert not drained & set(rolled["start_workers"])
    assert sum(r["event"] == "rollback.completed" for r in after) == 1
    fleet = orjson.loads(ledger_cmd(env, "fleet", "--json").stdout)
    assert fleet["summary"]["clean"] and fleet["summary"]["current"] == "v1"
    assert set(fleet["summary"]["versions"]) == {"v1"}


def test_the_local_workers_a_drive_started_can_be_listed_and_stopped(fleet_env: Env) -> None:
    env = fleet_env
    deploy(env, "v1")
    listed = ledger_cmd(env, "workers", "list")
    assert listed.returncode == 0, listed.stderr
    running = [line.split()[0] for line in listed.stdout.splitlines() if line.endswith("running")]
    assert len(running) == 2 and all(w.startswith("v1-op") for w in running)
    stopped = ledger_cmd(env, "workers", "stop", "--timeout", "60")
    assert stopped.returncode == 0, stopped.stderr
    assert all(f"{w}: stopped" in stopped.stdout for w in running)
    exits = [r["worker_id"] for r in records(env) if r["event"] == "worker.exited"]
    assert sorted(exits) == sorted(running)  # each recorded its own exit
    fleet = json.loads(ledger_cmd(env, "fleet", "-o", "json").stdout)
    assert fleet["summary"]["live_workers"] == 0
    again = ledger_cmd(env, "workers", "stop", "nope")
    assert again.returncode == 2 and "no local worker 'nope'" in again.stderr
