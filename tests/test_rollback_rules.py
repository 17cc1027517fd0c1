"""Rollback validation as a table: each check refuses with its own name."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import commands as build
from ledger.rollback import Refusal, RollbackPlan, RollbackRequest, plan_rollback
from ledger.rules import FleetHistory

Body = dict[str, Any]


def fold(bodies: list[Body]) -> FleetHistory:
    state = FleetHistory("prod")
    for seq, body in enumerate(bodies, 1):
        state.apply({**body, "seq": seq, "fleet": "prod", "hash": f"{seq:064x}",
                     "timestamp": f"2026-11-26T10:00:{seq % 60:02d}.000000Z"})
    return state


def rolled_back(to: str, source: str) -> Body:
    return {"event": "deployment.rolled_back", "actor": "on-call", "target": "fleet",
            "result": "success", "version": to, "from_version": source, "reason": "errors"}


def rollback_done(to: str, source: str) -> Body:
    return {"event": "rollback.completed", "actor": "driver", "target": "fleet",
            "result": "success", "version": to, "from_version": source}


V1_LIVE = [build.deploy("v1", "ci"), build.worker_start("w1", "v1", "p"), build.complete("v1", "ci")]
V2_LIVE = [*V1_LIVE, build.deploy("v2", "ci"), build.worker_start("w2", "v2", "p"),
           build.complete("v2", "ci")]
V2_ROLLING = [*V1_LIVE, build.deploy("v2", "ci"), build.worker_start("w2", "v2", "p")]

CASES: list[tuple[str, list[Body], dict[str, Any], str | None, str | None]] = [
    # id, history, request overrides, expected check (None = accepted), expected target
    ("default-target-is-last-good", V2_LIVE, {}, None, "v1"),
    ("rollback-of-an-in-flight-deploy", V2_ROLLING, {}, None, "v1"),
    ("explicit-target", V2_LIVE, {"to_version": "v1"}, None, "v1"),
    ("target-unknown", V2_LIVE, {"to_version": "v0"}, "target_unknown", None),
    ("target-never-completed", [*V2_LIVE, build.deploy("v3", "ci"), build.complete("v3", "ci"),
                                build.deploy("v4", "ci")],
     {"to_version": "v4"}, "target_not_good", None),
    ("target-is-current", V2_LIVE, {"to_version": "v2"}, "target_is_current", None),
    ("target-was-rolled-back-from", [*V2_LIVE, rolled_back("v1", "v2"), rollback_done("v1", "v2")],
     {"to_version": "v2"}, "target_not_good", None),
    ("forced-bad-target-is-allowed-and-recorded",
     [*V2_LIVE, rolled_back("v1", "v2"), rollback_done("v1", "v2")],
     {"to_version": "v2", "force_bad_target": True}, None, "v2"),
    ("from-version-mismatch", V2_LIVE, {"from_version": "v9"}, "from_version_mismatch", None),
    ("rollback-already-in-flight", [*V2_LIVE, rolled_back("v1", "v2")], {"to_version": "v1"},
     "target_is_current", None),
    ("other-rollout-in-flight", [*V2_LIVE, rolled_back("v1", "v2")], {"to_version": "v2",
                                                                       "force_bad_target": True},
     "rollout_in_flight", None),
    ("nothing-to-leave", [], {}, "no_current_version", None),
    ("no-good-version-to-return-to", V1_LIVE, {}, "no_last_good", None),
    ("marked-bad-target", [*V2_LIVE, build.verdict("version.marked_bad", "v1", "qa", "cve")],
     {"to_version": "v1"}, "target_not_good", None),
    ("cleared-target-is-good-again",
     [*V2_LIVE, build.verdict("version.marked_bad", "v1", "qa", "cve"),
      build.verdict("version.cleared", "v1", "qa", "patched")], {}, None, "v1"),
]


@pytest.mark.parametrize(("history", "overrides", "check", "target"),
                         [pytest.param(h, o, c, t, id=i) for i, h, o, c, t in CASES])
def test_rollback_checks(history: list[Body], overrides: dict[str, Any], check: str | None,
                         target: str | None) -> None:
    request = RollbackRequest(fleet="prod", actor="on-call", reason="errors", **overrides)
    decision = plan_rollback(fold(history), request)
    if check is None:
        assert isinstance(decision, RollbackPlan), decision
        assert decision.target == target
        assert decision.forced == bool(overrides.get("force_bad_target"))
        assert decision.record(request)["forced"] == decision.forced
    else:
        assert isinstance(decision, Refusal)
        assert decision.check == check


def test_the_plan_starts_target_workers_and_drains_every_other_version() -> None:
    state = fold([*V2_LIVE, build.worker_start("w3", "v2", "p")])
    plan = plan_rollback(state, RollbackRequest("prod", "on-call", "errors"))
    assert isinstance(plan, RollbackPlan)
    assert plan.drain_workers == ["w2", "w3"]  # w1 already runs the target, so it stays
    assert len(plan.start_workers) == 2 and all(w.startswith("v1-") for w in plan.start_workers)
    assert plan.from_version == "v2" and plan.head_seq == state.head_seq


@pytest.mark.parametrize(("field", "value", "message"), [
    ("actor", " ", "--actor"), ("reason", "", "--reason"), ("to_version", " ", "--to"),
    ("workers", 0, "--workers"), ("drain_timeout_s", 0, "--drain-timeout"),
])
def test_malformed_requests_are_refused_before_anything(field: str, value: Any, message: str) -> None:
    from ledger.errors import InputError

    request = RollbackRequest(**{"fleet": "prod", "actor": "a", "reason": "r", field: value})
    with pytest.raises(InputError, match=message):
        request.check_well_formed()
