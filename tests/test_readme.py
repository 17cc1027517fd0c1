"""The README is a contract: every example in it runs as written, in order, in a fresh directory.

`tests.docs` runs the blocks the way a new user types them; a block that cannot
run in CI says why in the README itself. The second test breaks an example on
purpose, to show this test would notice.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs import ROOT, ExampleFailed, blocks, output_matches, run_document

README = ROOT / "README.md"


@pytest.mark.openrtc  # the OpenRTC section's examples run an AgentPool
def test_every_readme_example_runs_as_written(tmp_path: Path) -> None:
    ran = run_document(README, tmp_path)
    runnable = [b for b in blocks(README.read_text(encoding="utf-8")) if b.runnable]
    assert ran == len(runnable) >= 8


@pytest.mark.parametrize(("broken", "replacement"), [
    pytest.param("$ ledger last-good --fleet prod\nv1\n", "$ ledger last-good --fleet prod\nv9\n",
                 id="shown-output-wrong"),
    pytest.param("$ ledger deploy v4 --actor ci --fleet prod          # exit 1",
                 "$ ledger deploy v4 --actor ci --fleet prod", id="exit-code-wrong"),
    pytest.param("from projections import Projections\n", "from projections import Projectionz\n",
                 id="python-block-broken"),
])
def test_a_broken_example_fails_the_docs_test(tmp_path: Path, broken: str, replacement: str) -> None:
    """The run stops at the broken example and names its line, not at any other failure (in the
    base install, a block needing an extra would fail too: that must not pass for this)."""
    text = README.read_text(encoding="utf-8")
    assert broken in text, "the example this test breaks is gone from the README"
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(broken, replacement, 1), encoding="utf-8")
    with pytest.raises(ExampleFailed, match=rf"^README\.md line {failing_line(text, broken)}:"):
        run_document(copy, tmp_path / "run")


def failing_line(text: str, broken: str) -> int:
    """The line a failure of the example holding `broken` names: a console or sh command's own
    line, a python block's opening fence (the block runs as one program)."""
    line = text[:text.index(broken)].count("\n") + 1
    block = next(b for b in blocks(text) if b.line < line <= b.line + b.text.count("\n"))
    return block.line if block.language == "python" else line


@pytest.mark.parametrize(("expected", "actual", "matches"), [
    pytest.param(["a …"], ["a b c"], True, id="wildcard-in-line"),
    pytest.param(["a", "…"], ["a", "b", "c"], True, id="lone-wildcard-any-lines"),
    pytest.param(["…", "c"], ["a", "b", "c"], True, id="lone-wildcard-then-line"),
    pytest.param(["a"], ["a", "b"], False, id="extra-line"),
    pytest.param(["a", "b"], ["a"], False, id="missing-line"),
    pytest.param(["x …"], ["a b"], False, id="wrong-prefix"),
])
def test_output_matching(expected: list[str], actual: list[str], matches: bool) -> None:
    assert output_matches(expected, actual) is matches


def test_the_layout_section_names_every_module() -> None:
    """The README's layout is the map a newcomer reads first: it must not miss a module
    (named as a word: `views` inside `sqlite_views` does not count), a benchmark or a script."""
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    modules = [p for package in ("ledger", "ledger/sim", "ledger/openrtc", "ledger/service", "projections",
                                 "benchmarks")
               for p in (ROOT / package).glob("*.py") if p.stem != "__init__"]
    scripts = [p for p in (ROOT / "scripts").iterdir() if p.is_file()]
    names = {p: p.stem if p.suffix == ".py" else p.name for p in [*modules, *scripts]}
    missing = sorted(str(p.relative_to(ROOT)) for p, name in names.items()
                     if not re.search(rf"(?<![\w-]){re.escape(name)}(?!\w)", layout))
    assert not missing, f"README's layout section does not name: {missing}"


def test_a_command_shown_in_a_block_that_is_not_run_says_why() -> None:
    """Commands hidden in a `text` block would escape the docs test: such a block must say why."""
    silent = [b.line for b in blocks(README.read_text(encoding="utf-8"))
              if b.language not in ("console", "sh", "python") and not b.skipped
              and b.text.lstrip().startswith(("$ ", "ledger ", "curl "))]
    assert not silent, f"README blocks at lines {silent} show commands but are neither run nor explained"
