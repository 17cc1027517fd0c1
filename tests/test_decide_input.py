"""Decisions through the gate at their edges, asserted on the records they write.

A decision's own inputs (who, why, the retry key, extra fields, a plan's or a
rollback request's minimums) are refused before anything is read or written:
one clear line, no record. Then what a decision records where the common paths
never look: the default drain timeout and worker counts of a plan, a refusal
naming the command it refused, the calls dropped since a move started, a
rollback's completion refused while another version's worker lives (naming at
most ten), and a refused rollback replayed by its idempotency key.
"""

from __future__ import annotations

import pytest

from ledger import commands as build
from ledger.decide import Complete, Deploy, Fail, Meta, Rollback, WorkerPlan
from ledger.errors import InputError
from ledger.gate import FleetService, Outcome
from ledger.model import MoveKind
from ledger.rollback import DEFAULT_DRAIN_TIMEOUT_S, RollbackRequest
from projections.runner import Projections
from tests.conftest import Env, run_cli, seed, submit

Cap = pytest.CaptureFixture[str]


def test_a_blank_actor_is_refused_before_anything_is_written(env: Env, capsys: Cap) -> None:
    result = run_cli(capsys, "deploy", "v1", "--actor", "  ", *env.args(), "--fleet", "prod")
    assert (result.code, result.err) == (2, "ledger: a decision needs --actor (who is doing this; "
                                             "it is recorded)\n")
    with env.open(writable=False) as lg:
        assert "prod" not in lg.fleets()


@pytest.mark.parametrize(("meta", "message"), [
    pytest.param(Meta("ci", reason=" "), "--reason must not be empty when given", id="blank-reason"),
    pytest.param(Meta("ci", idempotency_key=" "), "--idempotency-key must not be empty when given",
                 id="blank-idempotency-key"),
    pytest.param(Meta("ci", extra={"move_seq": 3}), "field 'move_seq' is computed by the ledger",
                 id="gate-field"),
    pytest.param(Meta("ci", extra={"version": "v9"}), "field 'version' is an argument of the command",
                 id="argument-field"),
    pytest.param(Meta("ci", extra={"version": "v9", "actor": "x"}), "^field 'actor' is an argument",
                 id="first-argument-field-named"),
    pytest.param(Meta("ci", extra={"rollback_id": "r", "check": "x"}), "^field 'check' is computed",
                 id="first-gate-field-named"),
])
def test_a_malformed_meta_is_refused(env: Env, meta: Meta, message: str) -> None:
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        with pytest.raises(InputError, match=message):
            FleetService(lg, views).submit("prod", Deploy("v1", meta))
        assert "prod" not in lg.fleets()


def test_a_driven_deploy_records_the_default_drain_timeout(env: Env) -> None:
    """A plan that names no drain timeout records the documented default (120 s), as `rollback` does."""
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        outcome = FleetService(lg, views).submit("prod", Deploy("v1", Meta("ci"), plan=WorkerPlan()))
        assert outcome.accepted
        record = next(lg.records("prod"))
    assert record["drain_timeout_s"] == DEFAULT_DRAIN_TIMEOUT_S == 120
    assert record["start_workers"] == ["v1-op1-1"]


def test_a_failure_without_a_reason_is_refused(env: Env) -> None:
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        gate = FleetService(lg, views)
        assert gate.submit("prod", Deploy("v1", Meta("ci"))).accepted
        with pytest.raises(InputError, match=r"^a failure needs --reason"):
            gate.submit("prod", Fail("v1", Meta("ci")))
        assert [r["event"] for r in lg.records("prod")] == ["deployment.started"]


def test_a_rollback_is_the_ledgers_own_unless_said_external(env: Env) -> None:
    """By default the ledger moves the workers (the plan names them); `external` is stated only when
    the platform does."""
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"), build.worker_start("w9", "v2", "platform"),
               build.complete("v2", "ci"))
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        request = RollbackRequest("prod", actor="on-call", reason="errors up")
        assert FleetService(lg, views).submit("prod", Rollback(request, Meta("on-call"))).accepted
        record = list(lg.records("prod"))[-1]
    assert record["event"] == "deployment.rolled_back"
    assert "external" not in record
    assert (record["start_workers"] and record["drain_workers"] == ["w0", "w1", "w9"]) or \
        record["drain_workers"] == ["w9"]


@pytest.mark.parametrize(("plan", "message"), [
    pytest.param(WorkerPlan(drain_timeout_s=0), "--drain-timeout must be at least 1 second, not 0",
                 id="timeout-0"),
    pytest.param(WorkerPlan(workers=0), "--workers must be at least 1, not 0", id="workers-0"),
])
def test_a_plan_below_its_minimum_is_refused(env: Env, plan: WorkerPlan, message: str) -> None:
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        with pytest.raises(InputError, match=f"^{message}$"):
            FleetService(lg, views).submit("prod", Deploy("v1", Meta("ci"), plan=plan))
        assert "prod" not in lg.fleets()
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        edge = WorkerPlan(workers=1, drain_timeout_s=1)
        assert FleetService(lg, views).submit("prod", Deploy("v1", Meta("ci"), plan=edge)).accepted


