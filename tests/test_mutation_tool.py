"""The mutation tool's operators make exactly the change they report (no mutant is run here).

`benchmarks.mutation` is run by hand, not in CI; these checks keep its
operators honest, since a mutant that silently changes nothing would count as
a survivor and one that changes two things would misreport where.
"""

from __future__ import annotations

import ast
import random

import pytest

from benchmarks.mutation import ROOT, TESTS, mutate, sites_of
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
