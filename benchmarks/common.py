"""What every benchmark shares: the figure, its printing, progress lines, sizes and the workload.

A figure is a ratio against a baseline measured in the same run, because the
machine is shared and noisy: absolute rates drift with its load, ratios much
less. Each benchmark has quick default sizes (well under a minute) and
`--full`, the sizes its goals are stated at; an explicit size option wins
over both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledger import commands as build

Log = Callable[[str], None]

FLEET = "bench"
BATCH = 1000  # records per transaction in batched appends (Ledger.append_many's chunk)


@dataclass(frozen=True)
class Figure:
    """One result: the ledger's number, its baseline, their ratio, and the goal."""

    name: str
    title: str
    ledger: float
    baseline: float
    unit: str
    ratio: float
    goal: str
    met: bool
    note: str = ""


def bodies(n: int) -> list[dict[str, Any]]:
    """Small worker.sessions reports: the records the append and verify figures write."""
    return [build.worker_sessions("w1", "v1", i, "bench") for i in range(n)]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 < q <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def progress(prog: str) -> Log:
    """A logger for phase lines on stderr, each with the seconds since the benchmark began,
    so a long run shows where it is (stdout keeps only the result)."""
    began = time.monotonic()

    def log(message: str) -> None:
        print(f"{prog}: [{time.monotonic() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    return log


def measured(log: Log, figure: Figure) -> Figure:
    """Say on the progress log that a figure is done, with its ratio; return it."""
    verdict = "" if figure.goal == "none" else f" (goal {figure.goal}: {'met' if figure.met else 'MISSED'})"
    log(f"{figure.name}: ratio {figure.ratio:.2f}{verdict}")
    return figure


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a plain-text table, notes underneath."""
    rows = [("figure", "ledger", "baseline", "ratio", "goal", "")]
    for f in figures:
        rows.append((f.title, f"{_number(f.ledger)} {f.unit}", f"{_number(f.baseline)} {f.unit}",
                     f"{f.ratio:.2f}", f.goal, "met" if f.met else "MISSED"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"  {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines)


def report(figures: Sequence[Figure], settings: dict[str, Any], as_json: bool,
           **details: Any) -> None:
    """Print the figures: a table, or JSON with the settings they were measured with."""
    if as_json:
        print(json.dumps({"cpus": os.cpu_count(), "settings": settings,
                          "figures": [asdict(f) for f in figures], **details}, indent=2))
    else:
        print(table(figures))


def parser_for(name: str, description: str, sizes: Mapping[str, str], quick: Mapping[str, int],
               full: Mapping[str, int]) -> argparse.ArgumentParser:
    """The command line of `python -m benchmarks.<name>`: one integer option per size (named
    in `sizes`, with what it counts), each defaulting to `quick` or, with --full, `full`."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for option, what in sizes.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=int,
                            help=f"{what} (default {quick[option]:,}; --full: {full[option]:,})")
    parser.add_argument("--full", action="store_true",
                        help="the sizes the goals are stated at (slow); explicit sizes still win")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def resolve_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  quick: Mapping[str, int], full: Mapping[str, int]) -> dict[str, int]:
    """Fill every size option left unset from `full` (with --full) or `quick`, and check it."""
    chosen = full if args.full else quick
    for option, value in chosen.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    return {option: int(getattr(args, option)) for option in chosen}


Measure = Callable[[argparse.Namespace, Log], tuple[Sequence[Figure], dict[str, Any]]]


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: Mapping[str, int],
             full: Mapping[str, int], measure: Measure) -> int:
    """Parse the command line, measure with progress lines on stderr, print the figures.

    `measure` returns the figures and any details for the JSON output."""
    args = parser.parse_args(argv)
    sizes = resolve_sizes(parser, args, quick, full)
    # The ledgers a benchmark makes pin their anchors in a configuration of their own,
    # never in the user's (`ledger init` pins each new ledger's key).
    with tempfile.TemporaryDirectory(prefix="ledger-bench-config-") as config:
        previous = os.environ.get("XDG_CONFIG_HOME")
        os.environ["XDG_CONFIG_HOME"] = config
        try:
            figures, details = measure(args, progress(parser.prog.rsplit(".", 1)[-1]))
        finally:
            if previous is None:
                os.environ.pop("XDG_CONFIG_HOME", None)
            else:
                os.environ["XDG_CONFIG_HOME"] = previous
    report(figures, sizes, args.json, **details)
    return 0


def repo_root() -> Path:
    """The checkout these benchmarks are in: the nearest parent holding
    `scripts/postgres-up` and `pyproject.toml`. The benchmarks are not installed
    with the package; they run from a checkout, wherever it is."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "scripts" / "postgres-up").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"{__file__} is not in a deploy-ledger checkout (no scripts/postgres-up above it)")
