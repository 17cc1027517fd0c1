"""PostgreSQL against SQLite: each figure a ratio of the two, measured in the same run.

    python -m benchmarks.postgres_vs_sqlite [--full] [--records N] [--follow-appends N] [--json]

Figures:

- ``append-1``, ``append-2``, ``append-4``: records/s through ``Ledger.append``
  (one record per transaction) from 1, 2 and 4 writer processes appending to
  one fleet at once, PostgreSQL vs SQLite. Each writer count writes --records
  records per backend in all, split over ROUNDS alternating rounds, each round
  on a fresh ledger. No goal: the ratio is for context.
- ``verify``: records/s through ``Ledger.verify`` of a ledger of --records
  records (built with ``append_many``), PostgreSQL vs SQLite. No goal.
- ``follow-p50``, ``follow-p95``: latency from ``Ledger.append`` (timestamped
  just before the call) to the record's line arriving on the stdout of a real
  ``python -m ledger.cli feed --follow`` child, over --follow-appends appends
  spaced FOLLOW_SPACING_S apart; PostgreSQL (LISTEN/NOTIFY) vs SQLite (polling).
  Goal: p50 < 100 ms on PostgreSQL (absolute); the ratio is reported too.

The server is LEDGER_BENCH_PG_URL if set, else a throwaway one started with
the checkout's ``scripts/postgres-up`` in a temporary directory and stopped at
the end (so without LEDGER_BENCH_PG_URL this needs a checkout of the project,
as every benchmark here does, and PostgreSQL's server binaries). Every
PostgreSQL ledger lives in a schema of its own, created for the measurement and
dropped after it; every SQLite ledger is a file in a temporary directory. Both
sides run the same code on the same machine in alternation, so the ratios hold
while the absolute numbers drift with the machine's load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Lock
from pathlib import Path
from threading import BrokenBarrierError
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql

from benchmarks.common import (
    BATCH,
    FLEET,
    Figure,
    Log,
    bodies,
    measured,
    parser_for,
    percentile,
    repo_root,
    run_main,
)
from ledger.api import Ledger
from ledger.postgres_url import postgres_env, redact

BACKENDS = ("sqlite", "postgres")
WRITERS = (1, 2, 4)
ROUNDS = 3  # alternating SQLite/PostgreSQL rounds per writer count, and verify passes
FOLLOW_SPACING_S = 0.02
FOLLOW_GOAL_MS = 100.0
FOLLOW_WARMUP = 5  # appends the follower must have caught before timing starts
START_TIMEOUT_S = 120.0  # for a child to start and connect
ARRIVAL_TIMEOUT_S = 60.0  # for a record to reach the follower
RUN_TIMEOUT_S = 1800.0  # for a writer to finish its appends
QUICK = {"records": 1000, "follow_appends": 100}
FULL = {"records": 3000, "follow_appends": 200}


# -- the server and fresh ledgers ------------------------------------------------------


@contextmanager
def server(log: Log) -> Iterator[str]:
    """The server's URL: LEDGER_BENCH_PG_URL, else a throwaway server stopped on exit."""
    given = os.environ.get("LEDGER_BENCH_PG_URL")
    if given:
        yield given
        return
    scripts = repo_root() / "scripts"
    directory = tempfile.mkdtemp(prefix="ledger-bench-pg-")
    try:
        log(f"starting a throwaway PostgreSQL server ({scripts / 'postgres-up'}) ...")
        up = subprocess.run([str(scripts / "postgres-up"), directory],
                            capture_output=True, text=True, timeout=900, check=False)
        if up.returncode != 0:
            raise RuntimeError(f"postgres-up failed: {up.stderr.strip()[-500:]}")
        yield up.stdout.strip()
    finally:
        subprocess.run([str(scripts / "postgres-down"), directory],
                       capture_output=True, timeout=300, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection for creating and dropping schemas."""
    env = postgres_env(url)
    return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                           port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"] or None, autocommit=True)


def with_schema(url: str, schema: str) -> str:
    """The URL naming `schema` (replacing any schema it named)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A URL naming a new schema of its own, dropped (with its tables) on exit."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with connect(url) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield with_schema(url, name)
    finally:
        with connect(url) as c:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


class Places:
    """Where fresh ledgers go: a file in a new directory (SQLite) or a new schema (PostgreSQL)."""

    def __init__(self, root: Path, url: str):
        self.root = root
        self.url = url

    @contextmanager
    def fresh(self, backend: str) -> Iterator[tuple[str, Path]]:
        """(db, key) of a new, initialised ledger on `backend`, deleted on exit."""
        directory = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=self.root))
        key = directory / "ledger.key"
        try:
            if backend == "sqlite":
                db = str(directory / "ledger.db")
                Ledger.init(db, key, actor="bench").close()
                yield db, key
            else:
                with pg_schema(self.url) as db:
                    Ledger.init(db, key, actor="bench").close()
                    yield db, key
        finally:
            shutil.rmtree(directory, ignore_errors=True)


