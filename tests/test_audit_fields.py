"""The audit fields an auditor reads, each asserted with its exact value.

Mutation testing of the rules found fields that no test looked at: a
rollback's outcome on both versions' entries (only "pending" was ever
asserted), the count of refused rollbacks in `ledger fleet`, the record that
makes a version good, start and completion counts, fleet-wide drains, the
`version.cleared` verdict, exited workers' exit codes, and the `version`,
`from_version` and evidence fields of `deployment.rolled_back` and
`rollback.rejected` records. Every history here is written through the real
gate (`submit`, and the CLI's decision commands) and read back through the
CLI's `--json` answers, on both backends.

Layout of `two_versions` (seqs are exact, so every expected value is too):
1 deploy v1, 2-5 workers w0 (1 call) and w1 (2 calls) on v1, 6 complete v1,
7 deploy v2, 8 worker w2 on v2, 9 complete v2.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ledger import commands as build
from tests.conftest import CliResult, Env, run_cli, seed, submit

Cap = pytest.CaptureFixture[str]
CHAIN_FIELDS = frozenset({"seq", "prev", "hash", "kid", "sig", "fleet", "timestamp"})
ROLLBACK = ("rollback", "--no-drive", "--actor", "on-call", "--reason", "errors up")


def cli(capsys: Cap, env: Env, *argv: str, code: int = 0) -> CliResult:
    result = run_cli(capsys, *argv, *env.args(), "--fleet", "prod")
    assert result.code == code, (argv, result.out, result.err)
    return result


def answer(capsys: Cap, env: Env, *argv: str) -> Any:
    return orjson.loads(cli(capsys, env, *argv, "--json").out)


def versions(capsys: Cap, env: Env) -> dict[str, dict[str, Any]]:
    return {v["version"]: v for v in answer(capsys, env, "history")["versions"]}


def record(env: Env, seq: int) -> dict[str, Any]:
    with env.open(writable=False) as lg:
        found = next(lg.records("prod", after=seq - 1))
    assert found["seq"] == seq
    return dict(found)


def last_seq(env: Env) -> int:
    with env.open(writable=False) as lg:
        return sum(1 for _ in lg.records("prod"))


def body(found: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in found.items() if k not in CHAIN_FIELDS}


def stamp(env: Env, seq: int, **extra: Any) -> dict[str, Any]:
    """The evidence the rules keep of record `seq`: seq, timestamp, actor, reason, extras."""
    found = record(env, seq)
    kept = {"seq": seq, "timestamp": found["timestamp"], "actor": found["actor"]}
    if "reason" in found:
        kept["reason"] = found["reason"]
    kept.update(extra)
    return kept


def two_versions(env: Env, v2_workers: int = 1) -> None:
    with env.open() as lg:
        seed(lg)
        workers = [build.worker_start(f"w{2 + i}", "v2", "platform") for i in range(v2_workers)]
        submit(lg, "prod", build.deploy("v2", "ci"), *workers, build.complete("v2", "ci"))


def facts(env: Env, *bodies: dict[str, Any]) -> None:
    with env.open() as lg:
        submit(lg, "prod", *bodies)


# -- a rollback's outcome on both versions' entries ----------------------------------------------


def _complete(capsys: Cap, env: Env) -> int:
    facts(env, build.worker_exit("w2", "v2", 0, "w2", exit_code=0))  # 11: the fleet is now clean
    cli(capsys, env, "complete", "v1", "--actor", "on-call")  # 12
    return 12


def _fail(capsys: Cap, env: Env) -> int:
    cli(capsys, env, "fail", "v1", "--actor", "on-call", "--reason", "drain stuck")  # 11
    return 11


def _supersede(capsys: Cap, env: Env) -> None:
    cli(capsys, env, "deploy", "v3", "--supersede", "--actor", "ci")  # 11 move.superseded, 12 v3


OUTCOMES = [
    pytest.param(_complete, "completed", "rollback.completed", id="completed"),
    pytest.param(_fail, "failed", "rollback.failed", id="failed"),
    pytest.param(_supersede, "superseded", "move.superseded", id="superseded"),
]


def _rollback_entries(env: Env, outcome: str,
                      settled_at: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    common = {"outcome": outcome, "rollback_id": "rb10", "forced": False, "good_evidence_seq": 6}
    if settled_at is not None:
        common.update(outcome_seq=settled_at, outcome_timestamp=record(env, settled_at)["timestamp"])
    return (stamp(env, 10, from_version="v2", **common), stamp(env, 10, to_version="v1", **common))


@pytest.mark.parametrize(("end", "outcome", "event"), OUTCOMES)
def test_a_rollback_outcome_is_written_on_both_versions(env: Env, capsys: Cap, end: Any, outcome: str,
                                                        event: str) -> None:
    """Pending while in flight; then completed, failed or superseded, with the settling record."""
    two_versions(env)
    cli(capsys, env, *ROLLBACK)  # seq 10
    before = versions(capsys, env)
    to_v1, from_v2 = _rollback_entries(env, "pending", None)
    assert before["v1"]["rolled_back_to"] == [to_v1]
    assert before["v2"]["rolled_back_from"] == [from_v2]
    settled_at = end(capsys, env)
    after = versions(capsys, env)
    # Superseding settles the rollback without naming a settling record (`move.superseded`
    # ends the move, but the outcome keeps no outcome_seq): only completed and failed carry one.
    to_v1, from_v2 = _rollback_entries(env, outcome, settled_at)
    assert after["v1"]["rolled_back_to"] == [to_v1]
    assert after["v2"]["rolled_back_from"] == [from_v2]
    assert record(env, 11 if outcome != "completed" else 12)["event"] == event


def test_a_completed_rollback_counts_as_a_completion_of_its_target(env: Env, capsys: Cap) -> None:
    """`rollback.completed` is v1's second completion and its new evidence; v2 stays bad."""
    two_versions(env)
    cli(capsys, env, *ROLLBACK)
    _complete(capsys, env)
    v1, v2 = (versions(capsys, env)[v] for v in ("v1", "v2"))
    assert (v1["starts"], v1["completions"], v1["status"], v1["good"], v1["good_evidence_seq"]) == (
        1, 2, "live", True, 12)
    assert v1["completed"] == stamp(env, 12, event="rollback.completed")
    assert (v2["starts"], v2["completions"], v2["status"], v2["good"], v2["good_evidence_seq"]) == (
        1, 1, "rolled_back", False, None)
    assert v2["bad"] == stamp(env, 10, event="deployment.rolled_back")
    completed = body(record(env, 12))
    assert completed == {"event": "rollback.completed", "actor": "on-call", "target": "fleet",
                         "result": "success", "version": "v1", "from_version": "v2", "move_seq": 10,
                         "rollback_id": "rb10", "dropped_calls": 0, "live_workers": 2}


