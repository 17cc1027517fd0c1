"""Mutation testing of the ledger's core: would the tests notice a small wrong change?

For each named module of `ledger/` it generates mutants from the module's
syntax tree (one small change each: a comparison flipped, `and`/`or` swapped,
a condition negated, an integer constant moved by one, a `raise` dropped or a
`return` made to return None, `True`/`False` swapped, a check's name string
replaced), takes a random sample of them, and runs the module's test files
against each mutant: SQLite only (`-k "not postgres"`), stopping at the first
failure (`-x`), with a per-mutant timeout. A mutant is *killed* when the tests
fail, *survived* when they pass, *timed out* when they outlast the timeout.
The score is killed / (killed + survived); survivors are printed with
file:line and the change, since each one is a change no test would notice.
Each module's sample is drawn with its own generator seeded by `--seed` and
the module's name, so it is the same whichever other modules run alongside.

Some mutants change nothing any caller can observe (a batch size, an index
into a one-element list, a branch that no input reaches). They are listed,
each with the reason, in `benchmarks/mutation-equivalent.txt`; a survivor on
that list counts as *equivalent* and is left out of the score's denominator,
shown in its own column and printed with its reason; a listed mutant the tests
kill is reported as a wrong listing. `--resume EARLIER.json` carries over the
kills (and the listed equivalent survivors) of an earlier `--json` run of the
same sample (a site edited since is run anew) and runs the rest: valid while
tests have only been added since.

Mutants are written into a private copy of the checkout per worker process
(never into the working tree); at most two workers run at once. Before the
mutants, each module's tests run once unmutated in that copy: tests that
already fail there are deselected (and listed), so they do not count as
kills.

Not part of CI: it takes minutes. Run from the checkout's root:

    .venv/bin/python -m benchmarks.mutation --modules verify chain --sample 20 --seed 1
"""

from __future__ import annotations

import argparse
import ast
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "benchmarks" / "mutation-equivalent.txt"
MAX_WORKERS = 2

#: Which test files can notice a change in each module (targeted ones first: `-x` stops early).
TESTS: dict[str, list[str]] = {
    "rules": ["tests/test_fold_bounds.py", "tests/test_rules.py", "tests/test_rollback_rules.py",
              "tests/test_audit_fields.py", "tests/test_projections.py"],
    "decide": ["tests/test_decide_input.py", "tests/test_external_settlement.py",
               "tests/test_rollback_rules.py", "tests/test_audit_fields.py", "tests/test_gate.py",
               "tests/test_kat.py"],
    "rollback": ["tests/test_decide_input.py", "tests/test_rollback_rules.py", "tests/test_audit_fields.py",
                 "tests/test_gate.py", "tests/test_kat.py"],
    "chain": ["tests/test_verify_reach.py", "tests/test_kat.py", "tests/test_chain.py",
              "tests/test_checkpoint_kat.py", "tests/test_keyholder_tamper.py", "tests/test_tamper.py",
              "tests/test_keys.py"],
    "encoding": ["tests/test_values_kat.py", "tests/test_encoding.py", "tests/test_bad_input.py",
                 "tests/test_checkpoint_kat.py", "tests/test_kat.py"],
    "verify": ["tests/test_verify_reach.py", "tests/test_kat.py", "tests/test_keyholder_tamper.py",
               "tests/test_tamper.py", "tests/test_checkpoint_kat.py", "tests/test_keys.py",
               "tests/test_fast_verify.py", "tests/test_verify_spans.py"],
}

#: What the private copy needs: the packages, the tests and what they read.
COPIED = ("ledger", "projections", "tests", "benchmarks", "schemas", "scripts", "pyproject.toml",
          "README.md")

FLIP: dict[type[ast.cmpop], list[type[ast.cmpop]]] = {
    ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq],
    ast.Lt: [ast.GtE, ast.LtE], ast.LtE: [ast.Gt, ast.Lt],
    ast.Gt: [ast.LtE, ast.GtE], ast.GtE: [ast.Lt, ast.Gt],
    ast.In: [ast.NotIn], ast.NotIn: [ast.In],
    ast.Is: [ast.IsNot], ast.IsNot: [ast.Is],
}
SYMBOL: dict[type[ast.cmpop], str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}
#: A string literal that looks like a check's name (`"prev"`, `"checkpoint root"`) ...
CHECK_NAME = re.compile(r"^[a-z][a-z_ ]{1,30}$")
#: ... given first to a call that reports a fault or refusal (or first in a fault tuple).
CHECK_CALL = re.compile(r"^_?(fault|Fault|refusal|Refusal|Refused)$")
REPLACED_NAME = "mutated-check"