# -- appends from concurrent writer processes ---------------------------------------------


def _writer(db: str, key: str, count: int, opening: Lock, barrier: Barrier,
            results: Queue[Any]) -> None:
    """One writer process: connect and warm up untimed, start with the others, append `count`.

    Writers open the ledger one at a time: simultaneous opens on PostgreSQL can
    fail with "tuple concurrently updated" (each open re-runs eventsourcing's
    CREATE OR REPLACE FUNCTION), and opening is not what is measured here.
    Puts (start, end) on `results`, or the error's text; a failure breaks the
    barrier so nobody waits for this writer.
    """
    try:
        records = bodies(count + 1)
        with opening:
            ledger = Ledger.open(db, key)
        with ledger:
            ledger.append(FLEET, records[0])
            barrier.wait(START_TIMEOUT_S)
            start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            for body in records[1:]:
                ledger.append(FLEET, body)
            results.put((start, time.perf_counter()))
    except BaseException as exc:
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")


def _spans(results: Queue[Any], writers: int) -> list[tuple[float, float]]:
    """Every writer's (start, end); the first error a writer reported is raised."""
    spans = []
    for _ in range(writers):
        item = results.get(timeout=RUN_TIMEOUT_S)
        if isinstance(item, str):
            raise RuntimeError(f"a writer failed: {item}")
        spans.append((float(item[0]), float(item[1])))
    return spans


def concurrent_appends(db: str, key: Path, writers: int, per_writer: int) -> float:
    """Seconds from the first writer's start to the last one's end, all appending at once.

    Writers are spawned (not forked) processes: each opens its own ledger as a
    separate deployment would; their start-up is outside the timing.
    """
    ctx = multiprocessing.get_context("spawn")
    opening, barrier = ctx.Lock(), ctx.Barrier(writers + 1)
    results: Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, str(key), per_writer, opening, barrier, results))
             for _ in range(writers)]
    for proc in procs:
        proc.start()
    try:
        with suppress(BrokenBarrierError):  # a writer failed to start: _spans raises its error
            barrier.wait(START_TIMEOUT_S)
        spans = _spans(results, writers)
    finally:
        stop_all(procs)
    check_count(db, key, writers * (per_writer + 1))
    return max(end for _, end in spans) - min(start for start, _ in spans)


