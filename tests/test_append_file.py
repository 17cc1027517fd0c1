"""`ledger append --file`: resumable and idempotent, with a word on where it stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import commands as build
from tests.conftest import Env, run_cli, seed


def write_facts(path: Path, n: int, *extra: dict[str, object]) -> Path:
    lines = [json.dumps(build.worker_sessions("w0", "v1", i % 40, "w0")) for i in range(n)]
    lines += [json.dumps(body) for body in extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def fleet_size(env: Env) -> int:
    with env.open(writable=False) as lg:
        return lg.head("prod").seq


def test_a_rerun_of_the_same_file_writes_nothing_twice(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    path = write_facts(env.dir / "facts.jsonl", 25, {**build.verdict("version.verified", "v1", "qa")})
    first = run_cli(capsys, "append", "--file", str(path), *env.args(), "--fleet", "prod")
    assert first.code == 0, first.err
    assert "appended 26 record(s)" in first.out and "0 already in the ledger" in first.out
    size = fleet_size(env)
    again = run_cli(capsys, "append", "--file", str(path), *env.args(), "--fleet", "prod")
    assert again.code == 0, again.err
    assert "appended 0 record(s)" in again.out and "25 already in the ledger" in again.out
    assert "was used at seq" in again.out  # the decision line replays by its file-and-line key
    assert fleet_size(env) == size
    with env.open(writable=False) as lg:
        stored = [r for r in lg.records("prod") if r.get("input_file")]
    assert [r["input_line"] for r in stored] == list(range(1, 27))


def test_a_killed_run_resumes_where_it_stopped(sqlite_env: Env) -> None:
    env = sqlite_env
    with env.open() as lg:
        seed(lg)
    path = write_facts(env.dir / "big.jsonl", 30_000)
    argv = [sys.executable, "-m", "ledger.cli", "append", "--file", str(path), *env.args(), "--fleet", "prod"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while fleet_size(env) < 6 + 10_000 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    partial = fleet_size(env)
    assert 6 < partial < 6 + 30_000, "the kill came too late to test a resume"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{partial - 6} already in the ledger" in done.stdout
    with env.open(writable=False) as lg:
        lines = [r["input_line"] for r in lg.records("prod") if r.get("input_file")]
    assert lines == list(range(1, 30_001))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_where_it_stopped_is_what_the_ledger_holds(sqlite_env: Env, signum: int) -> None:
    """The line an interrupted run names is the last line stored, even when the signal lands mid-commit."""
    env = sqlite_env
    with env.open() as lg:
        seed(lg)
    path = write_facts(env.dir / "big.jsonl", 40_000)
    argv = [sys.executable, "-m", "ledger.cli", "append", "--file", str(path), *env.args(), "--fleet", "prod"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while fleet_size(env) < 6 + 1 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    run.send_signal(signum)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    with env.open(writable=False) as lg:
        stored = [r["input_line"] for r in lg.records("prod") if r.get("input_file")]
    assert stored == list(range(1, len(stored) + 1))
    (line,) = err.strip().splitlines()
    assert "interrupted; " in line and "run the same command again to resume" in line, line
    if stored:
        assert f"written through line {stored[-1]} (prod seq {6 + len(stored)} " in line, line
    else:
        assert "nothing new was written" in line, line
