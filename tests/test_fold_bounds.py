"""The bounds and edges of the fold that only long or unusual histories reach.

`ledger fleet` keeps the newest 1,000 exited workers, `ledger history` lists
the seqs of the newest 100 outside decisions the ledger did not act on (and
counts them all); a record the rules cannot read (a count below zero) is
refused like a missing field, and a stored state with a nameless version is
refused when read back. Each is asserted through what a user reads (the
CLI's `--json` answers) or the fold's own refusal.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ledger import commands as build
from ledger.rules import (
    RECENT_EXITS,
    UNACTED_LISTED,
    FleetHistory,
    MalformedRecordError,
    fleet_summary,
    fleet_view,
    fold,
    version_view,
)
from tests.conftest import Env, run_cli
from tests.fleet_cases import A, deploy, drain, released, rollback, rollback_done, sessions, start
from tests.test_rules import records

Cap = pytest.CaptureFixture[str]


def answer(capsys: Cap, env: Env, *argv: str) -> Any:
    result = run_cli(capsys, *argv, *env.args(), "--fleet", "prod", "--json")
    assert result.code == 0, result.err
    return orjson.loads(result.out)


def test_fleet_keeps_the_newest_exits_up_to_its_bound(env: Env, capsys: Cap) -> None:
    with env.open() as lg:
        lg.append_many("prod", [build.worker_exit(f"w{i}", "v1", 0, f"w{i}", exit_code=i % 3)
                                for i in range(RECENT_EXITS + 1)])
    exits = answer(capsys, env, "fleet")["recent_exits"]
    assert len(exits) == RECENT_EXITS == 1000
    assert exits[0]["worker_id"] == f"w{RECENT_EXITS}" and exits[-1]["worker_id"] == "w1"


def _unacted(n: int) -> dict[str, Any]:
    return {"event": "audit.external", "actor": "pool", "target": "fleet", "result": "success",
            "reason": "a decision from a source the ledger does not act on", "source": "openrtc",
            "source_digest": f"{n:064x}", "source_event": "deployment.rolled_back",
            "source_instance": "pool-1", "source_seq": n}


def test_history_lists_the_newest_outside_decisions_not_acted_on(env: Env, capsys: Cap) -> None:
    with env.open() as lg:
        lg.append_many("prod", [_unacted(n) for n in range(UNACTED_LISTED + 1)])
    listed = answer(capsys, env, "history")["outside_decisions_not_acted_on"]
    assert listed == {"count": 101, "seqs": list(range(2, UNACTED_LISTED + 2))}
    assert answer(capsys, env, "fleet")["summary"]["outside_decisions_not_acted_on"] == 101


def test_a_negative_count_is_refused_like_a_missing_one() -> None:
    record = {**build.worker_sessions("w1", "v1", 0, "w1"), "active_sessions": -1, "seq": 1,
              "fleet": "prod", "hash": "1" * 64}
    with pytest.raises(MalformedRecordError, match="active_sessions"):
        fold("prod", [record])


def test_a_stored_state_with_a_nameless_version_is_refused() -> None:
    state = fold("prod", [{**build.deploy("v1", "ci"), "seq": 1, "fleet": "prod", "hash": "1" * 64}])
    stored = state.to_dict()
    assert FleetHistory.from_dict(stored).to_dict() == stored
    for entry in stored["versions"]:
        del entry["version"]
    with pytest.raises(ValueError, match="'version' string"):
        FleetHistory.from_dict(stored)


def test_a_stored_state_from_before_the_counters_reads_them_as_zero() -> None:
    """A state stored before a counter existed lacks its field: it reads as none counted yet."""
    state = FleetHistory.from_dict({"fleet": "prod", "head_seq": 1,
                                    "versions": [{"version": "v1", "order": 0}]})
    view = version_view(state, "v1")
    assert {k: view[k] for k in ("starts", "completions", "worker_drains", "drains", "verdicts",
                                 "rolled_back_from", "rolled_back_to")} == \
        {"starts": 0, "completions": 0, "worker_drains": 0, "drains": [], "verdicts": [],
         "rolled_back_from": [], "rolled_back_to": []}
    summary = fleet_summary(state)
    assert {k: summary[k] for k in ("rollbacks_rejected", "commands_rejected", "workers_rejected",
                                    "dropped_sessions", "outside_decisions_not_acted_on")} == \
        dict.fromkeys(("rollbacks_rejected", "commands_rejected", "workers_rejected", "dropped_sessions",
                       "outside_decisions_not_acted_on"), 0)


def test_a_rollback_replaced_in_flight_by_another_settles_as_superseded() -> None:
    """A history the gate no longer writes (two rollbacks to one version, the second while the first
    is in flight) still gets each rollback's own outcome on both versions' entries."""
    steps = [*released("v1", "v2"), (A, rollback("v1", "v2")), (A, rollback("v1", "v2")),
             (A, rollback_done("v1", "v2"))]
    state = fold(A, records(steps, A))
    outcomes = [(e["seq"], e["outcome"]) for e in version_view(state, "v1")["rolled_back_to"]]
    assert outcomes == [(5, "superseded"), (6, "completed")]
    outcomes = [(e["seq"], e["outcome"]) for e in version_view(state, "v2")["rolled_back_from"]]
    assert outcomes == [(5, "superseded"), (6, "completed")]


def test_a_worker_reported_on_another_version_moves_to_it() -> None:
    """A worker's latest report names the version it runs now (a restart on a new build)."""
    steps = [*released("v1"), (A, start("w1", "v1")), (A, sessions("w1", "v2", 3))]
    view = fleet_view(fold(A, records(steps, A)))
    workers = [(w["worker_id"], w["version"], w["active_sessions"]) for w in view["workers"]]
    assert workers == [("w1", "v2", 3)]
    assert view["summary"]["versions"] == {"v2": 1}