@dataclass(frozen=True)
class Site:
    """One mutation: the node (by its index in `ast.walk` order), the kind of change, and a variant."""

    module: str
    node: int
    kind: str
    variant: int
    line: int
    change: str

    def key(self) -> str:
        """How a report names the mutant, and how the list of equivalent mutants names it (the
        node's index tells apart two alike changes on one line, such as two `1 -> 2`)."""
        return f"ledger/{self.module}.py:{self.line}: {self.kind}: {self.change} [node {self.node}]"


@dataclass
class Result:
    site: Site
    outcome: str  # killed, survived, equivalent (a listed survivor), timeout, invalid
    seconds: float
    #: Taken from an earlier run of the same sample (`--resume`), not run again.
    carried: bool = False


@dataclass
class ModuleReport:
    module: str
    tests: list[str]
    generated: int = 0
    sample: int = 0
    results: list[Result] = field(default_factory=list)
    baseline_failures: list[str] = field(default_factory=list)
    baseline_seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def score(self) -> float | None:
        """Killed / non-equivalent: listed equivalent mutants are left out of the denominator."""
        killed, survived = self.count("killed"), self.count("survived")
        return killed / (killed + survived) if killed + survived else None


def read_equivalent(path: Path) -> dict[str, str]:
    """Mutants known to change no behaviour: `<key as the report prints it> -- <why>` a line.

    Such a survivor counts as *equivalent*, outside the score's denominator, and
    is listed with its reason; a listed mutant that the tests kill is reported,
    since the listing is then wrong.
    """
    listed: dict[str, str] = {}
    if not path.exists():
        return listed
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            raise SystemExit(f"mutation: {path}:{number}: expected '<mutant> -- <why it is equivalent>'")
        listed[key.strip()] = reason.strip()
    return listed


def read_previous(path: Path, equivalent: dict[str, str]) -> dict[Site, Result]:
    """The results of an earlier `--json` run to carry over, by site, for `--resume`.

    A mutant is carried over only if its site is exactly the same (module, node,
    kind, line and change): a module edited since has other sites, run anew.
    Kills (and mutants that do not compile) carry over: they stay so as long as
    tests were only added. So do survivors still listed as equivalent: more
    tests could only kill one, which would raise the score, never lower it.
    """
    try:
        reports = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"mutation: cannot read earlier results {path}: {exc}") from None
    found: dict[Site, Result] = {}
    for report in reports:
        for result in report["results"]:
            site = Site(**result["site"])
            listed = result["outcome"] in ("survived", "equivalent") and site.key() in equivalent
            if result["outcome"] in ("killed", "invalid") or listed:
                found[site] = Result(site, "equivalent" if listed else result["outcome"],
                                     result["seconds"], carried=True)
    return found


# -- generating mutants --------------------------------------------------------------------------


