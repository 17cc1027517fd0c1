"""The read models (projections): figures as ratios against baselines measured in the same run.

    python -m benchmarks.read_models [--full] [--records N] [--small N] [--queries N] [--db URL]
                                     [--json]

- ``rebuild``: ``Projections.rebuild()`` over N records (all three views), in
  records/s, vs reading the same notification log raw with
  ``select_notifications`` pages (goal: the whole rebuild of 1,000,000 records
  under 60 s; for smaller N the time is extrapolated linearly and said so).
- ``last-good`` and ``fleet``: p50 latency of one answer on an open
  ``Projections`` (automatic catch-up check included) at N records vs at
  ``--small`` (10,000) records of the same ledger (goal: p50 < 1 ms and the
  ratio <= 1.5).
- ``state``: p50 latency of loading a fleet's rules state (what the rollback
  command validates against), N vs small; no goal.
- ``rollback-dry-run``: p50 latency of deciding a rollback without writing
  (``plan_rollback`` on ``Projections.decision_state`` at the head), N vs
  small (goal: p50 < 20 ms and the ratio <= 2).

With ``--db postgresql://...?schema=S`` (an empty schema) the ledger and its
views (tables ``deployledger_views_*`` in the same schema) are on PostgreSQL.

- ``gated-command``: p50 latency of a decision through the gate, written
  (``FleetService.submit`` of a ``version.verified`` on v1: read the state at
  the head, decide, append at that head), N vs small (goal: ratio <= 1.5).

The ledger is a real SQLite file built from a realistic workload: two fleets,
each a sequence of versions deployed to eight workers that report their
sessions, drain and exit, with now and then a rollback and a verdict. The
workload is a valid history (each move completes before the next starts), so
it is sealed in bulk with ``Ledger.append_gated`` at the chain's head, the
records the gate itself would have written, without deciding each one: a
million gated decisions one by one would take the benchmark most of an hour.
The default size (300,000 records) takes well under a minute; ``--full``
builds the 1,000,000 records the rebuild goal is stated at.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Figure,
    Log,
    measured,
    parser_for,
    run_main,
)
from ledger import commands as build
from ledger.api import Ledger
from ledger.decide import Judge, Meta, Verdict
from ledger.gate import FleetService
from ledger.policy import POLICY_CHAIN
from ledger.rollback import RollbackRequest, plan_rollback
from projections.runner import PAGE_SIZE, Projections

FLEETS = ("bench-eu", "bench-us")
WORKERS = 8
REPORTS = 250  # sessions reports per worker per version
SLICE = 5_000  # records per append_many call (alternating fleets)
REBUILD_GOAL_S = 60.0
REBUILD_GOAL_RECORDS = 1_000_000
QUICK = {"records": 300_000, "small": 10_000, "queries": 2000}
FULL = {"records": REBUILD_GOAL_RECORDS, "small": 10_000, "queries": 2000}


def _rollback(version: str, source: str) -> dict[str, Any]:
    return {"event": "deployment.rolled_back", "actor": "on-call", "target": "fleet",
            "result": "success", "version": version, "from_version": source,
            "reason": "elevated session errors"}


def _rollback_done(version: str, source: str) -> dict[str, Any]:
    return {"event": "rollback.completed", "actor": "driver", "target": "fleet",
            "result": "success", "version": version, "from_version": source}


def workload(fleet: str) -> Iterator[dict[str, Any]]:
    """An endless, realistic history of one fleet: deploys, sessions, drains, exits, rollbacks."""
    live: list[tuple[str, str]] = []
    good: list[str] = []
    number = 0
    while True:
        number += 1
        version = f"v{number}"
        source = good[-1] if good else None
        yield build.deploy(version, "ci", f"release {number}", source)
        fresh = [(f"{fleet}-{version}-w{i}", version) for i in range(WORKERS)]
        for worker, v in fresh:
            yield build.worker_start(worker, v, "platform")
        for tick in range(REPORTS):
            for worker, v in live + fresh:
                if (tick + len(worker)) % 2 == 0 or v == version:
                    yield build.worker_sessions(worker, v, (tick * 7 + len(worker)) % 40, worker)
        for worker, v in live:
            yield build.worker_drain(worker, v, "driver")
        for worker, v in live:
            yield build.worker_exit(worker, v, 0, "driver", exit_code=0)
        live = fresh
        yield build.complete(version, "ci")
        if number % 7 == 0 and source is not None:
            yield _rollback(source, version)
            yield _rollback_done(source, version)
            yield build.verdict("version.verified", source, "qa", "healthy after rollback")
        else:
            good.append(version)


class Builder:
    """Grows one ledger to a given size, alternating the fleets slice by slice."""

    def __init__(self, db: str | Path, key: Path):
        self.ledger = Ledger.init(db, key, actor="bench")
        self.streams = {fleet: workload(fleet) for fleet in FLEETS}
        self.count = 0

    def grow_to(self, n: int) -> None:
        turn = 0
        while self.count < n:
            fleet = FLEETS[turn % len(FLEETS)]
            size = min(SLICE, n - self.count)
            stream = self.streams[fleet]
            bodies = [next(stream) for _ in range(size)]
            self.ledger.append_gated(fleet, bodies, expect_seq=self.ledger.head(fleet).seq,
                                     policy_seq=self.ledger.head(POLICY_CHAIN).seq)
            self.count += size
            turn += 1

    def close(self) -> None:
        self.ledger.close()


def raw_read_seconds(views: Projections) -> tuple[int, float]:
    """Read the whole notification log in the runner's pages: the floor of any rebuild."""
    recorder = views.store.recorder
    start = time.perf_counter()
    count, last = 0, 0
    while True:
        page = recorder.select_notifications(last, PAGE_SIZE, inclusive_of_start=False)
        if not page:
            break
        count += len(page)
        last = page[-1].id
    return count, time.perf_counter() - start