def stop_all(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Wait for the writers; terminate any still running (after a failure)."""
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join()


def check_count(db: str, key: Path, expected: int) -> None:
    """Every acknowledged append is in the fleet: a fast figure that lost records is no figure."""
    with Ledger.open(db, key, writable=False) as ledger:
        seq = ledger.head(FLEET).seq
    if seq != expected:
        raise RuntimeError(f"{redact(db)}: fleet holds {seq} records, {expected} were acknowledged")


def append_rates(places: Places, n: int, writers: int) -> dict[str, float]:
    """Records/s per backend, over ROUNDS alternating rounds of ~n/ROUNDS records each."""
    per_writer = max(1, n // (ROUNDS * writers))
    seconds = dict.fromkeys(BACKENDS, 0.0)
    for _ in range(ROUNDS):
        for backend in BACKENDS:
            with places.fresh(backend) as (db, key):
                seconds[backend] += concurrent_appends(db, key, writers, per_writer)
    total = ROUNDS * writers * per_writer
    return {backend: total / elapsed for backend, elapsed in seconds.items()}


def figure_append(places: Places, n: int, writers: int) -> Figure:
    rates = append_rates(places, n, writers)
    plural = "s" if writers > 1 else ""
    return Figure(f"append-{writers}", f"append, {writers} writer{plural}, 1 record/transaction",
                  rates["postgres"], rates["sqlite"], "rec/s", rates["postgres"] / rates["sqlite"],
                  "none", True, f"{writers} process{'es' if writers > 1 else ''} on one fleet; "
                  "baseline: the same on SQLite")


# -- verify -------------------------------------------------------------------------------


def verify_seconds(db: str, key: Path) -> tuple[int, float]:
    """(records verified, seconds) for one `Ledger.verify` of the whole ledger."""
    with Ledger.open(db, key, writable=False) as ledger:
        start = time.perf_counter()
        report = ledger.verify()
        elapsed = time.perf_counter() - start
    return sum(chain.count for chain in report.chains), elapsed


def figure_verify(places: Places, n: int, log: Log) -> Figure:
    """Both ledgers built alike, then verified in alternating passes."""
    done = dict.fromkeys(BACKENDS, 0)
    seconds = dict.fromkeys(BACKENDS, 0.0)
    with places.fresh("sqlite") as (lite_db, lite_key), places.fresh("postgres") as (pg_db, pg_key):
        ledgers = {"sqlite": (lite_db, lite_key), "postgres": (pg_db, pg_key)}
        for backend, (db, key) in ledgers.items():
            log(f"building a {backend} ledger of {n:,} records ...")
            with Ledger.open(db, key) as ledger:
                ledger.append_many(FLEET, bodies(n), chunk=BATCH)
        for _ in range(ROUNDS):
            for backend, (db, key) in ledgers.items():
                count, elapsed = verify_seconds(db, key)
                done[backend] += count
                seconds[backend] += elapsed
    rates = {backend: done[backend] / seconds[backend] for backend in BACKENDS}
    return Figure("verify", f"verify, {n:,} records", rates["postgres"], rates["sqlite"], "rec/s",
                  rates["postgres"] / rates["sqlite"], "none", True,
                  f"{ROUNDS} alternating passes; baseline: the same ledger on SQLite")


# -- append-to-follower latency ------------------------------------------------------------


class Arrivals:
    """Reads a follower's stdout in a thread, timestamping each record's line as it arrives."""

    def __init__(self, stream: IO[bytes]):
        self.times: dict[int, float] = {}
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            arrived = time.perf_counter()
            seq = int(orjson.loads(line)["seq"])
            with self._changed:
                self.times[seq] = arrived
                self._changed.notify_all()

    def wait_for(self, seq: int, timeout: float = ARRIVAL_TIMEOUT_S) -> float:
        """When record `seq` arrived; RuntimeError if it does not within `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: seq in self.times, timeout):
                raise RuntimeError(f"record {seq} did not reach the follower in {timeout:.0f} s")
            return self.times[seq]

    def close(self) -> None:
        self._thread.join(timeout=10)


@contextmanager
def follower(db: str, key: Path, stderr: Path) -> Iterator[Arrivals]:
    """A real `ledger feed --follow` child on the fleet, stopped on exit.

    The database goes through LEDGER_DB, not argv, so no password shows in `ps`.
    """
    command = [sys.executable, "-m", "ledger.cli", "feed", "--follow", "--fleet", FLEET,
               "--key", str(key)]
    with stderr.open("wb") as err:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, cwd=repo_root(),
                                 env={**os.environ, "LEDGER_DB": db})
    assert child.stdout is not None
    arrivals = Arrivals(child.stdout)
    try:
        yield arrivals
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; follower stderr: {stderr.read_text()[-500:]!r}") from None
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        arrivals.close()
        child.stdout.close()


def timed_appends(ledger: Ledger, count: int, spacing: float) -> dict[int, float]:
    """Append `count` records on a fixed `spacing` schedule; seq -> time just before the call."""
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for i, body in enumerate(bodies(count)):
        time.sleep(max(0.0, start + i * spacing - time.perf_counter()))
        before = time.perf_counter()
        sent[ledger.append(FLEET, body).seq] = before
    return sent


def follow_latencies(db: str, key: Path, appends: int) -> list[float]:
    """Seconds from each append to its arrival at a `feed --follow` child.

    The child starts with one record to print (it is up once that arrives), and
    must catch FOLLOW_WARMUP spaced appends before the timed ones: a follower's
    start-up is not its latency.
    """
    with Ledger.open(db, key) as ledger, follower(db, key, key.with_name("follower.err")) as seen:
        ledger.append(FLEET, bodies(1)[0])
        seen.wait_for(1, START_TIMEOUT_S)
        warmup = timed_appends(ledger, FOLLOW_WARMUP, 5 * FOLLOW_SPACING_S)
        seen.wait_for(max(warmup))
        sent = timed_appends(ledger, appends, FOLLOW_SPACING_S)
        return [seen.wait_for(seq) - before for seq, before in sent.items()]


def figures_follow(places: Places, appends: int) -> list[Figure]:
    latencies = {}
    for backend in BACKENDS:
        with places.fresh(backend) as (db, key):
            latencies[backend] = [s * 1000 for s in follow_latencies(db, key, appends)]
    p50 = {b: percentile(values, 0.5) for b, values in latencies.items()}
    p95 = {b: percentile(values, 0.95) for b, values in latencies.items()}
    note = (f"{appends} appends {FOLLOW_SPACING_S * 1000:.0f} ms apart to a `ledger feed --follow` "
            "child; baseline: SQLite's polling follower; max PostgreSQL "
            f"{max(latencies['postgres']):.1f} ms, SQLite {max(latencies['sqlite']):.1f} ms")
    return [
        Figure("follow-p50", "append -> feed --follow, p50", p50["postgres"], p50["sqlite"], "ms",
               p50["postgres"] / p50["sqlite"], f"< {FOLLOW_GOAL_MS:.0f} ms",
               p50["postgres"] < FOLLOW_GOAL_MS, note),
        Figure("follow-p95", "append -> feed --follow, p95", p95["postgres"], p95["sqlite"], "ms",
               p95["postgres"] / p95["sqlite"], "none", True),
    ]


# -- running and printing -------------------------------------------------------------------


def run(args: argparse.Namespace, url: str, log: Log) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ledger-bench-pg-") as tmp:
        places = Places(Path(tmp), url)
        for writers in WRITERS:
            log(f"measuring appends with {writers} writer(s), {args.records:,} records per backend ...")
            figures.append(measured(log, figure_append(places, args.records, writers)))
        log("measuring verify ...")
        figures.append(measured(log, figure_verify(places, args.records, log)))
        log(f"measuring append -> feed --follow latency over {args.follow_appends} appends ...")
        figures += [measured(log, f) for f in figures_follow(places, args.follow_appends)]
    return figures


SIZES = {
    "records": "records per backend for each append figure, and in the verified ledgers",
    "follow_appends": "timed appends per backend for the follow latency",
}


def build_parser() -> argparse.ArgumentParser:
    return parser_for("postgres_vs_sqlite", "PostgreSQL vs SQLite, measured in the same run "
                      "(LEDGER_BENCH_PG_URL names the server; otherwise a throwaway one is started).",
                      SIZES, QUICK, FULL)


def measure(args: argparse.Namespace, log: Log) -> tuple[list[Figure], dict[str, Any]]:
    with server(log) as url:
        log(f"server {redact(url)}")
        return run(args, url, log), {}


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, QUICK, FULL, measure)


if __name__ == "__main__":
    sys.exit(main())
