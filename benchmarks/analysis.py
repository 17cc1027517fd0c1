"""Rolling back on evidence: what the watcher's analysis costs, and how fast it acts.

    python -m benchmarks.analysis [--full] [--small N] [--large N] [--sample N] [--rounds R] [--json]

Figures:

- ``evaluate``: p50 time to fold one worker report into `FleetAnalysis` and
  evaluate the rule (what the watcher does per report), after `--large`
  records of history, vs the same after `--small` records. The fold is O(1)
  per record, so the ratio should stay near 1; goal <= 1.5 (--full: 1M vs 10k).
  The chain is built in memory (the fold never reads storage).
- ``latency``: p50 time from a failing report's append returning to the
  watcher's rollback being durably recorded through the gate, on a real SQLite
  ledger, vs a plain append of one fact in the same run; goal: p50 < 1 s. The
  watcher here polls at once; a running `ledger watch` adds up to its poll
  interval (0.2 s by default).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, Log, measured, parser_for, percentile, run_main
from ledger import commands as build
from ledger.analysis import Rule
from ledger.api import Ledger
from ledger.app import open_app
from ledger.decide import Complete, Deploy, Meta, SetRule
from ledger.watch import FleetAnalysis, Watcher

QUICK = {"small": 10_000, "large": 100_000, "sample": 5_000, "rounds": 10}
FULL = {"small": 10_000, "large": 1_000_000, "sample": 20_000, "rounds": 30}
SIZES = {"small": "records of history for the baseline fold", "large": "records of history measured",
         "sample": "reports timed at the end of each history", "rounds": "rollbacks timed"}
T0 = 1_790_000_000.0


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def synthetic_chain(n: int) -> Iterator[dict[str, Any]]:
    """v1 deployed and completed, v2 in flight, then worker reports of both (100 per second)."""
    head = [
        {"event": "deployment.started", "version": "v1", "actor": "ci", "target": "fleet",
         "result": "success"},
        {"event": "deployment.completed", "version": "v1", "actor": "ci", "target": "fleet",
         "result": "success"},
        {"event": "deployment.started", "version": "v2", "from_version": "v1", "actor": "ci",
         "target": "fleet", "result": "success"},
    ]
    for seq, body in enumerate(head, 1):
        yield {**body, "seq": seq, "hash": "0" * 64, "timestamp": _stamp(T0)}
    ok = {"a": 0, "b": 0}
    for i in range(n):
        worker = "a" if i % 2 else "b"
        ok[worker] += 1
        yield {"event": "worker.sessions", "worker_id": worker, "version": "v1" if worker == "a" else "v2",
               "active_sessions": 1, "sessions_ok": ok[worker], "sessions_error": ok[worker] // 50,
               "sessions_dropped": 0, "actor": worker, "target": worker, "result": "success",
               "seq": len(head) + 1 + i, "hash": "0" * 64, "timestamp": _stamp(T0 + i / 100)}


def per_report_p50(history: int, sample: int) -> float:
    folded = FleetAnalysis("bench", Rule(window_s=60, min_sessions=30, confidence_bp=9900,
                                         min_increase_bp=500, consecutive=2))
    records = synthetic_chain(history + sample)
    for _ in range(history + 3):
        folded.apply(next(records))
    times: list[float] = []
    clock = time.perf_counter
    for record in records:
        began = clock()
        folded.apply(record)
        folded.action()
        times.append(clock() - began)
    assert folded.last is not None, "the rule was never evaluated"
    return percentile(times, 0.5)


def rollback_latency(rounds: int) -> tuple[float, float]:
    """(p50 report-to-recorded-rollback, p50 plain append), seconds, on a SQLite file."""
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        db, key = Path(tmp) / "ledger.db", Path(tmp) / "ledger.key"
        Ledger.init(db, key, actor="bench").close()
        latencies, appends = [], []
        rule = Rule(window_s=60, min_sessions=30, confidence_bp=9900, min_increase_bp=500, consecutive=1)
        with open_app(db, key, notice=lambda _m: None) as app:
            for r in range(rounds):
                fleet = f"bench{r}"
                service, ledger = app.service, app.ledger
                service.submit(fleet, Deploy("v1", Meta("ci")))
                ledger.append(fleet, build.worker_start("a", "v1", "a"))
                service.submit(fleet, Complete("v1", Meta("ci")))
                service.submit(fleet, SetRule(rule, Meta("sre")))
                ledger.append(fleet, build.worker_sessions("a", "v1", 1, "a", ok=196, error=4, dropped=0))
                service.submit(fleet, Deploy("v2", Meta("ci")))
                watcher = Watcher(service, fleet, external=True)
                watcher.poll()
                began = time.perf_counter()
                ledger.append(fleet, build.worker_sessions("b", "v2", 1, "b", ok=20, error=40, dropped=0))
                appended = time.perf_counter()
                action = watcher.poll()
                done = time.perf_counter()
                assert action is not None and watcher.outcomes and watcher.outcomes[-1].accepted
                latencies.append(done - began)
                appends.append(appended - began)
        return percentile(latencies, 0.5), percentile(appends, 0.5)


def measure(args: argparse.Namespace, log: Log) -> tuple[Sequence[Figure], dict[str, Any]]:
    figures = []
    log("measuring evaluate ...")
    small = per_report_p50(args.small, args.sample)
    large = per_report_p50(args.large, args.sample)
    ratio = large / small
    figures.append(measured(log, Figure(
        "evaluate", f"fold+evaluate per report at {args.large:,} vs {args.small:,} records",
        large * 1e6, small * 1e6, "us", ratio, "<= 1.5", ratio <= 1.5)))
    log("measuring latency ...")
    latency, append = rollback_latency(args.rounds)
    figures.append(measured(log, Figure(
        "latency", "report to recorded rollback p50 (SQLite) vs one append", latency * 1000,
        append * 1000, "ms", latency / append, "p50 < 1 s", latency < 1.0)))
    return figures, {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for("analysis", __doc__ or "", SIZES, QUICK, FULL)
    return run_main(parser, argv, QUICK, FULL, measure)


if __name__ == "__main__":
    raise SystemExit(main())
