"""Smoke tests of the benchmarks at tiny sizes: each runs from the checkout and yields every
ratio (nothing here is timed), and the product never depends on them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import append_verify, common, openrtc_sink, read_models

ROOT = Path(__file__).resolve().parent.parent


def figures_of(out: str) -> dict[str, dict[str, Any]]:
    return {figure["name"]: figure for figure in json.loads(out)["figures"]}


def assert_ratios(figures: dict[str, dict[str, Any]]) -> None:
    for figure in figures.values():
        assert isinstance(figure["ratio"], float) and figure["ratio"] > 0, figure
        assert figure["ledger"] > 0 and figure["baseline"] > 0, figure
        assert isinstance(figure["met"], bool)


def test_append_verify_runs_every_figure_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = append_verify.main(["--records", "6", "--batch-records", "30", "--verify-records", "50",
                               "--memory-records", "50", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    figures = figures_of(captured.out)
    assert set(figures) == set(append_verify.FIGURES)
    assert_ratios(figures)
    for name in append_verify.FIGURES:  # a progress line when each phase starts and ends
        assert f"measuring {name} ..." in captured.err
        assert f"{name}: ratio " in captured.err


def test_read_models_yields_every_ratio_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = read_models.main(["--records", "400", "--small", "100", "--queries", "5", "--json"])
    assert code == 0
    figures = figures_of(capsys.readouterr().out)
    assert set(figures) == {"rebuild", "last-good", "fleet", "state", "rollback-dry-run", "gated-command"}
    assert_ratios(figures)


@pytest.mark.openrtc
def test_openrtc_sink_yields_every_ratio_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = openrtc_sink.main(["--emits", "20", "--rounds", "1", "--flush-records", "20", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    figures = figures_of(json.dumps(result))
    assert set(figures) == {"emit", "flush"}
    assert_ratios(figures)
    assert result["emit"]["in_ledger"] == result["emit"]["emitted"] == 20
    assert result["flush"]["in_ledger"] == 20


def test_a_benchmark_runs_as_one_command_from_the_checkout(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.append_verify", "--only", "append",
                           "--records", "6", "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert set(figures_of(done.stdout)) == {"append"}
    assert "append_verify: [" in done.stderr


def test_sizes_come_from_full_or_quick_and_explicit_ones_win() -> None:
    parser = append_verify.build_parser()
    quick = parser.parse_args(["--records", "7"])
    common.resolve_sizes(parser, quick, append_verify.QUICK, append_verify.FULL)
    assert quick.records == 7
    assert quick.memory_records == append_verify.QUICK["memory_records"]
    full = parser.parse_args(["--full", "--verify-records", "9"])
    common.resolve_sizes(parser, full, append_verify.QUICK, append_verify.FULL)
    assert full.verify_records == 9
    assert full.memory_records == append_verify.FULL["memory_records"] == 1_000_000
    with pytest.raises(SystemExit):
        common.resolve_sizes(parser, parser.parse_args(["--records", "0"]),
                             append_verify.QUICK, append_verify.FULL)


def test_the_table_names_each_figure() -> None:
    figures = [common.Figure("append", "append, 1 record/transaction", 2.0, 4.0, "rec/s", 0.5,
                             ">= 0.8", False, "a note")]
    text = common.table(figures)
    assert "0.50" in text and "MISSED" in text and "a note" in text


def test_the_product_never_imports_the_benchmarks() -> None:
    offenders = []
    for package in ("ledger", "projections"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                              if n == "benchmarks" or n.startswith("benchmarks.")]
    assert offenders == []


def test_evidence_yields_every_ratio_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import evidence

    code = evidence.main(["--records", "60", "--small", "30", "--queries", "5", "--json"])
    assert code == 0
    figures = figures_of(capsys.readouterr().out)
    assert set(figures) == set(evidence.FIGURES) == {"verify", "verify-all", "prove", "export", "memory"}
    assert_ratios(figures)
