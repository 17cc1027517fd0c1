"""The README's "Evidence for reviewers" walkthrough works as written, in an empty directory."""

from __future__ import annotations

from pathlib import Path

from tests.docs import ROOT, blocks, environment, run_block


def test_the_reviewers_walkthrough_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Evidence for reviewers")
    end = text.index("\n## ", start + 1)
    offset = text[:start].count("\n")
    section = [b for b in blocks(text) if offset < b.line <= offset + text[start:end].count("\n")]
    runnable = [b for b in section if b.runnable]
    assert len(runnable) == 2
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = environment(home)
    for block in runnable:
        run_block(block, work, env, "README.md")
    assert (work / "bundle" / "checkpoint").exists()
