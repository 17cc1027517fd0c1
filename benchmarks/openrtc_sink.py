"""The OpenRTC audit sink: each figure against a baseline measured in the same run.

    python -m benchmarks.openrtc_sink [--full] [--emits N] [--rounds R] [--flush-records N] [--json]

Needs the ``openrtc`` extra. Figures:

- ``emit``: time of one `AuditLog.emit()` on the caller's thread with a
  `LedgerAuditSink` vs the same emit with a no-op sink (OpenRTC's own
  `AuditLog`, the code path `AgentPool.begin_drain()` takes). p50, p99, p99.9
  and max of each; goal: sink p99 < 1 ms. Rounds alternate no-op and ledger
  sink, so drift on a shared machine falls on both. The writer thread commits
  to a real SQLite ledger meanwhile, so GIL contention is included. At the end
  the ledger must hold every emitted event (checked, printed).
- ``flush``: records/s moved from the spool into the ledger by `flush()` after
  an outage (held with `BEGIN EXCLUSIVE`), vs `Ledger.append_many` of the same
  bodies in the same chunk size into a fresh ledger: the ceiling a flush can reach.
  The spool's own write rate during the outage is printed for context.

Every database is a real SQLite file in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    FLEET,
    Figure,
    Log,
    measured,
    parser_for,
    percentile,
    run_main,
)
from ledger.api import Ledger
from ledger.openrtc.sink import BATCH, LedgerAuditSink

QUICK = {"emits": 5000, "rounds": 2, "flush_records": 5000}
FULL = {"emits": 20_000, "rounds": 4, "flush_records": 50_000}


def _emit_times(sink: Callable[[Any], None], count: int, version: str) -> list[float]:
    from openrtc.core.audit import AuditLog  # a second to import (livekit): only when measuring

    log = AuditLog(sink=sink)
    times = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        log.emit("deployment.drain_started", target="worker", version=version)
        times.append((clock() - start) / 1e6)
    return times


def _new_ledger(directory: Path, name: str) -> tuple[Path, Path]:
    db, key = directory / f"{name}.db", directory / f"{name}.key"
    Ledger.init(db, key, actor="bench").close()
    return db, key


def measure_emit(directory: Path, emits: int, rounds: int) -> tuple[Figure, dict[str, Any]]:
    db, key = _new_ledger(directory, "emit")
    sink = LedgerAuditSink(db, key, FLEET, source="bench-pool", spool_dir=directory / "emit.spool")
    noop_times: list[float] = []
    sink_times: list[float] = []
    try:
        for _ in range(rounds):
            noop_times += _emit_times(lambda _event: None, emits, "v1")
            sink_times += _emit_times(sink, emits, "v1")
        flushed = sink.flush(120)
    finally:
        sink.close(120)
    with Ledger.open(db, key, writable=False) as ledger:
        held = ledger.head(FLEET).seq
    levels = (("p50", .5), ("p99", .99), ("p999", .999))
    sink_ms = {name: percentile(sink_times, q) for name, q in levels}
    noop_ms = {name: percentile(noop_times, q) for name, q in levels}
    detail: dict[str, Any] = {
        "noop_ms": noop_ms, "sink_ms": sink_ms,
        "noop_max_ms": max(noop_times), "sink_max_ms": max(sink_times),
        "noop_mean_ms": statistics.fmean(noop_times), "sink_mean_ms": statistics.fmean(sink_times),
        "emitted": len(sink_times), "in_ledger": held, "flushed": flushed,
    }
    p99, base99 = sink_ms["p99"], noop_ms["p99"]
    note = (f"p50 {sink_ms['p50'] * 1000:.1f} us vs {noop_ms['p50'] * 1000:.1f} us; "
            f"p99.9 {sink_ms['p999'] * 1000:.1f} us vs {noop_ms['p999'] * 1000:.1f} us; "
            f"max {max(sink_times):.2f} ms vs {max(noop_times):.2f} ms; "
            f"ledger holds {held}/{len(sink_times)}")
    met = p99 < 1.0 and held == len(sink_times)
    figure = Figure("emit", "emit() p99 with the ledger sink vs a no-op sink", p99, base99, "ms",
                    p99 / base99 if base99 else float("inf"), "sink p99 < 1 ms", met, note)
    return figure, detail


def measure_flush(directory: Path, records: int) -> tuple[Figure, dict[str, Any]]:
    db, key = _new_ledger(directory, "flush")
    sink = LedgerAuditSink(db, key, FLEET, source="bench-pool", spool_dir=directory / "flush.spool",
                           lock_timeout_s=0.05, retry_s=(60.0, 60.0))
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        from openrtc.core.audit import AuditLog

        log = AuditLog(sink=sink)
        start = time.perf_counter()
        for _ in range(records):
            log.emit("deployment.drain_started", target="worker", version="v1")
        while sink.stats["spooled"] < records:
            time.sleep(0.005)
        spool_rate = records / (time.perf_counter() - start)
        lock.execute("ROLLBACK")
        start = time.perf_counter()
        flushed = sink.flush(600)
        elapsed = time.perf_counter() - start
    finally:
        lock.close()
        sink.close(120)
    with Ledger.open(db, key, writable=False) as ledger:
        bodies = [{k: v for k, v in r.items() if k not in ("seq", "prev", "hash", "kid", "sig", "fleet",
                                                            "timestamp")} for r in ledger.records(FLEET)]
    base_db, base_key = _new_ledger(directory, "flush-baseline")
    with Ledger.open(base_db, base_key) as ledger:
        start = time.perf_counter()
        ledger.append_many(FLEET, bodies, chunk=BATCH)
        base_elapsed = time.perf_counter() - start
    rate, base_rate = records / elapsed, len(bodies) / base_elapsed
    detail = {"records": records, "flushed": flushed, "in_ledger": len(bodies), "flush_s": elapsed,
              "flush_rate": rate, "append_many_rate": base_rate, "spool_write_rate": spool_rate}
    figure = Figure("flush", f"spool -> ledger flush vs append_many(chunk={BATCH})", rate, base_rate,
                    "rec/s", rate / base_rate, "none", flushed and len(bodies) == records,
                    f"spooled at {spool_rate:,.0f} rec/s during the outage; ledger holds "
                    f"{len(bodies)}/{records}")
    return figure, detail


SIZES = {
    "emits": "emits per round per sink",
    "rounds": "alternating rounds of each sink",
    "flush_records": "events spooled during the outage, then flushed",
}


def measure(args: argparse.Namespace, log: Log) -> tuple[list[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="openrtc-bench-") as tmp:
        directory = Path(tmp)
        log(f"measuring emit: {args.rounds} rounds of {args.emits:,} emits per sink ...")
        emit, emit_detail = measure_emit(directory, args.emits, args.rounds)
        measured(log, emit)
        log(f"measuring flush: {args.flush_records:,} events spooled during an outage, then flushed ...")
        flush, flush_detail = measure_flush(directory, args.flush_records)
        measured(log, flush)
    return [emit, flush], {"emit": emit_detail, "flush": flush_detail}


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(parser_for("openrtc_sink", __doc__ or "", SIZES, QUICK, FULL), argv, QUICK, FULL,
                    measure)


if __name__ == "__main__":
    sys.exit(main())