def test_a_failed_rollback_leaves_the_fleet_on_the_version_it_was_leaving(env: Env, capsys: Cap) -> None:
    """After `rollback.failed` v2 is current again (and still bad), and nothing is in flight."""
    two_versions(env)
    cli(capsys, env, *ROLLBACK)
    _fail(capsys, env)
    history = answer(capsys, env, "history")
    assert (history["current"], history["in_flight"]) == ("v2", None)
    assert body(record(env, 11)) == {"event": "rollback.failed", "actor": "on-call", "target": "fleet",
                                     "result": "failure", "version": "v1", "from_version": "v2",
                                     "move_seq": 10, "rollback_id": "rb10", "reason": "drain stuck"}


# -- the deployment.rolled_back record and its evidence -------------------------------------------


def test_the_rollback_record_names_both_versions_and_the_evidence(env: Env, capsys: Cap) -> None:
    """`version` is the target, `from_version` the version left, `good_evidence_seq` what made it good."""
    two_versions(env)
    cli(capsys, env, *ROLLBACK)
    assert body(record(env, 10)) == {
        "event": "deployment.rolled_back", "actor": "on-call", "target": "fleet", "result": "success",
        "version": "v1", "from_version": "v2", "reason": "errors up", "rollback_id": "rb10",
        "forced": False, "start_workers": ["v1-rb10-1"], "drain_workers": ["w2"], "drain_timeout_s": 120,
        "good_evidence_seq": 6}


def test_a_forced_rollback_to_a_bad_version_records_no_evidence(env: Env, capsys: Cap) -> None:
    """A target that is not good has no record making it good: `forced` true, no evidence seq."""
    two_versions(env)
    cli(capsys, env, "mark", "bad", "v1", "--actor", "qa", "--reason", "leaks")  # 10
    cli(capsys, env, *ROLLBACK, "--to", "v1", "--force-bad-target")  # 11
    assert body(record(env, 11)) == {
        "event": "deployment.rolled_back", "actor": "on-call", "target": "fleet", "result": "success",
        "version": "v1", "from_version": "v2", "reason": "errors up", "rollback_id": "rb11",
        "forced": True, "start_workers": ["v1-rb11-1"], "drain_workers": ["w2"], "drain_timeout_s": 120}


