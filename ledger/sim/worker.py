"""A local voice-agent worker: holds simulated calls and drains on SIGTERM.

It is the real process the local fleet driver starts. Tagged with a version,
it takes calls of random length; on SIGTERM (or SIGINT) it stops taking calls,
lets the in-flight ones run to hangup, reports, and exits 0. It reports its
start, its session count as it changes, and its exit into the ledger itself,
signed by a reporter when given one (`--reporter`, `--reporter-key`).
A lock file per worker id makes a second start of the same worker exit at once
(code 3), so a driver that restarts after a crash can never double a worker.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ledger import commands
from ledger.api import Ledger
from ledger.errors import LedgerError
from ledger.reporter import fact_gate, report_fact, reporter_key
from ledger.sim.local_driver import worker_file

ALREADY_RUNNING = 3
TICK = 0.05


class Calls:
    """In-flight calls as a heap of (hangup time, errors) entries; some end early in error.

    Outcomes are counted when a call ends, not when it starts, so the counts a
    worker reports are of finished calls only: what an analysis may judge.
    """

    def __init__(self, rng: random.Random, min_s: float, max_s: float, fail_rate: float):
        self.rng = rng
        self.min_s, self.max_s, self.fail_rate = min_s, max_s, fail_rate
        self.ends: list[tuple[float, bool]] = []
        self.total = 0
        self.failed = 0
        self.ended_ok = 0
        self.ended_error = 0

    def take(self, now: float) -> None:
        self.total += 1
        length = self.rng.uniform(self.min_s, self.max_s)
        errors = self.rng.random() < self.fail_rate
        if errors:
            self.failed += 1
            length = min(length, self.rng.uniform(0.1, 0.5))  # the call errors out early
        heapq.heappush(self.ends, (now + length, errors))

    def hang_up(self, now: float) -> None:
        while self.ends and self.ends[0][0] <= now:
            _, errored = heapq.heappop(self.ends)
            if errored:
                self.ended_error += 1
            else:
                self.ended_ok += 1

    @property
    def active(self) -> int:
        return len(self.ends)


def lock_worker(rundir: Path, worker_id: str) -> int | None:
    """Hold an exclusive lock for this worker id for the life of the process."""
    path = worker_file(rundir, worker_id, "lock")
    rundir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def run(args: argparse.Namespace) -> int:
    if lock_worker(Path(args.rundir), args.worker_id) is None:
        print(f"worker {args.worker_id} is already running", file=sys.stderr)
        return ALREADY_RUNNING
    draining = False

    def drain(_signum: int, _frame: FrameType | None) -> None:
        nonlocal draining
        draining = True

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    rng = random.Random(args.seed if args.seed is not None else os.getpid())
    calls = Calls(rng, args.call_min, args.call_max, args.fail_rate)
    actor = args.worker_id
    reporter = reporter_key(args.reporter, args.reporter_key)
    signer = reporter.load() if reporter is not None else None
    with Ledger.open(args.db, args.key) as ledger:
        gate = fact_gate(ledger)

        def write(body: dict[str, Any]) -> None:
            if signer is None:
                ledger.append(args.fleet, body)
                return
            check = report_fact(gate, args.fleet, body, signer).check
            if check is not None:  # refused and recorded by the gate; the worker goes on
                print(f"worker: report refused ({check.value})", file=sys.stderr, flush=True)

        write(commands.worker_start(args.worker_id, args.version, actor, pid=os.getpid()))
        started = time.monotonic()
        reported, last_report = (-1, -1), 0.0
        while True:
            now = time.monotonic()
            calls.hang_up(now)
            if args.max_seconds and now - started > args.max_seconds:
                draining = True
            if not draining and calls.active < args.capacity and rng.random() < args.arrival_rate * TICK:
                calls.take(now)
            if draining and calls.active == 0:
                break
            ended = calls.ended_ok + calls.ended_error
            if (calls.active, ended) != reported and now - last_report >= args.report_interval:
                body = commands.worker_sessions(args.worker_id, args.version, calls.active, actor,
                                                ok=calls.ended_ok, error=calls.ended_error, dropped=0)
                body.update(total_sessions=calls.total, failed_sessions=calls.failed,
                            draining=draining)
                write(body)
                reported, last_report = (calls.active, ended), now
            time.sleep(TICK)
        exit_body = commands.worker_exit(args.worker_id, args.version, 0, actor,
                                         "drained", exit_code=0, ok=calls.ended_ok,
                                         error=calls.ended_error, dropped=0)
        exit_body.update(total_sessions=calls.total, failed_sessions=calls.failed)
        write(exit_body)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ledger.sim.worker", description=__doc__)
    p.add_argument("--db", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--fleet", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--rundir", required=True, help="where worker lock files live")
    p.add_argument("--arrival-rate", type=float, default=2.0, help="new calls per second")
    p.add_argument("--capacity", type=int, default=8, help="most calls held at once")
    p.add_argument("--call-min", type=float, default=1.0, help="shortest call, seconds")
    p.add_argument("--call-max", type=float, default=4.0, help="longest call, seconds")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of calls that error out")
    p.add_argument("--report-interval", type=float, default=0.5, help="least seconds between reports")
    p.add_argument("--max-seconds", type=float, default=0.0, help="drain by itself after this long")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--reporter", default=None, help="the reporter actor that signs this worker's facts")
    p.add_argument("--reporter-key", default=None, help="the reporter's private key file")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return run(build_parser().parse_args(argv))
    except LedgerError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
