"""The service load benchmark runs at a tiny size and checks exactly-once delivery (nothing timed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import service_load


def test_service_load_runs_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert service_load.main(["--seconds", "1", "--writers", "2", "--followers", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exactly_once"] and result["records"] > 0 and result["followers"] == 3
    assert {f["name"] for f in result["figures"]} == {"delivery_p50", "delivery_p99", "appends"}
    assert all(f["ratio"] > 0 for f in result["figures"])
