"""What every benchmark shares: the figure, its printing, progress lines, sizes, the workload,
the ledgers built for it, the Ed25519 baseline and the peak-memory probe.

A figure is a ratio against a baseline measured in the same run, because the
machine is shared and noisy: absolute rates drift with its load, ratios much
less. Each benchmark has quick default sizes (well under a minute) and
`--full`, the sizes its goals are stated at; an explicit size option wins
over both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import commands as build
from ledger.api import Ledger
from ledger.chain import signed_message
from ledger.keys import raw_public

Log = Callable[[str], None]

FLEET = "bench"
BATCH = 1000  # records per transaction in batched appends (Ledger.append_many's chunk)
BUILD_SLICE = 100_000  # bodies per append_many call when building a ledger
SIGNATURE_BATCH = 1024  # signatures per task in the Ed25519 baseline (= ledger.verify.SPAN)
BASELINE_SIGNATURES = 65536  # enough for ~2 s of verifying on two cores
MB = 1024 * 1024


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
               full: Mapping[str, int], figures: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line of `python -m benchmarks.<name>`: one integer option per size (named
    in `sizes`, with what it counts), each defaulting to `quick` or, with --full, `full`;
    with `figures`, `--only NAME...` picks some of them."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for option, what in sizes.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=int,
                            help=f"{what} (default {quick[option]:,}; --full: {full[option]:,})")
    parser.add_argument("--full", action="store_true",
                        help="the sizes the goals are stated at (slow); explicit sizes still win")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    if figures:
        parser.add_argument("--only", nargs="+", choices=figures, metavar="NAME",
                            help=f"only these figures ({', '.join(figures)})")
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


# -- the ledgers a benchmark measures -------------------------------------------------


class Workspace:
    """The temporary directory, and ledgers built in it (reused by size)."""

    def __init__(self, root: Path, log: Log):
        self.root = root
        self.log = log
        self._built: dict[int, tuple[Path, Path]] = {}

    def ledger_of(self, n: int) -> tuple[Path, Path]:
        """(db, key) of a ledger holding n records in one fleet, built with append_many."""
        if n not in self._built:
            db, key = self.root / f"built-{n}.db", self.root / f"built-{n}.key"
            self.log(f"building a ledger of {n:,} records ...")
            start = time.perf_counter()
            with Ledger.init(db, key, actor="bench") as ledger:
                for first in range(0, n, BUILD_SLICE):
                    ledger.append_many(FLEET, bodies(min(BUILD_SLICE, n - first)), chunk=BATCH)
            self.log(f"built in {time.perf_counter() - start:.1f} s")
            self._built[n] = (db, key)
        return self._built[n]


FigureOf = Callable[[Workspace], Figure]


def run_figures(chosen: Sequence[str], figures: Mapping[str, FigureOf], log: Log) -> list[Figure]:
    """Measure the chosen figures, in the order `figures` lists them, in one temporary
    directory (deleted at the end) whose ledgers they share."""
    measured_figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        space = Workspace(Path(tmp), log)
        for name, figure in figures.items():
            if name in chosen:
                log(f"measuring {name} ...")
                measured_figures.append(measured(log, figure(space)))
    return measured_figures


# -- Ed25519: the limit of checking every signature ------------------------------------


def _verify_signatures(public_raw: bytes, pairs: Sequence[tuple[bytes, bytes]]) -> int:
    """Pool task of the Ed25519 baseline: check a batch of (signature, message)."""
    key = Ed25519PublicKey.from_public_bytes(public_raw)
    for signature, message in pairs:
        key.verify(signature, message)
    return len(pairs)


def crypto_verify_rate(total: int, workers: int) -> float:
    """Ed25519 verifications/s of `cryptography` in a pool of `workers` processes."""
    private = Ed25519PrivateKey.generate()
    public_raw = raw_public(private.public_key())
    size = max(1, min(total, SIGNATURE_BATCH))
    messages = [signed_message(hashlib.sha256(b"%d" % i).hexdigest()) for i in range(size)]
    pairs = [(private.sign(m), m) for m in messages]
    tasks = max(1, total // size)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_verify_signatures, [public_raw] * workers, [pairs[:1]] * workers))  # start
        start = time.perf_counter()
        done = sum(pool.map(_verify_signatures, [public_raw] * tasks, [pairs] * tasks))
        return done / (time.perf_counter() - start)


def verify_rate(db: Path, key: Path, all_signatures: bool) -> float:
    """Records/s of the fleet's chain through `Ledger.verify`."""
    with Ledger.open(db, key, writable=False) as ledger:
        start = time.perf_counter()
        report = ledger.verify(all_signatures=all_signatures)
        elapsed = time.perf_counter() - start
    return sum(chain.count for chain in report.chains if chain.chain == FLEET) / elapsed


def figure_signatures(space: Workspace, n: int, name: str, title: str) -> Figure:
    """`Ledger.verify` checking every signature vs the Ed25519 verify rate on all cores,
    measured before and after it (goal >= 0.8)."""
    db, key = space.ledger_of(n)
    workers = os.cpu_count() or 1
    signatures = min(max(n, 1), BASELINE_SIGNATURES)
    before = crypto_verify_rate(signatures // 2 or 1, workers)
    rate = verify_rate(db, key, all_signatures=True)
    after = crypto_verify_rate(signatures // 2 or 1, workers)
    baseline = (before + after) / 2
    ratio = rate / baseline
    return Figure(name, f"{title}, {n:,} records", rate, baseline, "rec/s", ratio, ">= 0.8",
                  ratio >= 0.8, f"baseline: cryptography Ed25519 verify, {workers} processes "
                  f"(before {before:,.0f}, after {after:,.0f}/s)")


# -- peak memory of a fresh process ---------------------------------------------------

# The probe reads its own peak from /proc (VmHWM): its ru_maxrss would include the
# benchmark process's RSS, which Linux carries over the exec of a vforked child.
# Its pool workers are forked, not exec'd, so their ru_maxrss is their own.
PROBE = """\
import json, re, resource, sys
{action}
status = open("/proc/self/status").read()
print(json.dumps({{
    "parent_kb": int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)),
    "workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}}))
"""
IMPORT_ONLY = "import ledger"


def peak_rss(action: str, args: Sequence[str], cwd: Path) -> tuple[int, int]:
    """(own, largest child's) peak RSS in bytes of a fresh Python that runs `action`.

    Pool workers are the probe's children; a pool is shut down (its workers
    waited for) before the probe reads RUSAGE_CHILDREN. Linux only (/proc).
    """
    done = subprocess.run([sys.executable, "-c", PROBE.format(action=action), *args], cwd=cwd,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["parent_kb"]) * 1024, int(result["workers_kb"]) * 1024
