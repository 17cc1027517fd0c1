"""The service under load: writers and live followers against one real `ledger serve`.

    python -m benchmarks.service_load [--full] [--seconds S] [--writers W] [--followers F]
                                      [--db postgresql://...] [--json]

Needs the ``service`` extra. Loopback only: the server is a child process on
127.0.0.1 and a free port, with a fresh SQLite ledger in a temporary
directory (or a fresh schema of the PostgreSQL server named by `--db`).
`W` writer threads post one worker fact per request to `/reports` for `S`
seconds (default 10, `--full` 60) while `F` followers (default 50) read the
live stream (`/stream`). Then:

- **exactly once**: every acknowledged record must reach every follower
  exactly once, in order (checked; a miss or a repeat fails the run, exit 1);
- ``delivery``: time from a writer sending a record to a follower receiving
  it, p50 and p99 over every (record, follower) pair (goals, stated for
  PostgreSQL: p50 < 50 ms, p99 < 500 ms), shown against the writers' own
  request round trip (append acknowledged) in the same run;
- ``appends``: the server's acknowledged appends/s against the same number
  of appends through the Python API (`Ledger.append`, one at a time, from
  the same number of threads) into a fresh ledger in the same run (goal
  >= 0.7).

Each writer keeps its HTTP connection alive, as a real reporter does. The
followers run in a process of their own: fifty reader threads in the
writers' process would make the writers queue for its GIL, which measures
the load generator rather than the server.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import FLEET, Figure, Log, measured, parser_for, percentile, run_main
from ledger import Ledger
from ledger import commands as build
from ledger.service.client import follow_stream
from ledger.service.tokens import Role, add_token

SIZES = {"seconds": "seconds of load", "writers": "writer threads", "followers": "stream followers"}
QUICK = {"seconds": 10, "writers": 4, "followers": 50}
FULL = {"seconds": 60, "writers": 4, "followers": 50}


@dataclass
class Follower:
    """One stream reader: the seqs it received, and when (`time.monotonic`, the same clock in
    every process of the machine)."""

    seqs: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))


def _fresh_db(directory: Path, given: str | None, name: str) -> str:
    if given is None:
        return str(directory / f"{name}.db")
    import psycopg

    from ledger.postgres_url import postgres_env

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    env = postgres_env(given)
    with psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                         port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                         password=env["POSTGRES_PASSWORD"], autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    return f"{given}{'&' if '?' in given else '?'}schema={schema}"


def _start_server(db: str, key: Path, tokens: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "serve", "--db", db, "--key", str(key), "--listen",
             "127.0.0.1:0", "--tokens", str(tokens), "--keepalive", "1", "--max-streams-per-token", "1000",
             "--shutdown-timeout", "1"],
            stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the server did not start: {log_path.read_text()[-2000:]}")
    url = line.split()[-1]
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server never became ready")


def _follow_all(url: str, token: str, head: int, count: int, connection: Connection) -> None:
    """The followers' process: `count` stream readers until the parent names the last seq
    (then until each has it, at most 60 s more); their receipts go back through `connection`."""
    followers = [Follower() for _ in range(count)]
    stop = threading.Event()

    def follow(f: Follower) -> None:
        for event in follow_stream(url, token, FLEET, after=head, stop=stop):
            f.times.append(time.monotonic())
            f.seqs.append(event.seq)

    threads = [threading.Thread(target=follow, args=(f,), daemon=True) for f in followers]
    for t in threads:
        t.start()
    connection.send("following")
    last = connection.recv()
    wait_until = time.monotonic() + 60
    while time.monotonic() < wait_until and any(not f.seqs or f.seqs[-1] < last for f in followers):
        time.sleep(0.05)
    stop.set()
    connection.send(followers)


class _Writer:
    """One writer: a kept-alive HTTP connection posting one worker fact per request."""

    def __init__(self, url: str, token: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: dict[str, Any]) -> int:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            self.connection.request("POST", f"/fleets/{FLEET}/reports", orjson.dumps(body), self.headers)
            answer = self.connection.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if answer.status != 201:
            raise RuntimeError(f"the server answered {answer.status}: {data[:200]!r}")
        return int(orjson.loads(data)["receipts"][0]["seq"])

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _load(args: argparse.Namespace, log: Log, url: str, read: str, write: str, head: int
          ) -> tuple[dict[int, float], list[float], list[Follower], float]:
    """Writers here, followers in a process of their own: fifty reader threads in the
    writers' process would make the writers wait for the GIL, which measures the load
    generator, not the server (real followers are other programs on other hosts)."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_follow_all, args=(url, read, head, args.followers, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(120) or ours.recv() != "following":
            raise RuntimeError("the followers' process did not start")
        time.sleep(1.0)  # let every follower connect before the first write
        sent: dict[int, float] = {}
        round_trips: list[float] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds

        def writer(number: int) -> None:
            i = 0
            poster = _Writer(url, write)
            try:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    seq = poster.post(build.worker_sessions(f"w{number}", "v1", i, f"w{number}"))
                    done = time.monotonic()
                    with lock:
                        sent[seq] = started
                        round_trips.append(done - started)
                    i += 1
            finally:
                poster.close()

        began = time.monotonic()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        log(f"{len(sent)} appends acknowledged in {elapsed:.1f} s; waiting for {args.followers} followers")
        ours.send(max(sent) if sent else head)
        if not ours.poll(120):
            raise RuntimeError("the followers' process did not answer")
        followers: list[Follower] = ours.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    return sent, round_trips, followers, elapsed


