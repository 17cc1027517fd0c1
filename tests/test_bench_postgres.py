"""Smoke test of the PostgreSQL benchmark at a tiny size: it runs and yields every ratio (not timed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import postgres_vs_sqlite

NAMES = {"append-1", "append-2", "append-4", "verify", "follow-p50", "follow-p95"}


def test_postgres_vs_sqlite_yields_every_ratio_at_a_tiny_size(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_BENCH_PG_URL", pg_url)
    assert postgres_vs_sqlite.main(["--records", "4", "--follow-appends", "3", "--json"]) == 0
    figures = {f["name"]: f for f in json.loads(capsys.readouterr().out)["figures"]}
    assert set(figures) == NAMES
    for figure in figures.values():
        assert isinstance(figure["ratio"], float) and figure["ratio"] > 0
        assert figure["ledger"] > 0 and figure["baseline"] > 0
