"""Reporter keys for the writers of worker facts: the OpenRTC sink and importer, the local
driver's worker processes and its executor.

In an enforced ledger each signs the facts it writes with a reporter bound to
the workers' ids, so they are recorded as proven; a fact about a worker outside
the binding is refused and recorded. A pool's rollback request is signed by the
sink's requester, or refused unsigned. Real pools (openrtc), real worker
processes, real ledgers on both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openrtc import AgentPool
from openrtc.core.audit import AuditLog

from ledger.app import open_app
from ledger.errors import InputError
from ledger.openrtc.importer import import_files
from ledger.reporter import ReporterKey, reporter_key
from tests.conftest import Env
from tests.test_actors import FLEET, People, as_, cli, enforced_people, ok, records, write_openssh_key
from tests.test_openrtc import make_sink, run_pool, wait_for
from tests.test_rollback_fleet import FAST, stop_workers


@pytest.fixture
def people(env: Env, capsys: pytest.CaptureFixture[str]) -> People:
    """An enforced ledger: alice admin, dave deployer, olga on-call; v1 then v2 deployed by dave
    (recorded, no workers), and reporter `rep` bound to workers `pool-a` and `v*`."""
    people = enforced_people(env, capsys)
    write_openssh_key(env.dir / "rep", "rep@fleet")
    people.keys["rep"] = env.dir / "rep"
    ok(cli(capsys, env, "actors", "add", "rep", "--public-key", f"{env.dir / 'rep'}.pub", "--role",
           "reporter", "--worker", "pool-a", "--worker", "v*", *as_(people, "alice")[2:]))
    for version in ("v1", "v2"):
        ok(cli(capsys, env, *as_(people, "dave", "deploy", version, "--reason", "release")))
        ok(cli(capsys, env, *as_(people, "dave", "complete", version, "--confirm", "test")))
    return people


def verify_actors_line(env: Env) -> str:
    with env.open(writable=False) as lg:
        report = lg.verify(lg.current_key()[1])
    return report.actors.describe() if report.actors else ""


# -- the OpenRTC sink ------------------------------------------------------------------------------


def test_a_sink_with_a_reporter_signs_its_pools_facts(people: People) -> None:
    env = people.env
    rep = people.signer("rep")
    sink = make_sink(env, "pool-a", reporter=rep)

    async def drain(pool: AgentPool) -> None:
        pool.begin_drain()

    run_pool("v2", sink, drain)
    assert sink.close(30)
    facts = [r for r in records(env) if r.get("source_worker") == "pool-a"]
    assert facts and all(r["actor"] == "rep" and r["actor_verified"] is True for r in facts)
    assert any(r["event"] == "deployment.drain_started" for r in facts)
    assert f"{len(facts)} signed fact(s) verified" in verify_actors_line(env)


def test_a_sink_reporting_a_worker_outside_the_binding_is_refused_and_recorded(people: People) -> None:
    env = people.env
    sink = make_sink(env, "pool-z", reporter=people.signer("rep"))
    AuditLog(sink=sink).emit("worker.sessions", version="v2", worker_id="pool-z", active_sessions=1)
    assert sink.close(10)
    last = records(env)[-1]
    assert (last["event"], last["check"], last["command"]) == ("command.rejected", "reporter_unbound",
                                                               "worker.sessions")
    assert last["actor"] == "rep"
    assert not any(r.get("source_worker") == "pool-z" and r["event"] == "worker.sessions"
                   for r in records(env))


@pytest.mark.parametrize("signed", [True, False])
def test_a_pools_rollback_request_needs_the_sinks_requester_signature(people: People,
                                                                      signed: bool) -> None:
    env = people.env
    requester = people.signer("olga") if signed else None
    sink = make_sink(env, "pool-a", may_request={"deployment.rolled_back"}, requester=requester)
    log = AuditLog(sink=sink)
    log.emit("deployment.rolled_back", actor="on-call", target="fleet", version="v1",
             from_version="v2", reason="elevated session errors")
    log.emit("worker.started", version="v1", worker_id="pool-a")  # the fleet back on v1
    if signed:
        assert wait_for(lambda: any(r["event"] == "rollback.completed" for r in records(env)), 20)
    assert sink.close(10)
    decided = [r for r in records(env) if r["event"] in ("deployment.rolled_back", "rollback.rejected")]
    assert len(decided) == 1
    (record,) = decided
    if signed:
        assert record["event"] == "deployment.rolled_back"
        assert (record["actor"], record["actor_verified"]) == ("olga", True)
        assert record["source_worker"] == "pool-a"
        # the sink settles the rollback it requested (no worker is left to move) under the
        # same signature, never unsigned
        settled = [r for r in records(env) if r["event"] == "rollback.completed"]
        assert [(r["actor"], r["actor_verified"]) for r in settled] == [("olga", True)]
        assert not [r for r in records(env) if str(r["event"]).endswith(".rejected")]
    else:
        assert record["event"] == "rollback.rejected" and record["check"] == "actor_unsigned"
        assert record["actor_verified"] is False
    verify_actors_line(env)  # raises if anything recorded is not what was signed


def test_the_importer_signs_facts_with_its_reporter(people: People, tmp_path: Path) -> None:
    env = people.env
    log = tmp_path / "pool.log"
    lines = [{"seq": n, "timestamp": 1700000000.0 + n, "event": "worker.sessions", "actor": "system",
              "target": "worker", "result": "ok", "version": "v2", "worker_id": worker,
              "active_sessions": n} for n, worker in ((1, "pool-a"), (2, "pool-q"))]
    log.write_text("".join(f"audit {json.dumps(line)}\n" for line in lines))
    with open_app(env.db, env.key, projections=env.dir / "views.db") as app:
        import_files(app.ledger, FLEET, [log], worker="pool-a", service=app.service,
                     reporter=people.signer("rep"))
    tail = records(env)[-2:]
    assert all(r["actor"] == "rep" for r in tail)
    assert any(r.get("actor_verified") is True and r["event"] != "command.rejected" for r in tail)
    verify_actors_line(env)


# -- the local driver ------------------------------------------------------------------------------


@pytest.fixture
def fleet_people(people: People) -> Iterator[People]:
    yield people
    stop_workers(people.env.rundir)


def ledger_cmd(env: Env, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger.cli", *argv, *env.args(), "--fleet", FLEET],
                          capture_output=True, text=True, timeout=180)


def test_the_local_driver_with_a_reporter_key_records_signed_worker_facts(fleet_people: People) -> None:
    env = fleet_people.env
    sim = env.dir / "sim.json"
    sim.write_text(json.dumps({**FAST, "max_seconds": 0}))
    done = ledger_cmd(env, "deploy", "v3", "--actor", "dave", "--actor-key", str(fleet_people.key("dave")),
                      "--reason", "release", "--drive", "--workers", "2", "--driver", "local",
                      "--driver-config", str(sim), "--reporter", "rep",
                      "--reporter-key", str(fleet_people.key("rep")))
    assert done.returncode == 0, done.stdout + done.stderr
    stop_workers(env.rundir)  # the workers report their exits, signed
    facts = [r for r in records(env) if r["event"].startswith("worker.")]
    assert {r["event"] for r in facts} >= {"worker.started", "worker.sessions", "worker.exited"}
    assert all(r["actor"] == "rep" and r["actor_verified"] is True for r in facts)
    assert "command.rejected" not in {r["event"] for r in records(env)}
    assert f"{len(facts)} signed fact(s) verified" in verify_actors_line(env)


def test_a_worker_outside_its_reporters_binding_is_refused_and_recorded(fleet_people: People) -> None:
    """A real worker process whose id the reporter is not bound to: each fact it reports is
    refused and recorded, and the worker runs to its end regardless."""
    env = fleet_people.env
    done = subprocess.run([sys.executable, "-m", "ledger.sim.worker", "--db", env.db, "--key", str(env.key),
                           "--fleet", FLEET, "--worker-id", "x9", "--version", "v2",
                           "--rundir", str(env.rundir), "--max-seconds", "0.3", "--arrival-rate", "0",
                           *ReporterKey("rep", fleet_people.key("rep")).argv()],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reporter_unbound" in done.stderr
    refused = [r for r in records(env) if r["event"] == "command.rejected"]
    assert {r["command"] for r in refused} >= {"worker.started", "worker.exited"}
    assert all(r["check"] == "reporter_unbound" for r in refused)
    assert not any(r.get("worker_id") == "x9" for r in records(env))


# -- configuration ---------------------------------------------------------------------------------


def test_a_reporter_needs_both_a_name_and_a_key(tmp_path: Path) -> None:
    assert reporter_key(None, None) is None
    with pytest.raises(InputError, match="--reporter-key"):
        reporter_key("rep", None)
    with pytest.raises(InputError, match="--reporter "):
        reporter_key(None, str(tmp_path / "k"))


def test_a_bad_reporter_key_exits_2_and_writes_nothing(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    before = len(records(env))
    done = subprocess.run([sys.executable, "-m", "ledger.cli", "drive", *env.args(), "--fleet", FLEET,
                           "--reporter", "rep", "--reporter-key", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "not a private key" in done.stderr
    assert len(records(env)) == before


def test_the_reporter_comes_from_the_environment_when_no_flag_names_it(tmp_path: Path) -> None:
    from ledger.config import Config

    config = Config.load({}, {"LEDGER_REPORTER": "rep", "LEDGER_REPORTER_KEY": "k.ssh"})
    assert (config.reporter, config.reporter_key) == ("rep", "k.ssh")
    config = Config.load({"reporter": "other"}, {"LEDGER_REPORTER": "rep"})
    assert config.reporter == "other"


