"""The mutation tool's operators make exactly the change they report (no mutant is run here).

`benchmarks.mutation` is run by hand, not in CI; these checks keep its
operators honest, since a mutant that silently changes nothing would count as
a survivor and one that changes two things would misreport where.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks.mutation import (
    ROOT,
    TESTS,
    ModuleReport,
    Result,
    Site,
    choose,
    module_rng,
    mutate,
    read_equivalent,
    read_previous,
    report_text,
    sites_of,
)
from ledger.events import Check

#: The check a `Check.NOT_BAD` mutant names instead: the next one in the enum's order.
NEXT_CHECK = list(Check)[(list(Check).index(Check.NOT_BAD) + 1) % len(Check)].name

SOURCE = '''
"""Docstring: 1 == 2 is never mutated."""
def f(seq: int, check: str) -> int:
    if seq >= 3 and check in ("a", "b"):
        raise ValueError("no")
    self.fault(seq, "prev", "detail")
    refusal(command, Check.NOT_BAD, "x")
    return seq + 1 if True else None
'''


def changes() -> dict[str, str]:
    return {site.change: ast.unparse(ast.parse(mutate(SOURCE, site))) for site in sites_of("m", SOURCE)}


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(">= -> <", "if seq < 3 and check in ('a', 'b'):", id="compare-negated"),
    pytest.param(">= -> >", "if seq > 3 and check in ('a', 'b'):", id="compare-boundary"),
    pytest.param("in -> not in", "if seq >= 3 and check not in ('a', 'b'):", id="membership"),
    pytest.param("and -> or", "if seq >= 3 or check in ('a', 'b'):", id="boolop"),
    pytest.param("3 -> 4", "if seq >= 4 and check in ('a', 'b'):", id="int-plus-one"),
    pytest.param("1 -> 0", "return seq + 0 if True else None", id="int-minus-one"),
    pytest.param("True -> False", "return seq + 1 if False else None", id="bool"),
    pytest.param("'prev' -> 'mutated-check'", "self.fault(seq, 'mutated-check', 'detail')", id="check-name"),
    pytest.param(f"Check.NOT_BAD -> Check.{NEXT_CHECK}",
                 f"refusal(command, Check.{NEXT_CHECK}, 'x')", id="check-enum"),
    pytest.param("`return seq + 1 if True else None` -> `return None`",
                 "refusal(command, Check.NOT_BAD, 'x')\n    return", id="return"),
])
def test_each_operator_makes_the_change_it_names(change: str, expected: str) -> None:
    mutants = changes()
    assert change in mutants, sorted(mutants)
    assert expected in mutants[change]


def test_docstrings_annotations_and_detail_strings_are_left_alone() -> None:
    mutants = changes()
    assert "== -> !=" not in mutants  # the only `==` is in the docstring
    assert not any(c.startswith(("'detail'", "'no'", "'x'", "'a'")) for c in mutants)  # not check names
    assert not any("int" in c or "str" in c for c in mutants)  # annotations
    assert "`raise ValueError('no')` dropped" in mutants
    assert "raise" not in mutants["`raise ValueError('no')` dropped"]


@pytest.mark.parametrize("module", sorted(TESTS))
def test_every_mutant_of_the_core_compiles_and_differs(module: str) -> None:
    source = (ROOT / "ledger" / f"{module}.py").read_text(encoding="utf-8")
    original = ast.unparse(ast.parse(source))
    sites = sites_of(module, source)
    assert sites
    for site in random.Random(module).sample(sites, min(60, len(sites))):  # a fixed sample: CI time
        mutated = mutate(source, site)
        compile(mutated, module, "exec")
        assert mutated != original, site
    for path in TESTS[module]:
        assert (ROOT / path).is_file(), path


def test_a_modules_sample_does_not_depend_on_the_other_modules_run() -> None:
    """`--modules verify` and `--modules chain verify` with one seed run the same verify mutants."""
    source = (ROOT / "ledger" / "verify.py").read_text(encoding="utf-8")
    sites = sites_of("verify", source)
    alone = choose(sites, 20, module_rng(7, "verify"))
    module_rng(7, "chain").random()  # another module drawn first changes nothing
    assert choose(sites, 20, module_rng(7, "verify")) == alone
    assert choose(sites, 20, module_rng(8, "verify")) != alone


def _result(site: Site, outcome: str) -> Result:
    return Result(site, outcome, 1.0)


def test_equivalent_mutants_are_listed_with_their_reason_and_left_out_of_the_score(tmp_path: Path) -> None:
    sites = sites_of("m", SOURCE)
    listing = tmp_path / "equivalent.txt"
    listing.write_text(f"# comment\n\n{sites[0].key()} -- the value is never read\n", encoding="utf-8")
    equivalent = read_equivalent(listing)
    assert equivalent == {sites[0].key(): "the value is never read"}
    report = ModuleReport("m", [], generated=len(sites), sample=4, results=[
        _result(sites[0], "equivalent"), _result(sites[1], "killed"), _result(sites[2], "killed"),
        _result(sites[3], "survived")])
    assert report.score == 2 / 3
    text = "\n".join(report_text([report], equivalent))
    header, row = text.splitlines()[:2]
    assert header.split() == ["module", "generated", "sample", "killed", "survived", "equiv", "timeout",
                              "invalid", "score"]
    assert row.split() == ["m", str(len(sites)), "4", "2", "1", "1", "0", "0", "0.67"]
    assert f"  {sites[0].key()} -- the value is never read" in text
    assert f"  {sites[3].key()}" in text


def test_a_listing_without_a_reason_is_refused(tmp_path: Path) -> None:
    listing = tmp_path / "equivalent.txt"
    listing.write_text("ledger/m.py:3: compare: >= -> <\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"equivalent\.txt:1"):
        read_equivalent(listing)


def test_resume_carries_over_only_kills_of_the_very_same_site(tmp_path: Path) -> None:
    sites = sites_of("m", SOURCE)
    earlier = ModuleReport("m", [], results=[_result(sites[0], "killed"), _result(sites[1], "survived"),
                                             _result(sites[2], "survived"), _result(sites[3], "timeout")])
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps([asdict(earlier)]), encoding="utf-8")
    carried = read_previous(path, {sites[2].key(): "the reason"})
    assert list(carried) == [sites[0], sites[2]]  # the kill and the listed equivalent survivor
    assert [(r.outcome, r.carried) for r in carried.values()] == [("killed", True), ("equivalent", True)]
    moved = Site(**{**asdict(sites[0]), "line": sites[0].line + 1})  # the module was edited since
    assert moved not in carried
