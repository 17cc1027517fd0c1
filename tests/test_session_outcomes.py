"""Session outcomes as facts: the schema, the simulated worker, the OpenRTC mapping, and the
per-version, per-window totals folded from cumulative counters."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from ledger import commands as build
from ledger.api import Ledger
from ledger.errors import RecordError
from ledger.openrtc.driver import outcome_fields
from ledger.openrtc.mapping import Source, SourceEvent, to_record
from ledger.sim.worker import Calls
from projections.sessions import SessionTotals
from tests.conftest import Env

T0 = 1_790_000_000


def stamp(seconds: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def report(seq: int, t: int, worker: str, version: str, ok: int, error: int = 0,
           dropped: int = 0, event: str = "worker.sessions") -> dict[str, Any]:
    body = build.worker_sessions(worker, version, 0, worker, ok=ok, error=error, dropped=dropped)
    body.update(event=event, seq=seq, timestamp=stamp(t))
    return body


def test_outcome_counters_are_optional_counts_in_the_schema() -> None:
    Ledger.validate(build.worker_sessions("w1", "v1", 2, "w1"))
    Ledger.validate(build.worker_sessions("w1", "v1", 2, "w1", ok=5, error=1, dropped=0))
    Ledger.validate(build.worker_exit("w1", "v1", 0, "w1", ok=5, error=1, dropped=2))
    with pytest.raises(RecordError, match="sessions_error"):
        Ledger.validate(build.worker_sessions("w1", "v1", 2, "w1", error=-1))


def test_deltas_of_cumulative_counters_per_version_and_window() -> None:
    totals = SessionTotals(bucket_s=1)
    totals.apply_all([
        report(1, T0, "a", "v1", ok=3),
        report(2, T0 + 1, "b", "v1", ok=2, error=1),
        report(3, T0 + 2, "a", "v1", ok=3),            # repeated: adds nothing
        report(4, T0 + 3, "a", "v1", ok=5, error=1),   # +2 ok, +1 error
        report(5, T0 + 4, "c", "v2", ok=1, error=4, dropped=1),
        report(6, T0 + 5, "b", "v1", ok=1, error=0),   # counters restarted: the new values count
        report(7, T0 + 6, "c", "v2", ok=1, error=4, dropped=2, event="worker.exited"),
    ])
    v1 = totals.totals["v1"]
    assert (v1.ok, v1.error, v1.dropped, v1.first_seq, v1.last_seq) == (8, 2, 0, 1, 6)
    v2 = totals.totals["v2"]
    assert (v2.ok, v2.error, v2.dropped, v2.first_seq, v2.last_seq) == (1, 4, 2, 5, 7)
    recent = totals.window("v1", 3)                   # buckets T0+3..T0+5
    assert (recent.ok, recent.error, recent.first_seq, recent.last_seq) == (3, 1, 4, 6)
    assert totals.window("v1", 2, end=T0 + 1).sessions == 6
    assert totals.window("v3", 60).sessions == 0


def test_old_buckets_are_dropped_so_memory_stays_bounded() -> None:
    totals = SessionTotals(bucket_s=1, keep_s=10)
    for i in range(1, 1000):
        totals.apply(report(i, T0 + i, "a", "v1", ok=i))
    assert len(totals._buckets["v1"]) <= 10
    assert totals.window("v1", 5).sessions == 5


def test_simulated_calls_count_outcomes_when_they_end() -> None:
    calls = Calls(random.Random(7), 1.0, 2.0, fail_rate=0.5)
    for i in range(200):
        calls.take(float(i))
    calls.hang_up(10_000.0)
    assert calls.ended_ok + calls.ended_error == 200
    assert calls.ended_error == calls.failed
    assert 60 < calls.ended_error < 140


def test_openrtc_outcomes_map_from_a_pool_and_from_an_apps_own_emit() -> None:
    snapshot = SimpleNamespace(active_sessions=1, sessions_ok=4, sessions_error=1, draining=False)
    assert outcome_fields(snapshot) == {"sessions_ok": 4, "sessions_error": 1}
    assert outcome_fields(SimpleNamespace(active_sessions=1)) == {}
    event = SourceEvent(seq=1, timestamp=T0, event_type="worker.sessions", actor="app",
                        target="pool-a", result="ok", version="v2",
                        fields={"worker_id": "pool-a", "active_sessions": 2, "sessions_ok": 7,
                                "sessions_error": 3, "sessions_dropped": 1}, digest="0" * 64)
    body = to_record(event, Source("pool-a", "host/1/x"))
    assert (body["sessions_ok"], body["sessions_error"], body["sessions_dropped"]) == (7, 3, 1)
    assert "source_fields" not in body
    Ledger.validate(body)


def test_reports_stored_and_folded_on_both_backends(env: Env) -> None:
    with env.open() as ledger:
        ledger.append("prod", build.worker_start("w1", "v1", "w1"))
        ledger.append("prod", build.worker_sessions("w1", "v1", 1, "w1", ok=4, error=1, dropped=0))
        ledger.append("prod", build.worker_exit("w1", "v1", 0, "w1", ok=6, error=1, dropped=1))
        totals = SessionTotals().apply_all(ledger.records("prod"))
    counts = totals.totals["v1"]
    assert (counts.ok, counts.error, counts.dropped, counts.first_seq, counts.last_seq) == (6, 1, 1, 2, 3)