def p50_ms(action: Callable[[], object], queries: int) -> float:
    times = []
    for _ in range(queries):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def latencies(views: Projections, ledger: Ledger, queries: int) -> dict[str, float]:
    fleet = FLEETS[0]
    service = FleetService(ledger, views)
    verdict = Judge(Verdict.VERIFIED, "v1", Meta("bench", "latency of a gated decision"))
    views.catch_up()
    for _ in range(50):  # warm caches and connections
        views.last_good(fleet)
        views.fleet(fleet)
    request = RollbackRequest(fleet, "bench", "validation latency")

    def dry_run() -> object:  # what deciding a rollback reads and checks, writing nothing
        return plan_rollback(views.decision_state(fleet, request.to_version), request)

    return {
        "last-good": p50_ms(lambda: views.last_good(fleet), queries),
        "fleet": p50_ms(lambda: views.fleet(fleet), queries),
        "state": p50_ms(lambda: views.state(fleet), max(queries // 20, 20)),
        "rollback-dry-run": p50_ms(dry_run, max(queries // 20, 20)),
        "gated-command": p50_ms(lambda: service.submit(fleet, verdict), max(queries // 20, 20)),
    }


def run(records: int, small: int = 10_000, queries: int = 2000, log: Log | None = None,
        db: str | None = None) -> list[Figure]:
    """Build a ledger of `records` (in a temporary SQLite file, or at `db`: an empty
    PostgreSQL schema), measure at `small` and at `records`; return the figures."""
    say = log or (lambda message: None)
    small = min(small, records)
    with tempfile.TemporaryDirectory(prefix="projections-bench-") as tmp:
        root = Path(tmp)
        builder = Builder(db or root / "ledger.db", root / "ledger.key")
        views_at = None if db else root / "views.db"  # PostgreSQL: tables beside the ledger's
        try:
            say(f"building a ledger of {small:,} records ...")
            builder.grow_to(small)
            with Projections.of(builder.ledger, views_at, notice=say) as views:
                say(f"measuring answer latencies at {small:,} records ...")
                at_small = latencies(views, builder.ledger, queries)
                say(f"building on to {records:,} records ...")
                started = time.perf_counter()
                builder.grow_to(records)
                say(f"built in {time.perf_counter() - started:.1f} s")
                say("reading the notification log raw, rebuilding, reading raw again ...")
                count, raw_before = raw_read_seconds(views)
                started = time.perf_counter()
                rebuilt = views.rebuild()
                rebuild_s = time.perf_counter() - started
                _, raw_after = raw_read_seconds(views)
                say(f"rebuilt in {rebuild_s:.1f} s; measuring answer latencies at {records:,} records ...")
                at_large = latencies(views, builder.ledger, queries)
        finally:
            builder.close()
    raw_rate = count / ((raw_before + raw_after) / 2)
    rate = rebuilt / rebuild_s
    projected = REBUILD_GOAL_RECORDS / rate
    figures = [Figure(
        "rebuild", f"rebuild all views, {rebuilt:,} records", rate, raw_rate, "rec/s", rate / raw_rate,
        f"1M in < {REBUILD_GOAL_S:.0f} s", projected < REBUILD_GOAL_S,
        f"rebuild took {rebuild_s:.1f} s; 1,000,000 records at this rate: {projected:.1f} s"
        + ("" if rebuilt >= REBUILD_GOAL_RECORDS else " (extrapolated)")
        + "; baseline: select_notifications pages, no processing")]
    for name in ("last-good", "fleet", "state", "rollback-dry-run", "gated-command"):
        large, base = at_large[name], at_small[name]
        ratio = large / base
        if name == "gated-command":
            figures.append(Figure(name, f"gated decision p50 at {records:,} vs {small:,}", large, base,
                                  "ms", ratio, "ratio <= 1.5", ratio <= 1.5,
                                  "state at the head, decide, append with expect_seq (one durable commit)"))
        elif name == "rollback-dry-run":
            figures.append(Figure(name, f"rollback validation p50 at {records:,} vs {small:,}", large, base,
                                  "ms", ratio, "p50 < 20 ms, ratio <= 2", large < 20.0 and ratio <= 2,
                                  "the decision state at the head, then every rollback check"))
        elif name == "state":
            figures.append(Figure(name, f"{name} p50 at {records:,} vs {small:,}", large, base, "ms",
                                  ratio, "none", True, "loads every version entry of the fleet"))
        else:
            figures.append(Figure(name, f"{name} p50 at {records:,} vs {small:,}", large, base, "ms",
                                  ratio, "p50 < 1 ms, ratio <= 1.5", large < 1.0 and ratio <= 1.5,
                                  f"p50 {base:.3f} ms at {small:,}, {large:.3f} ms at {records:,}"))
    return [measured(say, figure) for figure in figures]


SIZES = {
    "records": "records in the ledger",
    "small": "the smaller size for the latency ratios",
    "queries": "queries per latency p50",
}


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("read_models", "Read models (projections): figures as ratios.",
                        SIZES, QUICK, FULL)
    parser.add_argument("--db", default=None, metavar="URL",
                        help="build the ledger in this empty PostgreSQL schema (postgresql://...?schema=S) "
                             "instead of a temporary SQLite file; the views go beside it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, QUICK, FULL, lambda args, log: (
        run(args.records, args.small, args.queries, log, db=args.db), {"db": args.db}))


if __name__ == "__main__":
    sys.exit(main())