@pytest.mark.parametrize(("argv", "started"), [
    pytest.param((), ["v1-rb9-1"], id="default-one-worker"),
    pytest.param(("--workers", "3"), ["v1-rb9-1", "v1-rb9-2", "v1-rb9-3"], id="workers-3"),
])
def test_a_rollback_with_no_live_worker_on_the_current_version_starts_workers(
        env: Env, capsys: Cap, argv: tuple[str, ...], started: list[str]) -> None:
    """v2 completed with no worker of its own: the plan still starts at least one v1 worker."""
    two_versions(env, v2_workers=0)  # 1-6 as usual, 7 deploy v2, 8 complete v2
    result = cli(capsys, env, *ROLLBACK, *argv)  # 9
    found = record(env, 9)
    assert (found["start_workers"], found["drain_workers"]) == (started, [])
    assert f"start workers: {', '.join(started)}" in result.out
    assert "drain workers: (none live)" in result.out


# -- rollback.rejected: the check, the detail, and the versions the request named --------------------


def _mark_v1_bad(capsys: Cap, env: Env) -> None:
    cli(capsys, env, "mark", "bad", "v1", "--actor", "qa", "--reason", "leaks")  # 10


REFUSED = [
    pytest.param(None, ("--to", "v9"), "target_unknown", "version v9 never appears in fleet prod",
                 {"version": "v9"}, id="target-unknown"),
    pytest.param(None, ("--to", "v2"), "target_is_current", "the fleet already runs v2",
                 {"version": "v2"}, id="target-is-current"),
    pytest.param(None, ("--from-version", "v3"), "from_version_mismatch", "the fleet runs v2, not v3",
                 {"from_version": "v3"}, id="from-version-mismatch-default-target"),
    pytest.param(None, ("--to", "v1", "--from-version", "v1"), "from_version_mismatch",
                 "the fleet runs v2, not v1", {"version": "v1", "from_version": "v1"},
                 id="from-version-mismatch-named-target"),
    pytest.param(_mark_v1_bad, ("--to", "v1"), "target_not_good",
                 "v1 is not good: marked bad at seq 10, not cleared", {"version": "v1"},
                 id="target-not-good"),
    pytest.param(_mark_v1_bad, (), "no_last_good", "no good version other than v2 to return to", {},
                 id="no-last-good"),
]


@pytest.mark.parametrize(("before", "argv", "check", "detail", "named"), REFUSED)
def test_a_refused_rollback_records_its_check_and_the_versions_it_named(
        env: Env, capsys: Cap, before: Any, argv: tuple[str, ...], check: str, detail: str,
        named: dict[str, str]) -> None:
    """The refusal states the request as made (its `--to` and `--from-version`), the check and why."""
    two_versions(env)
    if before is not None:
        before(capsys, env)
    head = last_seq(env)
    result = cli(capsys, env, *ROLLBACK, *argv, code=1)
    assert result.err == f"ledger: rollback refused ({check}): {detail}\n"
    assert last_seq(env) == head + 1
    assert body(record(env, head + 1)) == {
        "event": "rollback.rejected", "actor": "on-call", "target": "fleet", "result": "rejected",
        "check": check, "detail": detail, "reason": "errors up", **named}


def test_fleet_counts_refused_rollbacks_and_refused_commands_apart(env: Env, capsys: Cap) -> None:
    """`rollbacks_rejected` and `commands_rejected` count refusals on record, and nothing else."""
    two_versions(env)
    summary = answer(capsys, env, "fleet")["summary"]
    assert (summary["rollbacks_rejected"], summary["commands_rejected"]) == (0, 0)
    cli(capsys, env, *ROLLBACK, "--to", "v9", code=1)
    cli(capsys, env, *ROLLBACK, "--to", "v2", code=1)
    cli(capsys, env, "deploy", "v2", "--actor", "ci", code=1)  # command.rejected: target_is_current
    cli(capsys, env, *ROLLBACK)  # accepted: counts nowhere
    cli(capsys, env, *ROLLBACK, code=1)  # rollout_in_flight
    summary = answer(capsys, env, "fleet")["summary"]
    assert (summary["rollbacks_rejected"], summary["commands_rejected"]) == (3, 1)
    assert "refused decisions on record: 3 rollback(s), 1 other command(s)\n" in cli(capsys, env, "fleet").out


# -- good evidence, verdicts, counts -----------------------------------------------------------------