@pytest.mark.parametrize(("command", "named"), [
    pytest.param(Complete("v1", Meta("ci"), kind=MoveKind.ROLLBACK), "rollback.completed", id="rollback"),
    pytest.param(Complete("v1", Meta("ci")), "deployment.completed", id="either"),
    pytest.param(Fail("v1", Meta("ci", reason="stuck"), kind=MoveKind.ROLLBACK), "rollback.failed",
                 id="failed-rollback"),
])
def test_a_refused_settlement_names_the_command_it_refused(env: Env, command: Complete | Fail,
                                                           named: str) -> None:
    """Nothing in flight: the refusal is recorded, naming the event the command would have written."""
    with env.open() as lg:
        seed(lg)
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        outcome = FleetService(lg, views).submit("prod", command)
        assert not outcome.accepted
        record = list(lg.records("prod"))[-1]
    assert (record["event"], record["command"], record["version"]) == ("command.rejected", named, "v1")


def test_a_deploy_from_a_version_on_a_new_fleet_says_it_runs_nothing_yet(env: Env) -> None:
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        outcome = FleetService(lg, views).submit("prod", Deploy("v1", Meta("ci"), from_version="v0"))
    assert not outcome.accepted
    assert outcome.decision.detail == "the fleet runs nothing yet, not v0"


def test_a_driven_deploy_starts_as_many_workers_as_the_current_version_runs(env: Env) -> None:
    with env.open() as lg:
        seed(lg)  # w0 and w1 on v1
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        assert FleetService(lg, views).submit("prod", Deploy("v2", Meta("ci"), plan=WorkerPlan())).accepted
        record = list(lg.records("prod"))[-1]
    assert (record["start_workers"], record["drain_workers"]) == (["v2-op7-1", "v2-op7-2"], ["w0", "w1"])


def _roll_back_then_complete(env: Env) -> Outcome:
    """Roll prod back to v1 through the gate, then ask it to complete the rollback."""
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        gate = FleetService(lg, views)
        request = RollbackRequest("prod", actor="on-call", reason="errors up")
        assert gate.submit("prod", Rollback(request, Meta("on-call"))).accepted
        return gate.submit("prod", Complete("v1", Meta("on-call")))


def test_a_rollback_is_not_complete_while_a_worker_of_another_version_lives(env: Env) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"), build.worker_start("w9", "v2", "platform"),
               build.complete("v2", "ci"))
    outcome = _roll_back_then_complete(env)
    assert not outcome.accepted
    assert outcome.decision.detail.startswith("workers not on v1 alone: w9; ")


def test_a_completion_records_the_calls_dropped_since_its_move_started(env: Env) -> None:
    with env.open() as lg:
        seed(lg)  # w0 and w1 on v1
        submit(lg, "prod", build.deploy("v2", "ci"), build.worker_exit("w0", "v1", 2, "w0"),
               build.worker_exit("w1", "v1", 1, "w1"), build.complete("v2", "ci"))
        record = list(lg.records("prod"))[-1]
    assert (record["event"], record["dropped_calls"]) == ("deployment.completed", 3)


def test_a_refused_rollback_completion_names_at_most_ten_workers(env: Env) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"),
               *[build.worker_start(f"w{n}", "v2", "platform") for n in range(10, 21)],
               build.complete("v2", "ci"))
    outcome = _roll_back_then_complete(env)
    names = ", ".join(f"w{n}" for n in range(10, 20))
    assert outcome.decision.detail.startswith(f"workers not on v1 alone: {names}; ")


@pytest.mark.parametrize(("workers", "timeout", "refused"), [
    pytest.param(1, 1, None, id="the-minimums"),
    pytest.param(0, 1, "--workers must be at least 1, not 0", id="no-workers"),
    pytest.param(1, 0, "--drain-timeout must be at least 1 second, not 0", id="no-drain-time"),
])
def test_a_rollback_request_below_its_minimum_is_refused(env: Env, workers: int, timeout: int,
                                                         refused: str | None) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"), build.complete("v2", "ci"))
    request = RollbackRequest("prod", actor="on-call", reason="errors up", workers=workers,
                              drain_timeout_s=timeout)
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        gate = FleetService(lg, views)
        if refused is None:
            assert gate.submit("prod", Rollback(request, Meta("on-call"))).accepted
            record = list(lg.records("prod"))[-1]
            assert (record["start_workers"], record["drain_timeout_s"]) == (["v1-rb9-1"], 1)
        else:
            with pytest.raises(InputError, match=f"^{refused}$"):
                gate.submit("prod", Rollback(request, Meta("on-call")))


def test_a_refused_rollback_repeated_with_its_key_replays_the_refusal(env: Env) -> None:
    with env.open() as lg:
        seed(lg)  # v1 is the only good version: nothing to roll back to
    request = RollbackRequest("prod", actor="on-call", reason="errors up", idempotency_key="k1")
    with env.open() as lg, Projections(lg.store, notice=lambda _m: None) as views:
        gate = FleetService(lg, views)
        first = gate.submit("prod", Rollback(request, Meta("on-call", idempotency_key="k1")))
        again = gate.submit("prod", Rollback(request, Meta("on-call", idempotency_key="k1")))
        count = len(list(lg.records("prod")))
    assert not first.accepted and not again.accepted and again.replayed
    assert (again.decision.check, again.decision.detail) == (first.decision.check, first.decision.detail)
    assert count == 7  # the refusal recorded once
