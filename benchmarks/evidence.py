"""Verify, inclusion proofs, export and their memory: each figure a ratio against a baseline
measured in the same run.

    python -m benchmarks.evidence [--full] [--records N] [--small N] [--queries N] [--json]

Figures:

- ``verify``: records/s of ``Ledger.verify(all_signatures=False)`` (on every core) vs
  one core parsing the same stored records (``orjson.loads``), re-encoding each without
  ``hash`` and ``sig`` (``canonical``) and hashing it with SHA-256 (goal >= 0.5).
- ``verify-all``: records/s of ``Ledger.verify(all_signatures=True)`` vs the Ed25519
  verify rate of ``cryptography`` on all cores (goal >= 0.8).
- ``prove``: p50 of ``prove_inclusion`` for random seqs at ``--records`` vs at
  ``--small`` (10,000) records; each checkpoint is taken once per size, untimed
  (goal ratio <= 2).
- ``export``: seconds of ``ledger export`` of ``--records`` records vs 60 s (goal
  < 60 s at 1,000,000, extrapolated linearly below that size).
- ``memory``: the largest peak RSS (a probe process or its pool workers) of ``ledger
  verify``, ``ledger verify --all-signatures``, ``ledger prove`` and ``ledger export`` of
  ``--records`` records, each in a fresh child, vs the same child doing only ``import
  ledger`` (goal < 200 MB each at 1,000,000 records, the ``--full`` size).

Every database is a real SQLite file in a temporary directory, deleted at the end.
Baselines that drift with the machine's load (the hashing pass, the Ed25519 rate) are
measured before and after the ledger, and the two proof sizes are timed alternately.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from benchmarks.common import (
    FLEET,
    IMPORT_ONLY,
    MB,
    Figure,
    Log,
    Workspace,
    figure_signatures,
    parser_for,
    peak_rss,
    percentile,
    run_figures,
    run_main,
    verify_rate,
)
from ledger.api import Ledger
from ledger.cli import main as cli_main
from ledger.encoding import canonical
from ledger.evidence import prove_inclusion

QUICK = {"records": 50_000, "small": 10_000, "queries": 200}
FULL = {"records": 1_000_000, "small": 10_000, "queries": 200}
GOAL_RECORDS = 1_000_000  # the size the export and memory goals are stated at
EXPORT_GOAL_S = 60.0
HASH_SAMPLE = 200_000  # stored records the hashing baseline runs over (a rate: a sample will do)
SEED = 1

# A fresh Python running one `ledger` command, its output discarded (the probe prints
# its own result as the last line of stdout).
CLI = """\
import contextlib, os
from ledger.cli import main
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    code = main(sys.argv[1:])
if code != 0:
    sys.exit(f"ledger {sys.argv[1]} exited {code}")"""


def _stored(db: Path, key: Path, limit: int) -> list[bytes]:
    with Ledger.open(db, key, writable=False) as ledger:
        records: list[bytes] = []
        for data in ledger.raw_records(FLEET):
            records.append(data)
            if len(records) == limit:
                break
    return records


def hashing_rate(records: Sequence[bytes]) -> float:
    """Records/s of one core parsing, re-encoding (without hash and sig) and hashing."""
    start = time.perf_counter()
    for data in records:
        record = orjson.loads(data)
        record.pop("hash", None)
        record.pop("sig", None)
        hashlib.sha256(canonical(record)).digest()
    return len(records) / (time.perf_counter() - start)


def figure_verify(space: Workspace, n: int) -> Figure:
    db, key = space.ledger_of(n)
    records = _stored(db, key, HASH_SAMPLE)
    before = hashing_rate(records)
    rate = verify_rate(db, key, all_signatures=False)
    after = hashing_rate(records)
    baseline = (before + after) / 2
    ratio = rate / baseline
    return Figure("verify", f"verify, {n:,} records", rate, baseline, "rec/s", ratio, ">= 0.5",
                  ratio >= 0.5, f"baseline: 1 core orjson.loads + canonical + SHA-256 of "
                  f"{len(records):,} stored records (before {before:,.0f}, after {after:,.0f}/s)")


def figure_prove(space: Workspace, n: int, small: int, queries: int) -> Figure:
    rng = random.Random(SEED)
    sizes = (n, small)
    times: dict[int, list[float]] = {size: [] for size in sizes}
    with contextlib.ExitStack() as stack:
        opened = {}
        for size in sizes:
            db, key = space.ledger_of(size)
            ledger = stack.enter_context(Ledger.open(db, key, writable=True, read_only=True))
            opened[size] = (ledger, ledger.checkpoint(FLEET))  # untimed
        for _ in range(queries):
            for size in sizes:  # alternately, so drift falls on both
                ledger, text = opened[size]
                seq = rng.randint(1, size)
                start = time.perf_counter()
                prove_inclusion(ledger.store, FLEET, seq, text)
                times[size].append(time.perf_counter() - start)
    large, base = percentile(times[n], 0.5) * 1000, percentile(times[small], 0.5) * 1000
    ratio = large / base
    return Figure("prove", f"prove_inclusion p50, {n:,} records", large, base, "ms", ratio, "<= 2",
                  ratio <= 2, f"baseline: the same at {small:,} records; {queries} random seqs each")


def _export(db: Path, key: Path, out: Path) -> float:
    args = ["export", "--fleet", FLEET, "--out", str(out), "--db", str(db), "--key", str(key)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(args)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"ledger export exited {code}")
    return elapsed


def figure_export(space: Workspace, n: int) -> Figure:
    db, key = space.ledger_of(n)
    seconds = _export(db, key, space.root / "export-timed")
    projected = seconds * max(1.0, GOAL_RECORDS / n)
    extrapolated = "" if n >= GOAL_RECORDS else f"; extrapolated to {GOAL_RECORDS:,}: {projected:,.1f} s"
    return Figure("export", f"ledger export, {n:,} records", seconds, EXPORT_GOAL_S, "s",
                  seconds / EXPORT_GOAL_S, f"< 60 s at {GOAL_RECORDS:,}", projected < EXPORT_GOAL_S,
                  f"baseline: the 60 s budget{extrapolated}")


def figure_memory(space: Workspace, n: int) -> Figure:
    db, key = space.ledger_of(n)
    where = ["--db", str(db), "--key", str(key)]
    commands = {
        "verify": ["verify", *where],
        "verify --all-signatures": ["verify", "--all-signatures", *where],
        "prove": ["prove", "--fleet", FLEET, "--seq", str(max(1, n // 2)), *where],
        "export": ["export", "--fleet", FLEET, "--out", str(space.root / "export-memory"), *where],
    }
    baseline, _ = peak_rss(IMPORT_ONLY, [], space.root)
    peaks: dict[str, tuple[int, int]] = {}
    for name, args in commands.items():
        space.log(f"memory of ledger {name} ...")
        peaks[name] = peak_rss(CLI, args, space.root)
    largest = {name: max(parent, workers) for name, (parent, workers) in peaks.items()}
    worst = max(largest, key=lambda name: largest[name])
    peak = largest[worst]
    detail = ", ".join(f"{name} {largest[name] / MB:.1f} (parent {parent / MB:.1f}, worker "
                       f"{workers / MB:.1f})" for name, (parent, workers) in peaks.items())
    return Figure("memory", f"peak RSS of verify (both)/prove/export, {n:,} records", peak / MB,
                  baseline / MB, "MB", peak / baseline, "< 200 MB each",
                  all(value < 200 * MB for value in largest.values()),
                  f"max is {worst}; MB: {detail}; baseline: `import ledger`")


# -- running and printing -----------------------------------------------------------

FIGURES = ("verify", "verify-all", "prove", "export", "memory")


def run(args: argparse.Namespace, log: Log) -> list[Figure]:
    return run_figures(args.only or list(FIGURES), {
        "verify": lambda space: figure_verify(space, args.records),
        "verify-all": lambda space: figure_signatures(space, args.records, "verify-all",
                                                      "verify --all-signatures"),
        "prove": lambda space: figure_prove(space, args.records, args.small, args.queries),
        "export": lambda space: figure_export(space, args.records),
        "memory": lambda space: figure_memory(space, args.records),
    }, log)


SIZES = {
    "records": "records in the ledger every figure measures",
    "small": "records in the ledger the prove figure compares against",
    "queries": "random seqs proved at each size for the prove figure",
}


def build_parser() -> argparse.ArgumentParser:
    return parser_for("evidence", "Verify, proofs, export and memory: figures as ratios to baselines "
                        "measured in the same run.", SIZES, QUICK, FULL, FIGURES)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, QUICK, FULL, lambda args, log: (run(args, log), {}))


if __name__ == "__main__":
    sys.exit(main())