def test_a_cleared_verdict_restores_the_version_and_becomes_its_evidence(env: Env, capsys: Cap) -> None:
    """`version.cleared` makes v1 good again, with the clearing record as its evidence, everywhere."""
    two_versions(env)
    cli(capsys, env, "mark", "bad", "v1", "--actor", "qa", "--reason", "leaks")  # 10
    cli(capsys, env, "mark", "cleared", "v1", "--actor", "qa", "--reason", "false alarm")  # 11
    cli(capsys, env, "mark", "verified", "v1", "--actor", "qa")  # 12
    v1 = versions(capsys, env)["v1"]
    assert v1["verdicts"] == [stamp(env, 10, event="version.marked_bad"),
                              stamp(env, 11, event="version.cleared"),
                              stamp(env, 12, event="version.verified")]
    assert (v1["bad"], v1["restored"], v1["verified"]) == (None, stamp(env, 11, event="version.cleared"),
                                                           stamp(env, 12))
    assert (v1["good"], v1["good_evidence_seq"], v1["status"]) == (True, 11, "superseded")
    assert answer(capsys, env, "last-good", "--for-rollback") == {
        "fleet": "prod", "version": "v1", "evidence_seq": 11, "evidence_event": "version.cleared",
        "completed_seq": 6, "verified_seq": 12, "leaving": "v2"}
    cli(capsys, env, *ROLLBACK)  # 13
    assert record(env, 13)["good_evidence_seq"] == 11


def test_clearing_a_version_that_is_not_bad_is_refused(env: Env, capsys: Cap) -> None:
    """A `version.cleared` needs a bad mark: the refusal names `not_bad` and the version."""
    two_versions(env)
    result = cli(capsys, env, "mark", "cleared", "v1", "--actor", "qa", "--reason", "why not", code=1)
    assert "not_bad" in result.err
    assert body(record(env, 10)) == {
        "event": "command.rejected", "actor": "qa", "target": "fleet", "result": "rejected",
        "command": "version.cleared", "check": "not_bad", "detail": "v1 carries no bad mark to clear",
        "reason": "why not", "version": "v1"}
    assert versions(capsys, env)["v1"]["verdicts"] == []


def test_plain_last_good_names_the_completion_as_evidence(env: Env, capsys: Cap) -> None:
    """Asked plainly, last-good is the current version and its evidence its completion."""
    two_versions(env)
    assert answer(capsys, env, "last-good") == {
        "fleet": "prod", "version": "v2", "evidence_seq": 9, "evidence_event": "deployment.completed",
        "completed_seq": 9, "verified_seq": None, "leaving": None}


def test_starts_and_completions_are_counted_per_version(env: Env, capsys: Cap) -> None:
    """A version deployed twice counts two starts; a failed deploy a start and no completion."""
    two_versions(env)
    cli(capsys, env, "deploy", "v1", "--actor", "ci")  # 10
    cli(capsys, env, "complete", "v1", "--actor", "ci")  # 11
    cli(capsys, env, "deploy", "v3", "--actor", "ci")  # 12
    cli(capsys, env, "fail", "v3", "--actor", "ci", "--reason", "crash loop")  # 13
    found = versions(capsys, env)
    counts = {name: (v["starts"], v["completions"], v["status"]) for name, v in found.items()}
    assert counts == {"v1": (2, 2, "superseded"), "v2": (1, 1, "superseded"), "v3": (1, 0, "failed")}
    assert found["v1"]["started"] == stamp(env, 10, from_version="v2")
    assert found["v1"]["completed"] == stamp(env, 11, event="deployment.completed")
    assert found["v3"]["failed"] == stamp(env, 13, from_version="v1")
    assert found["v3"]["completed"] is None


# -- drains and exits --------------------------------------------------------------------------------


def test_a_drain_of_the_whole_version(env: Env, capsys: Cap) -> None:
    """`deployment.drain_started` with no worker: every v1 worker drains, counted once per fact."""
    two_versions(env)
    facts(env, {"event": "deployment.drain_started", "actor": "platform", "target": "fleet",
                "result": "success", "version": "v1", "reason": "retire v1"},  # 10
          build.worker_drain("w0", "v1", "platform"),  # 11: already draining, not counted again
          build.worker_drain("w2", "v2", "platform"),  # 12
          build.worker_drain("w2", "v2", "platform"))  # 13: a repeat, counted once
    found = versions(capsys, env)
    assert (found["v1"]["drains"], found["v1"]["worker_drains"]) == ([stamp(env, 10)], 0)
    assert (found["v2"]["drains"], found["v2"]["worker_drains"]) == ([], 1)
    fleet = answer(capsys, env, "fleet")
    drained = {w["worker_id"]: w["drain_started"] for w in fleet["workers"]}
    when = {seq: {"seq": seq, "timestamp": record(env, seq)["timestamp"]} for seq in (10, 12)}
    assert drained == {"w0": when[10], "w1": when[10], "w2": when[12]}
    assert (fleet["summary"]["draining"], fleet["summary"]["clean"]) == (3, False)


