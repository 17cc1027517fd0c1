"""Appends, batched appends, verify and memory: each figure a ratio against a baseline
measured in the same run.

    python -m benchmarks.append_verify [--full] [--records N] [--batch-records N]
                                       [--verify-records N] [--memory-records N]
                                       [--only NAME ...] [--json]

Figures:

- ``append``: ``Ledger.append``, one record per transaction, vs raw eventsourcing
  saving one small aggregate event per ``save()`` (goal >= 0.8).
- ``batch``: ``Ledger.append_many(chunk=1000)`` vs raw eventsourcing saving 1,000
  events per ``save()`` (goal >= 0.4 and >= 20,000 records/s).
- ``append-file``: ``ledger append --file`` of fact lines, which sorts facts from
  decisions for the gate, vs reading and parsing the same file and handing it
  straight to ``Ledger.append_many`` (the ungated path), each on a fresh ledger
  (goal >= 0.9).
- ``verify``: records/s through ``Ledger.verify`` vs the Ed25519 verify rate of
  ``cryptography`` on all cores (goal >= 0.8).
- ``memory``: peak RSS of a child process that verifies a ledger of
  ``--memory-records`` records vs the same child doing only ``import ledger``
  (goal < 200 MB at 1,000,000 records, the ``--full`` size).

Every database is a real SQLite file in a temporary directory, deleted at the
end. The raw baseline uses the same eventsourcing settings as the ledger
(``ledger.store.persistence_env``). Append figures alternate baseline and ledger
rounds, and the verify baseline is measured before and after the ledger, so
drift on a shared machine falls on both sides. Absolute rates are printed only
for context; the results are the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks.common import (
    BATCH,
    FLEET,
    IMPORT_ONLY,
    MB,
    Figure,
    Log,
    Workspace,
    bodies,
    figure_signatures,
    parser_for,
    peak_rss,
    run_figures,
    run_main,
)
from ledger.api import Ledger
from ledger.cli import main as cli_main
from ledger.encoding import parse_record
from ledger.store import persistence_env

ROUNDS = 3  # alternating baseline/ledger rounds for the append figures
QUICK = {"records": 2000, "batch_records": 60_000, "file_records": 30_000, "verify_records": 50_000,
         "memory_records": 100_000}
FULL = {"records": 3000, "batch_records": 90_000, "file_records": 100_000, "verify_records": 100_000,
        "memory_records": 1_000_000}


# -- the raw eventsourcing baseline -----------------------------------------------


class Worker(Aggregate):
    """The baseline's aggregate: one small event per report, like a worker.sessions record."""

    active_sessions = 0

    @event("SessionsReported")
    def report(self, actor: str, target: str, result: str, worker_id: str, version: str,
               active_sessions: int) -> None:
        self.active_sessions = active_sessions


class RawApplication(Application[UUID]):
    """Plain eventsourcing on its own SQLite file, with the ledger's settings."""

    name = "RawBench"


def raw_appends(db: Path, records: Sequence[dict[str, Any]], per_save: int) -> float:
    """Seconds for raw eventsourcing to save `records`, `per_save` events per save()."""
    env = persistence_env(str(db))
    env.pop("APPLICATION_RECORDER_TOPIC")  # the library's own recorder: the baseline is untouched
    app = RawApplication(env=env)
    try:
        worker = Worker()
        app.save(worker)  # untimed: creates the table and the WAL
        start = time.perf_counter()
        for first in range(0, len(records), per_save):
            for body in records[first:first + per_save]:
                worker.report(body["actor"], body["target"], body["result"], body["worker_id"],
                              body["version"], body["active_sessions"])
            app.save(worker)
        return time.perf_counter() - start
    finally:
        app.close()


def ledger_appends(db: Path, records: Sequence[dict[str, Any]], per_save: int) -> float:
    """Seconds for the ledger to append `records`, `per_save` records per transaction."""
    ledger = Ledger.init(db, db.with_suffix(".key"), actor="bench")
    try:
        ledger.append(FLEET, records[0])  # untimed: first write to the fleet's chain
        start = time.perf_counter()
        if per_save == 1:
            for body in records:
                ledger.append(FLEET, body)
        else:
            ledger.append_many(FLEET, records, chunk=per_save)
        return time.perf_counter() - start
    finally:
        ledger.close()