def _docstring_ids(tree: ast.AST) -> set[int]:
    """ids of docstring constants: changing them changes nothing worth testing."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                found.add(id(body[0].value))
    return found


def _annotation_ids(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (never executed with postponed annotations)."""
    found: set[int] = set()
    roots: list[ast.AST | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    for root in roots:
        if root is not None:
            found.update(id(n) for n in ast.walk(root))
    return found


def sites_of(module: str, source: str) -> list[Site]:
    """Every mutation the operators can make in `source`, in a stable order."""
    tree = ast.parse(source)
    skip = _docstring_ids(tree) | _annotation_ids(tree)
    check_args = {id(name) for node in ast.walk(tree) if (name := _named_check(node)) is not None}
    checks = _check_members()
    sites: list[Site] = []

    def add(index: int, node: ast.AST, kind: str, change: str, variant: int = 0) -> None:
        sites.append(Site(module, index, kind, variant, getattr(node, "lineno", 0), change))

    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for position, op in enumerate(node.ops):
                for choice, new in enumerate(FLIP.get(type(op), [])):
                    add(index, node, "compare", f"{SYMBOL[type(op)]} -> {SYMBOL[new]}",
                        position * 10 + choice)
        elif isinstance(node, ast.BoolOp):
            add(index, node, "boolop", "and -> or" if isinstance(node.op, ast.And) else "or -> and")
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            add(index, node, "negate", f"condition `{ast.unparse(node.test)[:50]}` negated")
        elif isinstance(node, ast.Assert):
            continue
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                add(index, node, "bool", f"{value} -> {not value}")
            elif isinstance(value, int):
                add(index, node, "int", f"{value} -> {value + 1}", 1)
                add(index, node, "int", f"{value} -> {value - 1}", -1)
            elif isinstance(value, str) and id(node) in check_args and CHECK_NAME.match(value):
                add(index, node, "check-name", f"{value!r} -> {REPLACED_NAME!r}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "Check" and node.attr in checks:
            other = checks[(checks.index(node.attr) + 1) % len(checks)]
            add(index, node, "check-enum", f"Check.{node.attr} -> Check.{other}")
        elif isinstance(node, ast.Raise) and node.exc is not None:
            add(index, node, "raise", f"`raise {ast.unparse(node.exc)[:50]}` dropped")
        elif isinstance(node, ast.Return) and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            add(index, node, "return", f"`return {ast.unparse(node.value)[:50]}` -> `return None`")
    return sites


def _named_check(node: ast.AST) -> ast.Constant | None:
    """The check name in a fault or refusal: the first string among a fault call's positional
    arguments (`self.fault(seq, "prev", ...)`), or a fault tuple's (`(position, "hash", ...)`)."""
    if isinstance(node, ast.Call) and CHECK_CALL.search(_callee(node)):
        items = node.args
    elif isinstance(node, ast.Tuple) and len(node.elts) >= 4 and isinstance(node.ctx, ast.Load):
        items = node.elts
    else:
        return None
    return next((item for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)),
                None)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _check_members() -> list[str]:
    """The names of the refusal checks (`ledger.events.Check`), in definition order."""
    from ledger.events import Check

    return [member.name for member in Check]


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST, site: Site):
        self.target = target
        self.site = site

    def visit(self, node: ast.AST) -> Any:
        if node is not self.target:
            return self.generic_visit(node)
        site = self.site
        if isinstance(node, ast.Compare):
            position, choice = divmod(site.variant, 10)
            node.ops[position] = FLIP[type(node.ops[position])][choice]()
        elif isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            node.test = ast.UnaryOp(ast.Not(), node.test)
        elif isinstance(node, ast.Constant) and site.kind == "bool":
            node.value = not node.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, int) and site.kind == "int":
            node.value = node.value + site.variant
        elif isinstance(node, ast.Constant) and site.kind == "check-name":
            node.value = REPLACED_NAME
        elif isinstance(node, ast.Attribute) and site.kind == "check-enum":
            node.attr = site.change.rsplit(".", 1)[1]
        elif isinstance(node, ast.Raise):
            return ast.copy_location(ast.Pass(), node)
        elif isinstance(node, ast.Return):
            node.value = None
        return node


def mutate(source: str, site: Site) -> str:
    """The module's source with exactly the change `site` names."""
    tree = ast.parse(source)
    target = next(node for index, node in enumerate(ast.walk(tree)) if index == site.node)
    mutated = _Apply(target, site).visit(tree)
    return ast.unparse(ast.fix_missing_locations(mutated))


# -- running the tests in a private copy -----------------------------------------------------------


_copy: Path | None = None