def _api_baseline(directory: Path, given: str | None, writers: int, count: int) -> float:
    """Appends/s of `count` appends through `Ledger.append` from `writers` threads, fresh ledger."""
    db, key = _fresh_db(directory, given, "baseline"), directory / "baseline.key"
    Ledger.init(db, key, actor="bench").close()
    per = max(1, count // writers)

    def writer(number: int) -> None:
        with Ledger.open(db, key) as ledger:
            for i in range(per):
                ledger.append(FLEET, build.worker_sessions(f"w{number}", "v1", i, f"w{number}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * writers / (time.monotonic() - began)


def measure(args: argparse.Namespace, log: Log) -> tuple[Sequence[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ledger-service-load.") as tmp:
        directory = Path(tmp)
        db = _fresh_db(directory, args.db, "ledger")
        key, tokens = directory / "ledger.key", directory / "tokens"
        with Ledger.init(db, key, actor="bench") as ledger:
            ledger.append(FLEET, build.worker_start("w0", "v1", "bench"))
            head = ledger.head(FLEET).seq
        read = add_token(tokens, "followers", frozenset({Role.READ}))
        write = add_token(tokens, "writers", frozenset({Role.WRITE}))
        log(f"starting the server on {'PostgreSQL' if args.db else 'SQLite'}; {args.writers} writers, "
            f"{args.followers} followers, {args.seconds} s")
        process, url = _start_server(db, key, tokens, directory / "server.log")
        try:
            sent, round_trips, followers, elapsed = _load(args, log, url, read, write, head)
        finally:
            process.terminate()
            process.wait(30)
        expected = list(range(head + 1, max(sent) + 1)) if sent else []
        missing = duplicates = 0
        latencies: list[float] = []
        for f in followers:
            seqs = [seq for seq in f.seqs if seq <= (expected[-1] if expected else head)]
            duplicates += len(seqs) - len(set(seqs))
            missing += len(set(expected) - set(seqs))
            if seqs != expected:
                log(f"a follower saw {len(seqs)} records, not the {len(expected)} acknowledged")
            latencies += [(at - sent[seq]) * 1000 for seq, at in zip(f.seqs, f.times, strict=True)
                          if seq in sent]
        log(f"exactly once: missing {missing}, repeated {duplicates} over {len(followers)} followers")
        server_rate = len(sent) / elapsed
        log(f"baseline: {len(sent)} appends through the Python API from {args.writers} threads")
        api_rate = _api_baseline(directory, args.db, args.writers, max(len(sent), args.writers))
    rt = [r * 1000 for r in round_trips] or [0.0]
    lat = latencies or [0.0]
    p50, p99, rt50, rt99 = (percentile(lat, 0.5), percentile(lat, 0.99), percentile(rt, 0.5),
                            percentile(rt, 0.99))
    figures = [
        measured(log, Figure("delivery_p50", "writer-to-follower p50 vs append round trip p50",
                             p50, rt50, "ms", p50 / max(rt50, 1e-9), "p50 < 50 ms", p50 < 50)),
        measured(log, Figure("delivery_p99", "writer-to-follower p99 vs append round trip p99",
                             p99, rt99, "ms", p99 / max(rt99, 1e-9), "p99 < 500 ms", p99 < 500)),
        measured(log, Figure("appends", "server appends/s vs Python API appends/s", server_rate, api_rate,
                             "rec/s", server_rate / api_rate, ">= 0.7", server_rate / api_rate >= 0.7,
                             note=f"{len(sent)} records, {args.writers} writers, "
                                  f"{args.followers} followers")),
    ]
    details = {"records": len(sent), "followers": len(followers), "missing": missing,
               "repeated": duplicates, "exactly_once": missing == 0 and duplicates == 0}
    if not details["exactly_once"]:
        raise SystemExit(f"service_load: NOT exactly once: missing {missing}, repeated {duplicates}")
    return figures, details


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for("service_load", __doc__ or "", SIZES, QUICK, FULL)
    parser.add_argument("--db", default=os.environ.get("LEDGER_BENCH_PG_URL"),
                        help="a PostgreSQL server URL (a fresh schema is used); default: SQLite")
    return run_main(parser, argv, QUICK, FULL, measure)


if __name__ == "__main__":
    sys.exit(main())
