"""Smoke test of `benchmarks.actors` at tiny sizes: it runs from the checkout and yields every
ratio (nothing here is timed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import actors


def test_the_actors_benchmark_yields_every_ratio(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actors, "BASELINE_SIGNATURES", 2048)
    assert actors.main(["--rollbacks", "3", "--reports", "3", "--decisions", "40", "--json"]) == 0
    figures = {f["name"]: f for f in json.loads(capsys.readouterr().out)["figures"]}
    assert set(figures) == set(actors.FIGURES)
    for figure in figures.values():
        assert figure["ratio"] > 0 and figure["ledger"] > 0 and figure["baseline"] > 0
