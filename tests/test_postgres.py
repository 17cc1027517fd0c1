"""PostgreSQL faults: a server restarted under load, and one that refuses us.

The restart test runs its own throwaway server (scripts/postgres-up), so it
can restart it without disturbing the session's shared server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from tests.conftest import ROOT, run_cli
from tests.test_concurrency import WRITER


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    directory = Path(subprocess.run(["mktemp", "-d", "/tmp/ledger-pg-restart.XXXXXX"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    # durable, whatever the caller's environment says: the tests on this server crash it
    started = subprocess.run([str(ROOT / "scripts" / "postgres-up"), str(directory)],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PG_SYNCHRONOUS_COMMIT": "on"})
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip(), directory
    subprocess.run([str(ROOT / "scripts" / "postgres-down"), str(directory)], capture_output=True,
                   timeout=120)
    subprocess.run(["rm", "-rf", str(directory)], check=False)


def test_a_server_restart_during_an_append_storm_loses_nothing(own_server: tuple[str, Path],
                                                                tmp_path: Path) -> None:
    url, directory = own_server
    key = tmp_path / "ledger.key"
    Ledger.init(url, key).close()
    count, names = 400, ["a", "b", "c"]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(key), name, str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in names]
    for mode in ("fast", "immediate"):
        time.sleep(1.5)
        restarted = subprocess.run([str(ROOT / "scripts" / "postgres-restart"), str(directory), mode],
                                   capture_output=True, text=True, timeout=120)
        assert restarted.returncode == 0, restarted.stderr
    acknowledged = set()
    for proc in writers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        acknowledged |= {(int(s), h) for s, h in (line.split() for line in out.decode().splitlines())}
    assert len(acknowledged) == count * len(names)
    with Ledger.open(url, key, writable=False) as lg:
        assert lg.verify().chains[0].count == len(acknowledged)
        stored = {(r["seq"], r["hash"]) for r in lg.records("prod")}
        facts = sorted((r["actor"], r["active_sessions"]) for r in lg.records("prod"))
    assert stored == acknowledged  # every acknowledged record, and nothing else
    assert facts == sorted((n, i) for n in names for i in range(count))  # none twice


@pytest.mark.parametrize(("how", "message"), [
    ("wrong-password", "password authentication failed"),
    ("unreachable", "Connection refused"),
])
def test_a_server_that_refuses_us_is_one_clear_line(pg_url: str, capsys: pytest.CaptureFixture[str],
                                                    how: str, message: str) -> None:
    url = (pg_url.replace("ledger:ledger@", "ledger:wrong@") if how == "wrong-password"
           else "postgresql://ledger:ledger@127.0.0.1:1/ledger_test")
    for argv in (["verify"], ["deploy", "v1", "--actor", "ci"], ["init"]):
        result = run_cli(capsys, *argv, "--db", url)
        assert result.code == 4  # a storage fault: nothing was read or written
        assert result.err.startswith("ledger: storage fault: cannot connect to ")
        assert message in result.err and result.err.count("\n") == 1
        assert "wrong" not in result.err  # the password is never printed


def test_init_creates_a_missing_schema(pg_url: str, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """`?schema=NAME` names a new ledger's home: `init` makes it, nobody has to by hand."""
    import uuid

    from tests.conftest import _connect

    name = f"fresh_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={name}"
    try:
        result = run_cli(capsys, "init", "--db", url, "--key", str(tmp_path / "k.key"), "--actor", "t")
        assert result.code == 0, result.err
        done = run_cli(capsys, "deploy", "v1", "--actor", "ci", "--db", url, "--key", str(tmp_path / "k.key"))
        assert done.code == 0 and "appended default seq 1" in done.out
        missing = run_cli(capsys, "history", "--db", f"{pg_url}{'&' if '?' in pg_url else '?'}schema=nope_x")
        assert missing.code == 2 and "holds no ledger (run `ledger init`)" in missing.err
    finally:
        with _connect(pg_url) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