def _init_worker(scratch: str) -> None:
    """Each worker makes its own private copy, so two mutants never share a file."""
    global _copy
    _copy = make_copy(Path(tempfile.mkdtemp(prefix="worker-", dir=scratch)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C


def make_copy(into: Path) -> Path:
    """A private copy of the checkout, without bytecode caches (they could hide a mutant)."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"))
        elif source.exists():
            shutil.copy2(source, into / name)
    return into


def pytest_command(files: Sequence[str], deselect: Sequence[str], stop_first: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
               "-k", "not postgres", "-o", "addopts="]
    if stop_first:
        command.append("-x")
    else:
        command.append("-rf")
    for node in deselect:
        command += ["--deselect", node]
    return command


def run_tests(root: Path, command: list[str], timeout: float) -> tuple[str, float, str]:
    """Run pytest in `root`; ('passed' | 'failed' | 'timeout', seconds, output)."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1",
           "HYPOTHESIS_STORAGE_DIRECTORY": str(root / ".hypothesis")}
    env.pop("LEDGER_TEST_PG_URL", None)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the pytest run and any pool it started
        process.communicate()
        return "timeout", time.monotonic() - started, ""
    seconds = time.monotonic() - started
    return ("passed" if process.returncode == 0 else "failed"), seconds, out


def _run_mutant(task: tuple[Site, list[str], list[str], float]) -> Result:
    site, files, deselect, timeout = task
    assert _copy is not None
    path = _copy / "ledger" / f"{site.module}.py"
    original = path.read_text(encoding="utf-8")
    try:
        mutated = mutate(original, site)
        compile(mutated, str(path), "exec")
    except (SyntaxError, ValueError, TypeError):
        return Result(site, "invalid", 0.0)
    path.write_text(mutated, encoding="utf-8")
    try:
        status, seconds, _ = run_tests(_copy, pytest_command(files, deselect, True), timeout)
    finally:
        path.write_text(original, encoding="utf-8")
    outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
    return Result(site, outcome, seconds)


FAILED_LINE = re.compile(r"^FAILED (\S+)")


def check_isolated(root: Path) -> None:
    """The copy, not the working tree (installed in editable mode), must be what tests import."""
    status, _, out = run_tests(root, [sys.executable, "-c", "import ledger; print(ledger.__file__)"], 60)
    if status != "passed" or not Path(out.strip()).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"mutation: tests in {root} would import ledger from {out.strip()!r}")


def baseline(root: Path, files: list[str]) -> tuple[list[str], float]:
    """The tests that fail with no mutant at all (deselected later), and the run's time."""
    status, seconds, out = run_tests(root, pytest_command(files, [], False), 1800)
    if status == "timeout":
        raise SystemExit(f"mutation: the unmutated tests {files} did not finish in 30 minutes")
    failures = [m.group(1).split(" - ")[0] for m in map(FAILED_LINE.match, out.splitlines()) if m]
    if status == "failed" and not failures:
        raise SystemExit(f"mutation: the unmutated tests {files} fail to run:\n{out[-2000:]}")
    return failures, seconds


# -- the command -----------------------------------------------------------------------------------


def module_rng(seed: int, module: str) -> random.Random:
    """Each module's own random sample: the same mutants for a seed, whichever modules run with it."""
    return random.Random(f"{seed}:{module}")


def choose(sites: list[Site], sample: int, rng: random.Random) -> list[Site]:
    return sorted(rng.sample(sites, min(sample, len(sites))), key=lambda s: (s.line, s.node, s.variant))