def _superseded(move_seq: int) -> dict[str, Any]:
    return {"event": "move.superseded", "actor": "ci", "target": "fleet", "result": "success",
            "version": "v2", "move_seq": move_seq}


@pytest.mark.parametrize(("move_seq", "in_flight"), [
    pytest.param(3, None, id="the-move-in-flight"),
    pytest.param(1, "v2", id="another-move"),
])
def test_a_superseded_record_ends_only_the_move_it_names(move_seq: int, in_flight: str | None) -> None:
    """Read alone (no deploy after it), `move.superseded` ends the flight whose seq it names."""
    steps = [*released("v1"), (A, deploy("v2")), (A, _superseded(move_seq))]
    flight = fleet_view(fold(A, records(steps, A)))["summary"]["in_flight"]
    assert (flight["version"] if flight else None) == in_flight


@pytest.mark.parametrize("worker_id", ["", 7])
def test_a_drain_naming_no_worker_is_malformed(worker_id: object) -> None:
    steps = [*released("v1"), (A, start("w1", "v1")), (A, {**drain("w1", "v1"), "worker_id": worker_id})]
    with pytest.raises(MalformedRecordError, match="worker_id"):
        fold(A, records(steps, A))


def test_rejected_workers_are_counted_one_each() -> None:
    rejected = {"event": "worker.rejected", "actor": "pool", "target": "w9", "result": "rejected",
                "worker_id": "w9", "version": "v0"}
    steps = [*released("v1"), (A, rejected), (A, {**rejected, "worker_id": "w8"})]
    assert fleet_view(fold(A, records(steps, A)))["summary"]["workers_rejected"] == 2


@pytest.mark.parametrize("head_seq", [-1, "3", None])
def test_a_stored_state_needs_a_head_seq_of_zero_or_more(head_seq: object) -> None:
    FleetHistory.from_dict({"fleet": "prod", "head_seq": 0})
    with pytest.raises(ValueError, match="'head_seq'"):
        FleetHistory.from_dict({"fleet": "prod", "head_seq": head_seq})