def paired_rates(tmp: Path, n: int, per_save: int) -> tuple[float, float]:
    """(ledger, raw) records/s over alternating rounds of n/ROUNDS records each."""
    per_round = max(per_save, n // ROUNDS)
    records = bodies(per_round)
    ledger_time = raw_time = 0.0
    for round_ in range(ROUNDS):
        raw_time += raw_appends(tmp / f"raw-{per_save}-{round_}.db", records, per_save)
        ledger_time += ledger_appends(tmp / f"ledger-{per_save}-{round_}.db", records, per_save)
    total = per_round * ROUNDS
    return total / ledger_time, total / raw_time


# -- figures ----------------------------------------------------------------------


def figure_append(tmp: Path, n: int) -> Figure:
    ledger, raw = paired_rates(tmp, n, 1)
    ratio = ledger / raw
    return Figure("append", "append, 1 record/transaction", ledger, raw, "rec/s", ratio,
                  ">= 0.8", ratio >= 0.8, "baseline: eventsourcing, 1 aggregate event per save()")


def figure_batch(tmp: Path, n: int) -> Figure:
    per_save = min(BATCH, n)
    ledger, raw = paired_rates(tmp, n, per_save)
    ratio = ledger / raw
    return Figure("batch", f"append_many, {per_save} records/transaction", ledger, raw, "rec/s",
                  ratio, ">= 0.4 and >= 20,000 rec/s", ratio >= 0.4 and ledger >= 20_000,
                  f"baseline: eventsourcing, {per_save} aggregate events per save()")


def _file_ungated(db: Path, path: Path) -> float:
    """Seconds to parse `path` line by line and append it with `append_many`: the ungated path."""
    Ledger.init(db, db.with_suffix(".key"), actor="bench").close()
    start = time.perf_counter()
    with Ledger.open(db, db.with_suffix(".key")) as ledger:
        lines = path.read_bytes().splitlines()
        ledger.append_many(FLEET, [parse_record(line, f"line {n}") for n, line in enumerate(lines, 1)])
    return time.perf_counter() - start


def _file_gated(db: Path, path: Path) -> float:
    """Seconds for `ledger append --file` (in-process, output discarded) on the same file."""
    Ledger.init(db, db.with_suffix(".key"), actor="bench").close()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(["append", "--file", str(path), "--db", str(db), "--key",
                         str(db.with_suffix(".key")), "--fleet", FLEET])
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"ledger append --file exited {code}")
    return elapsed


def figure_append_file(tmp: Path, n: int) -> Figure:
    path = tmp / "facts.jsonl"
    path.write_bytes(b"".join(orjson.dumps(body) + b"\n" for body in bodies(n)))
    gated = ungated = 0.0
    for round_ in range(ROUNDS):
        ungated += _file_ungated(tmp / f"file-ungated-{round_}.db", path)
        gated += _file_gated(tmp / f"file-gated-{round_}.db", path)
    total = n * ROUNDS
    ratio = ungated / gated
    return Figure("append-file", f"append --file of {n:,} fact lines", total / gated, total / ungated,
                  "rec/s", ratio, ">= 0.9", ratio >= 0.9,
                  "baseline: the same file parsed and given to Ledger.append_many")


def figure_memory(space: Workspace, n: int) -> Figure:
    db, key = space.ledger_of(n)
    baseline, _ = peak_rss(IMPORT_ONLY, [], space.root)
    parent, workers = peak_rss(VERIFY, ["verify", "--db", str(db), "--key", str(key)], space.root)
    peak = max(parent, workers)
    which = "parent" if parent >= workers else "a pool worker"
    return Figure("memory", f"peak RSS verifying {n:,} records", peak / MB, baseline / MB, "MB",
                  peak / baseline, "< 200 MB", peak < 200 * MB,
                  f"max is {which}: parent {parent / MB:.1f} MB, largest worker {workers / MB:.1f} MB;"
                  " baseline: `import ledger`")


VERIFY = "from ledger.cli import main\nif main(sys.argv[1:]) != 0:\n    sys.exit('verify failed')"


# -- running and printing -----------------------------------------------------------

FIGURES = ("append", "batch", "append-file", "verify", "memory")


def run(args: argparse.Namespace, log: Log) -> list[Figure]:
    return run_figures(args.only or list(FIGURES), {
        "append": lambda space: figure_append(space.root, args.records),
        "batch": lambda space: figure_batch(space.root, args.batch_records),
        "append-file": lambda space: figure_append_file(space.root, args.file_records),
        "verify": lambda space: figure_signatures(space, args.verify_records, "verify", "verify"),
        "memory": lambda space: figure_memory(space, args.memory_records),
    }, log)


SIZES = {
    "records": "records per side for the one-per-transaction figure",
    "batch_records": "records per side for the batched figure",
    "file_records": "fact lines in the file for the append --file figure",
    "verify_records": "records in the ledger for the verify figure",
    "memory_records": "records in the ledger for the memory figure",
}


def build_parser() -> argparse.ArgumentParser:
    return parser_for("append_verify", "Appends, verify and memory: figures as ratios to baselines "
                        "measured in the same run.", SIZES, QUICK, FULL, FIGURES)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, QUICK, FULL, lambda args, log: (run(args, log), {}))


if __name__ == "__main__":
    sys.exit(main())
