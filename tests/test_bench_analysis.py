"""Smoke test of `benchmarks.analysis` at tiny sizes: every figure comes out as a ratio (nothing
here is timed)."""

from __future__ import annotations

import pytest

from benchmarks import analysis
from tests.test_bench import assert_ratios, figures_of


def test_analysis_benchmark_runs_every_figure_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = analysis.main(["--small", "200", "--large", "400", "--sample", "100", "--rounds", "2", "--json"])
    assert code == 0
    figures = figures_of(capsys.readouterr().out)
    assert set(figures) == {"evaluate", "latency"}
    assert_ratios(figures)
