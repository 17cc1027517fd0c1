"""The domain rules over plain records: good, last-good, statuses, rollouts, fleet state.

No I/O: records are plain dicts with the fields the ledger would give them.
The same tables run through a real ledger and the read models in
test_projections.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.model import Moment, Settlement, Stamp
from ledger.rules import (
    STATUSES,
    FleetHistory,
    MalformedRecordError,
    RecordOrderError,
    candidates,
    fleet_summary,
    fleet_view,
    fold,
    history,
    is_good,
    last_good,
    rollout_in_flight,
    status,
)
from tests.fleet_cases import (
    FLEET_CASES,
    LAST_GOOD_CASES,
    STATUS_CASES,
    A,
    Body,
    FleetCase,
    LastGoodCase,
    StatusCase,
    Step,
    complete,
    deploy,
    drain,
    random_steps,
    released,
    rollback,
    start,
)


def records(steps: Iterable[Step], fleet: str) -> list[dict[str, Any]]:
    """The steps of one fleet as sealed-looking records (seq, timestamp, hash, prev)."""
    result: list[dict[str, Any]] = []
    for chain, body in steps:
        if chain != fleet:
            continue
        seq = len(result) + 1
        result.append({**body, "fleet": chain, "seq": seq, "timestamp": f"2026-01-01T00:00:{seq:02d}.000000Z",
                       "prev": result[-1]["hash"] if result else "0" * 64, "hash": f"{seq:064x}"})
    return result


def folded(steps: Sequence[Step], fleet: str = A) -> FleetHistory:
    return fold(fleet, records(steps, fleet))


def all_leavings(state: FleetHistory) -> list[str | None]:
    return [None, *state.versions]


@pytest.mark.parametrize("case", LAST_GOOD_CASES, ids=[c.id for c in LAST_GOOD_CASES])
def test_last_good(case: LastGoodCase) -> None:
    state = folded(case.steps, case.fleet)
    leaving = state.current if case.for_rollback else case.leaving
    answer = last_good(state, leaving=leaving)
    assert (answer.version if answer else None) == case.expected
    if answer is not None:
        assert answer.leaving == leaving
        assert is_good(state, answer.version)
        if case.evidence_seq is not None:
            assert answer.evidence_seq == case.evidence_seq
        for name, value in case.extra.items():
            assert getattr(answer, name) == value
    for bad in case.never:
        assert not is_good(state, bad)
        for other in all_leavings(state):
            found = last_good(state, leaving=other)
            assert found is None or found.version != bad, f"{bad} is last-good leaving {other}"
    first = next((c for c in candidates(state, leaving) if c.skipped is None), None)
    assert (first.version if first else None) == case.expected


@pytest.mark.parametrize("case", STATUS_CASES, ids=[c.id for c in STATUS_CASES])
def test_status(case: StatusCase) -> None:
    state = folded(case.steps)
    assert {name: status(state, name) for name in case.statuses} == case.statuses
    assert state.current == case.current
    flight = rollout_in_flight(state)
    assert ((flight.kind.value, flight.version) if flight else None) == case.in_flight
    assert all(entry["status"] in STATUSES for entry in history(state))


@pytest.mark.parametrize("case", FLEET_CASES, ids=[c.id for c in FLEET_CASES])
def test_fleet_state(case: FleetCase) -> None:
    state = folded(case.steps)
    summary = fleet_summary(state)
    assert {k: summary[k] for k in case.summary} == case.summary
    view = fleet_view(state)
    workers = {w["worker_id"]: (w["version"], w["draining"], w["active_sessions"]) for w in view["workers"]}
    assert workers == case.workers
    assert tuple(w["worker_id"] for w in view["recent_exits"]) == case.exits
    for exit_ in view["recent_exits"]:
        assert exit_["exited"]["seq"] > 0 and exit_["exited"]["timestamp"]


def test_a_repeated_drain_of_one_worker_is_counted_once() -> None:
    steps = [*released("v1"), (A, start("w1", "v1")), (A, deploy("v2")), (A, drain("w1", "v1")),
             (A, drain("w1", "v1"))]
    state = folded(steps)
    assert state.versions["v1"].worker_drains == 1
    assert state.workers["w1"].drain_started == Moment(5, "2026-01-01T00:00:05.000000Z")


def test_rollback_records_its_evidence_on_both_versions() -> None:
    state = folded([*released("v1", "v2"), (A, rollback("v1", "v2"))])
    source, target = state.versions["v2"], state.versions["v1"]
    assert source.rolled_back_from == [Stamp(5, "2026-01-01T00:00:05.000000Z", "on-call",
                                             "elevated session errors", to_version="v1",
                                             outcome=Settlement.PENDING)]
    # the JSON the views store and print: the fields set, in this order
    assert list(source.rolled_back_from[0].to_dict().items()) == [
        ("seq", 5), ("timestamp", "2026-01-01T00:00:05.000000Z"), ("actor", "on-call"),
        ("reason", "elevated session errors"), ("to_version", "v1"), ("outcome", "pending")]
    assert target.rolled_back_to[0].from_version == "v2"
    assert source.bad is not None and source.bad.event == "deployment.rolled_back"


def test_a_stamp_with_a_field_it_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="Stamp needs"):
        Stamp.from_dict({"seq": 1, "timestamp": None, "actor": "a", "colour": "red"})
    with pytest.raises(ValueError, match="Stamp needs"):
        Stamp.from_dict({"timestamp": None, "actor": "a"})


def test_idempotency_keys_remember_the_first_record() -> None:
    body: Body = {**rollback("v1", "v2"), "idempotency_key": "k1"}
    state = folded([*released("v1", "v2"), (A, body), (A, body)])
    assert state.idempotency == {"k1": 5}


def test_records_apply_once_each_in_chain_order() -> None:
    one, two = records([*released("v1")], A)
    state = FleetHistory(A)
    with pytest.raises(RecordOrderError):
        state.apply(two)
    state.apply(one)
    with pytest.raises(RecordOrderError):
        state.apply(one)


def test_a_malformed_record_changes_nothing() -> None:
    state = folded(released("v1"))
    before = state.to_dict()
    broken = {"event": "deployment.started", "actor": "x", "target": "fleet", "result": "success",
              "seq": 3}
    with pytest.raises(MalformedRecordError, match="version"):
        state.apply(broken)
    assert state.to_dict() == before


def test_unknown_events_only_move_the_head() -> None:
    state = folded(released("v1"))
    state.apply({"event": "something.new", "seq": 3, "hash": "h3"})
    assert state.head_seq == 3 and state.head_hash == "h3" and last_good(state) is not None


def test_from_dict_refuses_a_malformed_state() -> None:
    with pytest.raises(ValueError, match="head_seq"):
        FleetHistory.from_dict({"fleet": A})


# -- properties over random histories ------------------------------------------------


def oracle_good(recs: Sequence[dict[str, Any]]) -> dict[str, tuple[bool, int]]:
    """Good-ness straight from the README's definition, by scanning the records (no state).

    version -> (good, seq of its latest completion).
    """
    completion: dict[str, int] = {}
    bad: dict[str, int] = {}
    clear: dict[str, int] = {}
    for r in recs:
        event, seq = r["event"], r["seq"]
        if event in ("deployment.completed", "rollback.completed"):
            completion[r["version"]] = seq
        elif event == "deployment.rolled_back":
            bad[r["from_version"]] = seq
        elif event == "version.marked_bad":
            bad[r["version"]] = seq
        elif event == "version.cleared":
            clear[r["version"]] = seq
    result = {}
    for version, seq in completion.items():
        cleared_after = clear.get(version, 0) > bad.get(version, 0)
        result[version] = (version not in bad or cleared_after, seq)
    return result


@settings(max_examples=300, deadline=None)
@given(random_steps(60))
def test_good_and_last_good_match_the_rules_read_straight_from_the_records(steps: list[Step]) -> None:
    recs = records(steps, A)
    state = fold(A, recs)
    oracle = oracle_good(recs)
    for name in state.versions:
        assert is_good(state, name) == oracle.get(name, (False, 0))[0], name
    for leaving in all_leavings(state):
        eligible = [(seq, v) for v, (good, seq) in oracle.items() if good and v != leaving]
        answer = last_good(state, leaving=leaving)
        assert (answer.version if answer else None) == (max(eligible)[1] if eligible else None)
    worker_only = {r["version"] for r in recs if r["event"].startswith("worker.")} - set(oracle)
    assert not any(is_good(state, v) for v in worker_only)


@settings(max_examples=200, deadline=None)
@given(random_steps(60), st.data())
def test_state_survives_json_round_trips_mid_history(steps: list[Step], data: st.DataObject) -> None:
    recs = records(steps, A)
    straight = fold(A, recs)
    cut = data.draw(st.integers(0, len(recs)))
    first = fold(A, recs[:cut])
    first.take_dirty()
    revived = FleetHistory.from_dict(orjson.loads(orjson.dumps(first.to_dict())))
    revived.apply_all(recs[cut:])
    assert orjson.dumps(revived.to_dict()) == orjson.dumps(straight.to_dict())  # byte for byte
    assert history(revived) == history(straight)
    assert fleet_view(revived) == fleet_view(straight)


@settings(max_examples=200, deadline=None)
@given(random_steps(60), st.data())
def test_dirty_versions_cover_every_changed_history_entry(steps: list[Step], data: st.DataObject) -> None:
    """A projection rewrites only dirty entries: every entry that changed must be dirty."""
    recs = records(steps, A)
    cut = data.draw(st.integers(0, len(recs)))
    state = fold(A, recs[:cut])
    state.take_dirty()
    before = {entry["version"]: entry for entry in history(state)}
    state.apply_all(recs[cut:])
    dirty = state.take_dirty()
    after = {entry["version"]: entry for entry in history(state)}
    changed = {name for name, entry in after.items() if before.get(name) != entry}
    assert changed <= dirty


def test_every_status_is_documented() -> None:
    assert set(STATUSES) == {"rolling_out", "live", "superseded", "rolled_back", "marked_bad",
                             "failed", "abandoned"}


def test_completion_of_v2_supersedes_v1() -> None:
    state = folded([*released("v1"), (A, deploy("v2")), (A, complete("v2"))])
    assert [status(state, v) for v in ("v1", "v2")] == ["superseded", "live"]