def report_text(reports: list[ModuleReport], equivalent: dict[str, str] | None = None) -> Iterator[str]:
    """The table (score = killed / (killed + survived), equivalent mutants left out), then the
    survivors, the equivalent ones with their reasons, and any listing the tests contradict."""
    equivalent = equivalent or {}
    yield (f"{'module':<10} {'generated':>9} {'sample':>6} {'killed':>6} {'survived':>8} {'equiv':>5} "
           f"{'timeout':>7} {'invalid':>7} {'score':>6}")
    for r in reports:
        score = f"{r.score:.2f}" if r.score is not None else "-"
        yield (f"{r.module:<10} {r.generated:>9} {len(r.results):>6} {r.count('killed'):>6} "
               f"{r.count('survived'):>8} {r.count('equivalent'):>5} {r.count('timeout'):>7} "
               f"{r.count('invalid'):>7} {score:>6}")
    for r in reports:
        carried = sum(1 for x in r.results if x.carried)
        if carried:
            yield f"\n{r.module}: {carried} of the {len(r.results)} results carried over from the earlier run"
        if r.baseline_failures:
            yield f"\n{r.module}: deselected, failing without any mutant: {', '.join(r.baseline_failures)}"
        survivors = [x for x in r.results if x.outcome == "survived"]
        if survivors:
            yield f"\n{r.module}: surviving mutants ({len(survivors)} of a sample of {len(r.results)})"
            for x in survivors:
                yield f"  {x.site.key()}"
        same = [x for x in r.results if x.outcome == "equivalent"]
        if same:
            yield f"\n{r.module}: equivalent mutants, not scored ({len(same)})"
            for x in same:
                yield f"  {x.site.key()} -- {equivalent.get(x.site.key(), '')}"
        wrong = [x for x in r.results if x.outcome == "killed" and x.site.key() in equivalent]
        if wrong:
            yield f"\n{r.module}: listed as equivalent, yet killed (fix the listing)"
            for x in wrong:
                yield f"  {x.site.key()}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(TESTS), choices=list(TESTS),
                        help="modules of ledger/ to mutate (default: all of them)")
    parser.add_argument("--sample", type=int, default=100, help="mutants per module (random sample)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--workers", type=int, default=MAX_WORKERS, help=f"at most {MAX_WORKERS}")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 3 x the unmutated run + 30)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT,
                        help="mutants known to be equivalent, each with its reason (default: %(default)s)")
    parser.add_argument("--resume", type=Path, default=None, metavar="EARLIER.json",
                        help="carry over the kills (and listed equivalent survivors) of an earlier "
                             "--json run of the same sample; run the rest")
    args = parser.parse_args(argv)
    if args.sample < 1:
        parser.error("--sample must be at least 1")
    args.workers = max(1, min(args.workers, MAX_WORKERS))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    equivalent = read_equivalent(args.equivalent)
    previous = read_previous(args.resume, equivalent) if args.resume else {}
    with tempfile.TemporaryDirectory(prefix="ledger-mutation-") as scratch:
        unmutated = make_copy(Path(scratch) / "baseline")
        check_isolated(unmutated)
        reports: list[ModuleReport] = []
        tasks: list[tuple[Site, list[str], list[str], float]] = []
        for module in args.modules:
            report = ModuleReport(module, TESTS[module])
            source = (ROOT / "ledger" / f"{module}.py").read_text(encoding="utf-8")
            sites = sites_of(module, source)
            report.generated = len(sites)
            sample = choose(sites, args.sample, module_rng(args.seed, module))
            report.sample = len(sample)
            report.results += [previous[site] for site in sample if site in previous]
            to_run = [site for site in sample if site not in previous]
            reports.append(report)
            print(f"mutation: {module}: {len(sites)} mutants, a sample of {len(sample)}, "
                  f"{len(sample) - len(to_run)} carried over; running its tests unmutated ...",
                  file=sys.stderr, flush=True)
            if not to_run:
                continue
            report.baseline_failures, report.baseline_seconds = baseline(unmutated, report.tests)
            timeout = args.timeout or 3 * report.baseline_seconds + 30
            tasks += [(site, report.tests, report.baseline_failures, timeout) for site in to_run]
        by_module = {r.module: r for r in reports}
        print(f"mutation: {len(tasks)} mutants on {args.workers} worker(s) ...", file=sys.stderr, flush=True)
        pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init_worker,
                                                          initargs=(scratch,))
        try:
            for done, result in enumerate(pool.imap_unordered(_run_mutant, tasks), 1):
                if result.outcome == "survived" and result.site.key() in equivalent:
                    result.outcome = "equivalent"
                by_module[result.site.module].results.append(result)
                print(f"mutation: {done}/{len(tasks)} {result.site.module}:{result.site.line} "
                      f"{result.site.change[:60]}: {result.outcome} ({result.seconds:.1f}s)",
                      file=sys.stderr, flush=True)
        finally:
            pool.terminate()
            pool.join()
        for report in reports:
            report.results.sort(key=lambda r: (r.site.line, r.site.node, r.site.variant))
    if args.json:
        print(json.dumps([{**asdict(r), "score": r.score} for r in reports], indent=2))
    else:
        print("\n".join(report_text(reports, equivalent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
