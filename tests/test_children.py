"""Signing (and verification) workers die with their parent.

A writer killed with SIGKILL runs no cleanup; its forked pool children hold
copies of its open files, the database included, and would otherwise wait for
work forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger import commands as build
from ledger.signing import PARALLEL_MIN

WRITER = """
import multiprocessing, sys, threading, time
from ledger import Ledger, commands as build
db, key, where = sys.argv[1:4]
ledger = Ledger.open(db, key)
bodies = [build.worker_sessions("w", "v1", i, "w") for i in range(COUNT)]
if where == "thread":
    worker = threading.Thread(target=ledger.append_many, args=("prod", bodies))
    worker.start()
    worker.join()  # the thread that started the pool is gone; the pool must keep working
    ledger.append_many("prod", bodies)
else:
    ledger.append_many("prod", bodies)
print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
time.sleep(600)
""".replace("COUNT", str(2 * PARALLEL_MIN))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its reaping is left


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the signing pool starts only with 2+ cores")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_pool_children_exit_when_the_writer_is_killed(tmp_path: Path, where: str) -> None:
    db, key = tmp_path / "l.db", tmp_path / "l.key"
    Ledger.init(db, key).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(key), where],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline()
        children = [int(pid) for pid in line.split()]
        assert children, writer.stderr.read() if writer.poll() is not None else "no pool children"
        assert all(alive(pid) for pid in children)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in children if alive(pid)]
    finally:
        if writer.poll() is None:
            writer.kill()
        for pid in children:  # a failed run leaves no orphan behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    with Ledger.open(db, key, writable=False) as lg:
        assert lg.head("prod").seq == (2 if where == "thread" else 1) * 2 * PARALLEL_MIN


def test_a_pool_started_from_a_finished_thread_keeps_signing(tmp_path: Path) -> None:
    import threading

    with Ledger.init(tmp_path / "l.db", tmp_path / "l.key") as lg:
        bodies = [build.worker_sessions("w", "v1", i, "w") for i in range(2 * PARALLEL_MIN)]
        thread = threading.Thread(target=lg.append_many, args=("prod", bodies))
        thread.start()
        thread.join()
        time.sleep(1)  # time for a wrongly delivered death signal to take effect
        lg.append_many("prod", bodies)
        assert lg.head("prod").seq == 4 * PARALLEL_MIN
        lg.verify()
