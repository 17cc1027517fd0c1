"""Smoke test of the benchmark at a tiny size: it runs and yields every ratio (not timed)."""

from __future__ import annotations

import json

import pytest

from ledger import bench


def test_bench_runs_every_figure_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--records", "6", "--batch-records", "30", "--verify-records", "50",
                       "--memory-records", "50", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    figures = {figure["name"]: figure for figure in result["figures"]}
    assert set(figures) == set(bench.FIGURES)
    for figure in figures.values():
        assert isinstance(figure["ratio"], float) and figure["ratio"] > 0
        assert figure["ledger"] > 0 and figure["baseline"] > 0
        assert isinstance(figure["met"], bool)


def test_bench_table_names_each_figure() -> None:
    figures = [bench.Figure("append", "append, 1 record/transaction", 2.0, 4.0, "rec/s", 0.5,
                            ">= 0.8", False, "a note")]
    text = bench.table(figures)
    assert "0.50" in text and "MISSED" in text and "a note" in text