def test_exited_workers_keep_their_exit_codes(env: Env, capsys: Cap) -> None:
    """Exit code 0 is kept as 0, 137 as 137, and none when the worker did not report one."""
    two_versions(env)
    facts(env, build.worker_exit("w0", "v1", 1, "platform", exit_code=0),  # 10
          build.worker_exit("w1", "v1", 2, "platform", exit_code=137),  # 11
          build.worker_exit("w2", "v2", 0, "platform"))  # 12

    def at(seq: int) -> dict[str, Any]:
        return {"seq": seq, "timestamp": record(env, seq)["timestamp"]}

    def exited(seq: int, worker: str, version: str, started: int, dropped: int,
               **code: int) -> dict[str, Any]:
        return {"worker_id": worker, "version": version, "draining": False, "stuck": False,
                "active_sessions": 0, "started": at(started), "drain_started": None,
                "exited": {**at(seq), "dropped_sessions": dropped, **code}}

    fleet = answer(capsys, env, "fleet")
    assert fleet["recent_exits"] == [exited(12, "w2", "v2", 8, 0),
                                     exited(11, "w1", "v1", 4, 2, exit_code=137),
                                     exited(10, "w0", "v1", 2, 1, exit_code=0)]
    assert (fleet["workers"], fleet["summary"]["live_workers"], fleet["summary"]["dropped_sessions"]) == (
        [], 0, 3)


# -- what a decision's record keeps of the request and of the plan -----------------------------------


def test_a_completion_naming_the_wrong_source_is_refused_with_both_versions(env: Env, capsys: Cap) -> None:
    """`from_version` on a completion must be what the move in flight leaves; the refusal keeps both."""
    with env.open() as lg:
        seed(lg)
    cli(capsys, env, "deploy", "v2", "--actor", "ci")  # 7
    raw = {"event": "deployment.completed", "actor": "ci", "target": "fleet", "result": "success",
           "version": "v2", "from_version": "v9"}
    result = cli(capsys, env, "append", "--json", orjson.dumps(raw).decode(), code=1)
    detail = "the deploy in flight leaves v1, not v9"
    assert result.err == f"ledger: deployment.completed refused (from_version_mismatch): {detail}\n"
    assert body(record(env, 8)) == {
        "event": "command.rejected", "actor": "ci", "target": "fleet", "result": "rejected",
        "command": "deployment.completed", "check": "from_version_mismatch", "detail": detail,
        "version": "v2", "from_version": "v9"}


def test_a_replayed_rollback_states_the_plan_decided_at_its_head(env: Env, capsys: Cap) -> None:
    """The plan printed by a rollback and by its replay (same idempotency key) is the recorded one."""
    two_versions(env)
    first = cli(capsys, env, *ROLLBACK, "--idempotency-key", "K1")  # 10
    plan = ["rollback plan for fleet prod at seq 9:", "  leave v2, return to v1 (good since seq 6)",
            "  start workers: v1-rb10-1", "  drain workers: w2", "  drain timeout: 120s"]
    assert first.out.splitlines()[1:] == [plan[0], plan[1], "  skipped v2: is the version being left",
                                         *plan[2:]]
    again = cli(capsys, env, *ROLLBACK, "--idempotency-key", "K1")
    assert again.out.splitlines() == [
        "idempotency key 'K1' was used at seq 10: returning its result, writing nothing", *plan]
    assert last_seq(env) == 10


def test_a_driven_deploy_records_its_plan_at_the_smallest_bounds(env: Env) -> None:
    """One worker and a one-second drain are the smallest plan allowed; the record keeps it exactly."""
    from ledger.decide import Deploy, Meta, WorkerPlan
    from ledger.gate import FleetService
    from projections.runner import Projections

    with env.open() as lg:
        seed(lg)
        with Projections(lg.store, notice=lambda _m: None) as views:
            outcome = FleetService(lg, views).submit("prod", Deploy("v2", Meta("ci"), plan=WorkerPlan(1, 1)))
    assert outcome.accepted
    assert body(record(env, 7)) == {
        "event": "deployment.started", "actor": "ci", "target": "fleet", "result": "success",
        "version": "v2", "from_version": "v1", "operation_id": "op7", "start_workers": ["v2-op7-1"],
        "drain_workers": ["w0", "w1"], "drain_timeout_s": 1}
