"""One gate for every fleet decision: refusals recorded, malformed input refused, keys honoured.

Every case runs through the CLI (in-process) and through the Python API
(`open_app(...).service`), on SQLite and on PostgreSQL (the `env` fixture).
A refused command must exit 1, write exactly its refusal record, and leave
`history`, `last-good` and `fleet` answering as before (but for the head and
the counters of refusals). Malformed input exits 2 and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger import Ledger
from ledger import commands as build
from ledger.app import open_app
from ledger.decide import (
    Command,
    Complete,
    Deploy,
    Fail,
    Judge,
    Meta,
    Rollback,
    Verdict,
    WorkerPlan,
)
from ledger.errors import InputError, RecordError
from ledger.events import DECISION_EVENTS, GATE_COMMANDS, Check
from ledger.gate import FleetService, Outcome
from ledger.rollback import RollbackRequest
from projections.runner import Projections
from tests.conftest import CliResult, Env, run_cli, seed, submit
from tests.test_actors import ACTOR_CHECKS

FLEET = "prod"
VIAS = ["cli", "api"]
#: Keys whose values change with every record, refusals included; everything else must not.
VOLATILE = frozenset({"head_seq", "head_hash", "head_timestamp", "rollbacks_rejected",
                      "commands_rejected", "last_rejection"})

Body = dict[str, Any]
Request = Command | Body  # a command, or a raw record body (`ledger append`, `submit_record`)


# -- helpers ---------------------------------------------------------------------------------


def quiet(_message: str) -> None:
    return None


def cli(capsys: pytest.CaptureFixture[str], env: Env, *argv: str) -> CliResult:
    return run_cli(capsys, *argv, *env.args(), "--fleet", FLEET)


def head_seq(env: Env) -> int:
    with env.open(writable=False) as lg:
        return lg.head(FLEET).seq


def records(env: Env, after: int = 0) -> list[Body]:
    with env.open(writable=False) as lg:
        return list(lg.records(FLEET, after=after))


def feed_after(capsys: pytest.CaptureFixture[str], env: Env, after: int) -> list[Body]:
    """What `ledger feed` prints after seq `after`."""
    result = cli(capsys, env, "feed", "--after", str(after))
    assert result.code == 0, result.err
    return [orjson.loads(line) for line in result.out.splitlines() if line.strip()]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def answers(env: Env) -> dict[str, Any]:
    """`history`, `last-good` (plain and for a rollback) and `fleet`, minus head and refusal counters."""
    with Projections.open(env.db, notice=quiet) as views:
        plain = views.last_good(FLEET)
        for_rollback = views.last_good(FLEET, for_rollback=True)
        return _strip({
            "history": views.history(FLEET),
            "last_good": plain.to_dict() if plain else None,
            "rollback_target": for_rollback.to_dict() if for_rollback else None,
            "fleet": views.fleet(FLEET),
        })


def history_entry(env: Env, version: str) -> Body | None:
    with Projections.open(env.db, notice=quiet) as views:
        return next((v for v in views.history(FLEET)["versions"] if v["version"] == version), None)


def fleet_answer(env: Env) -> Body:
    with Projections.open(env.db, notice=quiet) as views:
        return views.fleet(FLEET)


def last_good_version(env: Env) -> str | None:
    with Projections.open(env.db, notice=quiet) as views:
        answer = views.last_good(FLEET)
    return answer.version if answer else None


def api_submit(env: Env, request: Request) -> Outcome:
    """The Python API: a command to `FleetService.submit`, a raw body to `submit_record`."""
    with open_app(env.db, env.key, notice=quiet) as app:
        if isinstance(request, dict):
            return app.service.submit_record(FLEET, request)
        return app.service.submit(FLEET, request)


@dataclass(frozen=True)
class Attempt:
    """What a command came to, the same way for either path: exit code and refusal check."""

    code: int
    check: str | None
    err: str = ""


def attempt(capsys: pytest.CaptureFixture[str], env: Env, via: str, argv: list[str],
            request: Request) -> Attempt:
    if via == "cli":
        result = cli(capsys, env, *argv)
        check = None
        if "refused (" in result.err:
            check = result.err.split("refused (", 1)[1].split(")", 1)[0]
        return Attempt(result.code, check, result.err)
    outcome = api_submit(env, request)
    return Attempt(0 if outcome.accepted else 1, outcome.check.value if outcome.check else None)


def refusal_event(command: Command) -> str:
    return "rollback.rejected" if isinstance(command, Rollback) else "command.rejected"


def raw(event: str, **fields: Any) -> Body:
    """A raw decision body as `ledger append --json` takes it."""
    return {"event": event, "actor": "ops", "target": "fleet",
            "result": "failure" if event.endswith(".failed") else "success", **fields}


def as_json(body: Body) -> str:
    return orjson.dumps(body).decode()


def meta(actor: str = "ci", reason: str | None = None, key: str | None = None) -> Meta:
    return Meta(actor, reason, key)


def rollback(reason: str = "errors up", key: str | None = None, **request: Any) -> Rollback:
    return Rollback(RollbackRequest(FLEET, "oncall", reason, idempotency_key=key, **request),
                    Meta("oncall", reason, key))


def rolled_back(version: str, from_version: str) -> Body:
    return raw("deployment.rolled_back", version=version, from_version=from_version, reason="errors up")


# -- setups: histories written as a caller writes them (facts appended, decisions gated) ---------


def v1_live(lg: Ledger) -> None:
    seed(lg, FLEET)  # v1 deployed and completed; workers w0, w1 on v1


def v2_live(lg: Ledger) -> None:
    seed(lg, FLEET)
    submit(lg, FLEET, build.deploy("v2", "ci"), build.complete("v2", "ci"))


def v2_deploying(lg: Ledger) -> None:
    seed(lg, FLEET)
    submit(lg, FLEET, build.deploy("v2", "ci"))


def v5_refused(lg: Ledger) -> None:
    """v2 in flight, and a deploy of v5 refused: v5 appears only in a refusal record."""
    v2_deploying(lg)
    with Projections(lg.store, notice=quiet) as views:
        assert not FleetService(lg, views).submit(FLEET, Deploy("v5", meta())).accepted


def v4_deploying(lg: Ledger) -> None:
    seed(lg, FLEET)
    for version in ("v2", "v3"):
        submit(lg, FLEET, build.deploy(version, "ci"), build.complete(version, "ci"))
    submit(lg, FLEET, build.deploy("v4", "ci"))


def rolling_back_to_v3(lg: Ledger) -> None:
    v4_deploying(lg)
    submit(lg, FLEET, build.complete("v4", "ci"), rolled_back("v3", "v4"))
    # a rollback from v4 to v3 is in flight; v1, v2 and v3 are good, v4 is rolled back from


def rolling_back_without_workers(lg: Ledger) -> None:
    for version in ("v1", "v2"):
        submit(lg, FLEET, build.deploy(version, "ci"), build.complete(version, "ci"))
    submit(lg, FLEET, rolled_back("v1", "v2"))


def facts_only(lg: Ledger) -> None:
    submit(lg, FLEET, build.worker_start("w0", "v1", "platform"))


def v1_bad_v2_live(lg: Ledger) -> None:
    v2_live(lg)
    submit(lg, FLEET, build.verdict("version.marked_bad", "v1", "qa", "corrupts audio"))


def v1_complete_no_workers(lg: Ledger) -> None:
    submit(lg, FLEET, build.deploy("v1", "ci"), build.complete("v1", "ci"))


Setup = Callable[[Ledger], None]


def prepare(env: Env, setup: Setup) -> None:
    with env.open() as lg:
        setup(lg)


# -- the refusal table: every check, each through the CLI and the API ----------------------------

ROLLBACK = ["rollback", "--actor", "oncall", "--reason", "errors up"]


@dataclass(frozen=True)
class Refusal:
    setup: Setup
    argv: list[str]
    request: Request
    check: Check
    event: str = "command.rejected"


REFUSALS = [
    pytest.param(Refusal(v1_live, ["complete", "v9", "--actor", "ci"], Complete("v9", meta()),
                         Check.NO_MOVE_IN_FLIGHT), id="complete-never-deployed"),
    pytest.param(Refusal(v2_deploying, ["complete", "v9", "--actor", "ci"], Complete("v9", meta()),
                         Check.NOT_THE_MOVE), id="complete-never-deployed-during-a-deploy"),
    pytest.param(Refusal(v4_deploying, ["complete", "v3", "--actor", "ci"], Complete("v3", meta()),
                         Check.NOT_THE_MOVE), id="complete-v3-while-v4-in-flight"),
    pytest.param(Refusal(v1_live, ["fail", "v1", "--actor", "ci", "--reason", "x"],
                         Fail("v1", meta(reason="x")), Check.NO_MOVE_IN_FLIGHT),
                 id="fail-with-nothing-in-flight"),
    pytest.param(Refusal(v1_live, ["append", "--json", as_json(rolled_back("v9", "v1"))],
                         rolled_back("v9", "v1"), Check.TARGET_UNKNOWN, "rollback.rejected"),
                 id="raw-rolled-back-to-unknown"),
    pytest.param(Refusal(v1_live, ["append", "--json", as_json(raw("rollback.completed", version="v9",
                                                                    from_version="v1"))],
                         raw("rollback.completed", version="v9", from_version="v1"),
                         Check.NO_MOVE_IN_FLIGHT), id="raw-rollback-completed-unknown"),
    pytest.param(Refusal(rolling_back_to_v3,
                         ["append", "--json", as_json(raw("rollback.completed", version="v9",
                                                          from_version="v4"))],
                         raw("rollback.completed", version="v9", from_version="v4"),
                         Check.NOT_THE_MOVE), id="raw-rollback-completed-unknown-during-rollback"),
    pytest.param(Refusal(v2_deploying, ["deploy", "v5", "--actor", "ci"], Deploy("v5", meta()),
                         Check.ROLLOUT_IN_FLIGHT), id="deploy-while-deploying"),
    pytest.param(Refusal(v2_deploying, ["deploy", "v4", "--actor", "ci", "--drive"],
                         Deploy("v4", meta(), plan=WorkerPlan()), Check.ROLLOUT_IN_FLIGHT),
                 id="deploy-drive-while-deploying"),
    pytest.param(Refusal(rolling_back_to_v3, [*ROLLBACK], rollback(), Check.ROLLOUT_IN_FLIGHT,
                         "rollback.rejected"), id="rollback-while-rolling-back"),
    pytest.param(Refusal(v1_live, ["deploy", "v2", "--actor", "ci", "--from-version", "v0"],
                         Deploy("v2", meta(), from_version="v0"), Check.FROM_VERSION_MISMATCH),
                 id="deploy-from-version-mismatch"),
    pytest.param(Refusal(v1_live, ["deploy", "v1", "--actor", "ci"], Deploy("v1", meta()),
                         Check.TARGET_IS_CURRENT), id="deploy-current-version"),
    pytest.param(Refusal(v1_live, ["mark", "verified", "v9", "--actor", "qa"],
                         Judge(Verdict.VERIFIED, "v9", meta("qa")), Check.VERSION_UNKNOWN),
                 id="verified-unknown-version"),
    pytest.param(Refusal(v1_live, ["mark", "bad", "v9", "--actor", "qa", "--reason", "x"],
                         Judge(Verdict.BAD, "v9", meta("qa", "x")), Check.VERSION_UNKNOWN),
                 id="bad-unknown-version"),
    pytest.param(Refusal(v5_refused, ["mark", "verified", "v5", "--actor", "qa"],
                         Judge(Verdict.VERIFIED, "v5", meta("qa")), Check.VERSION_UNKNOWN),
                 id="verified-version-seen-only-in-a-refusal"),
    pytest.param(Refusal(v1_live, ["mark", "cleared", "v1", "--actor", "qa", "--reason", "x"],
                         Judge(Verdict.CLEARED, "v1", meta("qa", "x")), Check.NOT_BAD),
                 id="cleared-not-bad"),
    pytest.param(Refusal(rolling_back_without_workers, ["complete", "v1", "--actor", "ci"],
                         Complete("v1", meta()), Check.FLEET_NOT_CLEAN),
                 id="complete-rollback-no-worker-known"),
    pytest.param(Refusal(facts_only, [*ROLLBACK], rollback(), Check.NO_CURRENT_VERSION,
                         "rollback.rejected"), id="rollback-no-current-version"),
    pytest.param(Refusal(v1_live, [*ROLLBACK], rollback(), Check.NO_LAST_GOOD, "rollback.rejected"),
                 id="rollback-no-last-good"),
    pytest.param(Refusal(v1_live, [*ROLLBACK, "--to", "v9"], rollback(to_version="v9"),
                         Check.TARGET_UNKNOWN, "rollback.rejected"), id="rollback-to-unknown"),
    pytest.param(Refusal(v5_refused, [*ROLLBACK, "--to", "v5"], rollback(to_version="v5"),
                         Check.TARGET_UNKNOWN, "rollback.rejected"),
                 id="rollback-to-a-version-seen-only-in-a-refusal"),
    pytest.param(Refusal(v1_bad_v2_live, [*ROLLBACK, "--to", "v1"], rollback(to_version="v1"),
                         Check.TARGET_NOT_GOOD, "rollback.rejected"), id="rollback-to-bad"),
    pytest.param(Refusal(v2_live, [*ROLLBACK, "--to", "v2"], rollback(to_version="v2"),
                         Check.TARGET_IS_CURRENT, "rollback.rejected"), id="rollback-to-current"),
    pytest.param(Refusal(v2_live, [*ROLLBACK, "--from-version", "v7"], rollback(from_version="v7"),
                         Check.FROM_VERSION_MISMATCH, "rollback.rejected"),
                 id="rollback-from-version-mismatch"),
]


def test_the_refusal_table_covers_every_check() -> None:
    covered = {p.values[0].check for p in REFUSALS}
    assert covered == set(Check) - ACTOR_CHECKS  # who may ask: tests/test_actors.py


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_command_exits_1_and_records_only_its_refusal(
    env: Env, capsys: pytest.CaptureFixture[str], case: Refusal, via: str
) -> None:
    prepare(env, case.setup)
    before = head_seq(env)
    done = attempt(capsys, env, via, case.argv, case.request)
    assert (done.code, done.check) == (1, case.check.value), done.err
    written = feed_after(capsys, env, before)
    assert [(r["event"], r["check"], r["result"]) for r in written] == [
        (case.event, case.check.value, "rejected")]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_command_changes_no_answer(
    env: Env, capsys: pytest.CaptureFixture[str], case: Refusal, via: str
) -> None:
    prepare(env, case.setup)
    before = answers(env)
    attempt(capsys, env, via, case.argv, case.request)
    assert answers(env) == before


@pytest.mark.parametrize("case", [p for p in REFUSALS if p.values[0].event == "command.rejected"])
def test_command_rejected_names_the_command_the_check_and_why(
    env: Env, capsys: pytest.CaptureFixture[str], case: Refusal
) -> None:
    prepare(env, case.setup)
    before = head_seq(env)
    cli(capsys, env, *case.argv)
    (record,) = records(env, before)
    assert record["command"] in DECISION_EVENTS
    assert record["check"] == case.check.value
    assert record["detail"].strip()


def test_refusals_are_counted_in_the_fleet_summary(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v1_live)
    cli(capsys, env, "complete", "v9", "--actor", "ci")
    cli(capsys, env, *ROLLBACK)
    summary = fleet_answer(env)["summary"]
    assert (summary["commands_rejected"], summary["rollbacks_rejected"]) == (1, 1)


# -- the named cases, beyond "refused and nothing changed" -------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_completing_a_never_deployed_version_never_makes_it_live_or_good(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v1_live)
    attempt(capsys, env, via, ["complete", "v9", "--actor", "ci"], Complete("v9", meta()))
    assert history_entry(env, "v9") is None
    assert last_good_version(env) == "v1"
    assert fleet_answer(env)["summary"]["current"] == "v1"


@pytest.mark.parametrize("via", VIAS)
def test_completing_v3_while_v4_is_in_flight_leaves_v4_rolling_out(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v4_deploying)
    attempt(capsys, env, via, ["complete", "v3", "--actor", "ci"], Complete("v3", meta()))
    entry = history_entry(env, "v4")
    assert entry is not None and entry["status"] == "rolling_out"


@pytest.mark.parametrize("via", VIAS)
def test_a_refused_raw_rollback_leaves_nothing_to_drive(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v1_live)
    body = rolled_back("v9", "v1")
    attempt(capsys, env, via, ["append", "--json", as_json(body)], body)
    before = head_seq(env)
    done = cli(capsys, env, "drive")
    assert (done.code, "nothing to drive" in done.out, head_seq(env)) == (0, True, before), done


@pytest.mark.parametrize("via", VIAS)
def test_a_refused_driven_deploy_starts_no_worker(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v2_deploying)
    before = head_seq(env)
    attempt(capsys, env, via, ["deploy", "v4", "--actor", "ci", "--drive"],
            Deploy("v4", meta(), plan=WorkerPlan()))
    started = [r for r in records(env, before) if r["event"].startswith("worker.")]
    locks = list(env.rundir.glob("*.lock")) if env.rundir.exists() else []
    assert (started, locks) == ([], [])


# -- malformed input: exit 2, nothing written ------------------------------------------------

PLAN_FIELDS = [
    pytest.param({"start_workers": ["v1-x-1"]}, id="start_workers"),
    pytest.param({"drain_workers": ["w0"]}, id="drain_workers"),
    pytest.param({"start_workers": ["v1-x-1"], "drain_workers": ["w0"]}, id="both"),
    pytest.param({"rollback_id": "rb1"}, id="rollback_id"),
    pytest.param({"forced": True}, id="forced"),
    pytest.param({"good_evidence_seq": 6}, id="good_evidence_seq"),
    pytest.param({"drain_timeout_s": 5}, id="drain_timeout_s"),
]


@pytest.mark.parametrize("plan", PLAN_FIELDS)
def test_a_raw_rollback_carrying_a_plan_is_malformed_on_the_cli(
    env: Env, capsys: pytest.CaptureFixture[str], plan: Body
) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    done = cli(capsys, env, "append", "--json", as_json({**rolled_back("v1", "v2"), **plan}))
    assert (done.code, head_seq(env)) == (2, before), done


@pytest.mark.parametrize("plan", PLAN_FIELDS)
def test_a_raw_rollback_carrying_a_plan_is_malformed_in_python(env: Env, plan: Body) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    with pytest.raises(InputError):
        api_submit(env, {**rolled_back("v1", "v2"), **plan})
    assert head_seq(env) == before


REFUSAL_BODIES = [
    pytest.param(raw("rollback.rejected", check="target_unknown", reason="x", idempotency_key="K"),
                 id="rollback.rejected"),
    pytest.param(raw("command.rejected", command="deployment.started", check="rollout_in_flight",
                     detail="x", idempotency_key="K"), id="command.rejected"),
]


@pytest.mark.parametrize("body", REFUSAL_BODIES)
def test_a_raw_refusal_record_is_refused_as_input(
    env: Env, capsys: pytest.CaptureFixture[str], body: Body
) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    done = cli(capsys, env, "append", "--json", as_json(body))
    assert (done.code, head_seq(env)) == (2, before), done


@pytest.mark.parametrize("body", REFUSAL_BODIES)
def test_a_raw_refusal_record_is_refused_in_python(env: Env, body: Body) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    with pytest.raises(RecordError):
        api_submit(env, body)
    with env.open() as lg, pytest.raises(RecordError):
        lg.append(FLEET, body)
    assert head_seq(env) == before


@pytest.mark.parametrize("via", VIAS)
def test_a_refused_raw_refusal_does_not_claim_its_idempotency_key(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v2_live)
    cli(capsys, env, "append", "--json", as_json(REFUSAL_BODIES[0].values[0]))
    before = head_seq(env)
    done = attempt(capsys, env, via, [*ROLLBACK, "--idempotency-key", "K", "--no-drive"], rollback(key="K"))
    assert done.code == 0, done.err
    assert [(r["event"], r["version"], r.get("idempotency_key")) for r in records(env, before)] == [
        ("deployment.rolled_back", "v1", "K")]


@pytest.mark.parametrize("via", VIAS)
def test_a_fact_carrying_an_idempotency_key_does_not_claim_it(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v1_live)
    fact = {**build.worker_sessions("w0", "v1", 3, "w0"), "idempotency_key": "K"}
    assert cli(capsys, env, "append", "--json", as_json(fact)).code == 0
    before = head_seq(env)
    done = attempt(capsys, env, via, ["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"],
                   Deploy("v2", meta(key="K")))
    assert done.code == 0, done.err
    assert [r["event"] for r in records(env, before)] == ["deployment.started"]


MALFORMED = [
    pytest.param(["mark", "bad", "v1", "--actor", "qa"], Judge(Verdict.BAD, "v1", meta("qa")),
                 id="bad-without-reason"),
    pytest.param(["mark", "cleared", "v1", "--actor", "qa"], Judge(Verdict.CLEARED, "v1", meta("qa")),
                 id="cleared-without-reason"),
    pytest.param(["complete", "v1", "--actor", " "], Complete("v1", meta(" ")), id="blank-actor"),
    pytest.param(["complete", "v1", "--actor", "ci", "--confirm", " "],
                 Complete("v1", meta(), evidence=" "), id="blank-evidence"),
    pytest.param(["deploy", "v2", "--actor", "ci", "--reason", " "], Deploy("v2", meta(reason=" ")),
                 id="blank-reason"),
    pytest.param(["deploy", "v2", "--actor", "ci", "--idempotency-key", " "], Deploy("v2", meta(key=" ")),
                 id="blank-idempotency-key"),
    pytest.param(["deploy", "v2", "--actor", "ci", "--drive", "--workers", "0"],
                 Deploy("v2", meta(), plan=WorkerPlan(0)), id="zero-workers"),
    pytest.param([*ROLLBACK[:3], "--reason", " "], rollback(reason=" "), id="rollback-blank-reason"),
    pytest.param(["append", "--json", as_json(raw("deployment.started", version="v2", supersedes_seq=1))],
                 raw("deployment.started", version="v2", supersedes_seq=1), id="raw-deploy-with-gate-field"),
    pytest.param(["append", "--json", as_json(raw("deployment.completed", version="v1", result="failure"))],
                 raw("deployment.completed", version="v1", result="failure"), id="raw-completion-as-failure"),
    pytest.param(["append", "--json", as_json(raw("move.superseded", version="v1", move_seq=1,
                                                  superseded_by="v2"))],
                 raw("move.superseded", version="v1", move_seq=1, superseded_by="v2"), id="raw-superseded"),
]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(("argv", "request_"), MALFORMED)
def test_malformed_input_exits_2_and_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], request_: Request, via: str
) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    if via == "cli":
        assert cli(capsys, env, *argv).code == 2
    else:
        with pytest.raises(InputError):
            api_submit(env, request_)
    assert head_seq(env) == before


# -- supersede, confirmation ------------------------------------------------------------------


@pytest.mark.parametrize("via", VIAS)
def test_supersede_records_the_replacement_then_the_deploy(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, v2_deploying)
    before = head_seq(env)  # the v2 deploy's seq
    done = attempt(capsys, env, via, ["deploy", "v3", "--actor", "ci", "--supersede"],
                   Deploy("v3", meta(), supersede=True))
    assert done.code == 0, done.err
    written = [(r["event"], r["version"], r.get("move_seq"), r.get("superseded_by"), r.get("supersedes_seq"))
               for r in records(env, before)]
    assert written == [("move.superseded", "v2", before, "v3", None),
                       ("deployment.started", "v3", None, None, before)]


@pytest.mark.parametrize("via", VIAS)
def test_a_superseded_deploy_is_abandoned(env: Env, capsys: pytest.CaptureFixture[str], via: str) -> None:
    prepare(env, v2_deploying)
    attempt(capsys, env, via, ["deploy", "v3", "--actor", "ci", "--supersede"],
            Deploy("v3", meta(), supersede=True))
    old, new = history_entry(env, "v2"), history_entry(env, "v3")
    assert old is not None and new is not None
    assert (old["status"], new["status"]) == ("abandoned", "rolling_out")


@pytest.mark.parametrize("via", VIAS)
def test_superseding_a_rollback_settles_it_and_keeps_its_source_bad(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, rolling_back_to_v3)
    attempt(capsys, env, via, ["deploy", "v5", "--actor", "ci", "--supersede"],
            Deploy("v5", meta(), supersede=True))
    target, source = history_entry(env, "v3"), history_entry(env, "v4")
    assert target is not None and source is not None
    assert (target["rolled_back_to"][-1]["outcome"], source["status"], last_good_version(env)) == (
        "superseded", "rolled_back", "v3")


@pytest.mark.parametrize("via", VIAS)
def test_a_rollback_with_no_worker_known_completes_only_with_evidence(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, rolling_back_without_workers)
    before = head_seq(env)
    done = attempt(capsys, env, via, ["complete", "v1", "--actor", "oncall", "--confirm", "console shows v1"],
                   Complete("v1", meta("oncall"), evidence="console shows v1"))
    assert done.code == 0, done.err
    (record,) = records(env, before)
    assert (record["event"], record["version"], record["operator_confirmed"], record["evidence"]) == (
        "rollback.completed", "v1", True, "console shows v1")


@pytest.mark.parametrize("via", VIAS)
def test_a_confirmed_rollback_makes_its_target_last_good_again(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    prepare(env, rolling_back_without_workers)
    attempt(capsys, env, via, ["complete", "v1", "--actor", "oncall", "--confirm", "console shows v1"],
            Complete("v1", meta("oncall"), evidence="console shows v1"))
    entry = history_entry(env, "v1")
    assert entry is not None
    assert (entry["status"], last_good_version(env)) == ("live", "v1")


# -- no raw decision append in Python; `append --file` through the gate -----------------------

DECISION_BODIES = {
    "deployment.started": raw("deployment.started", version="v2"),
    "deployment.completed": raw("deployment.completed", version="v1"),
    "deployment.failed": raw("deployment.failed", version="v1", reason="x"),
    "deployment.rolled_back": rolled_back("v1", "v2"),
    "rollback.completed": raw("rollback.completed", version="v1", from_version="v2"),
    "rollback.failed": raw("rollback.failed", version="v1", from_version="v2", reason="x"),
    "version.marked_bad": raw("version.marked_bad", version="v1", reason="x"),
    "version.cleared": raw("version.cleared", version="v1", reason="x"),
    "version.verified": raw("version.verified", version="v1"),
    "move.superseded": raw("move.superseded", version="v1", move_seq=1, superseded_by="v2"),
    "analysis.rule_set": raw("analysis.rule_set", window_s=60, min_sessions=30, confidence_bp=9900,
                             min_increase_bp=500, consecutive=2),
    "actor.added": raw("actor.added", name="bob", keys=["ed25519:" + "A" * 43 + "="], roles=["oncall"]),
    "actor.revoked": raw("actor.revoked", name="bob"),
    "actor.key_revoked": raw("actor.key_revoked", name="bob", key_id="0" * 16),
    "role.granted": raw("role.granted", role="oncall", actions=["rollback"], fleets=["*"]),
    "policy.enabled": raw("policy.enabled", persons=2, approval_actions=["force"]),
}


def test_every_decision_has_a_body_here() -> None:
    assert set(DECISION_BODIES) == set(DECISION_EVENTS)


@pytest.mark.parametrize("event", sorted(DECISION_BODIES))
def test_ledger_append_of_a_decision_raises_naming_the_command(env: Env, event: str) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    command = GATE_COMMANDS[event].split("`")[1]  # e.g. "ledger deploy"
    with env.open() as lg, pytest.raises(RecordError, match=command):
        lg.append(FLEET, DECISION_BODIES[event])
    assert head_seq(env) == before


@pytest.mark.parametrize("event", sorted(DECISION_BODIES))
def test_ledger_append_many_of_a_decision_raises(env: Env, event: str) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    with env.open() as lg, pytest.raises(RecordError):
        lg.append_many(FLEET, [build.worker_start("w9", "v2", "platform"), DECISION_BODIES[event]])
    assert head_seq(env) == before


def write_jsonl(env: Env, *bodies: Body) -> Path:
    path = env.dir / "batch.jsonl"
    path.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in bodies))
    return path


def test_append_file_passes_its_decisions_through_the_gate_in_order(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(env, v1_live)
    before = head_seq(env)
    path = write_jsonl(env, raw("deployment.started", version="v2"),
                       build.worker_start("w2", "v2", "platform"),
                       raw("deployment.completed", version="v2"), raw("version.verified", version="v2"))
    done = cli(capsys, env, "append", "--file", str(path))
    assert done.code == 0, done.err
    assert [r["event"] for r in records(env, before)] == [
        "deployment.started", "worker.started", "deployment.completed", "version.verified"]


def test_a_refused_decision_stops_an_append_file_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v1_live)
    before = head_seq(env)
    path = write_jsonl(env, build.worker_sessions("w0", "v1", 4, "w0"),
                       raw("deployment.completed", version="v9"), raw("deployment.started", version="v3"),
                       build.worker_sessions("w0", "v1", 5, "w0"))
    done = cli(capsys, env, "append", "--file", str(path))
    assert done.code == 1, done.err
    assert [(r["event"], r.get("check")) for r in records(env, before)] == [
        ("worker.sessions", None), ("command.rejected", "no_move_in_flight")]


def test_a_decision_is_decided_at_its_place_in_the_file(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """`complete v2` in the file is valid only after the file's own `deploy v2`."""
    prepare(env, v1_live)
    path = write_jsonl(env, raw("deployment.completed", version="v2"),
                       raw("deployment.started", version="v2"))
    assert cli(capsys, env, "append", "--file", str(path)).code == 1
    assert history_entry(env, "v2") is None


# -- idempotency keys ---------------------------------------------------------------------------

REPEATS = [
    pytest.param(v1_live, ["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"],
                 Deploy("v2", meta(key="K")), 0, id="deploy-accepted"),
    pytest.param(v2_deploying, ["deploy", "v3", "--actor", "ci", "--idempotency-key", "K"],
                 Deploy("v3", meta(key="K")), 1, id="deploy-refused"),
    pytest.param(v2_live, [*ROLLBACK, "--idempotency-key", "K", "--no-drive"], rollback(key="K"), 0,
                 id="rollback-accepted"),
    pytest.param(v1_live, [*ROLLBACK, "--idempotency-key", "K", "--no-drive"], rollback(key="K"), 1,
                 id="rollback-refused"),
    pytest.param(v2_deploying, ["complete", "v2", "--actor", "ci", "--idempotency-key", "K"],
                 Complete("v2", meta(key="K")), 0, id="complete-accepted"),
    pytest.param(v1_live, ["mark", "verified", "v1", "--actor", "qa", "--idempotency-key", "K"],
                 Judge(Verdict.VERIFIED, "v1", meta("qa", key="K")), 0, id="verdict-accepted"),
]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(("setup", "argv", "request_", "code"), REPEATS)
def test_a_repeated_idempotency_key_returns_the_first_result_and_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], setup: Setup, argv: list[str], request_: Request,
    code: int, via: str
) -> None:
    prepare(env, setup)
    first = attempt(capsys, env, via, argv, request_)
    after_first = head_seq(env)
    again = attempt(capsys, env, via, argv, request_)
    assert (first.code, again.code, again.check) == (code, code, first.check)
    assert head_seq(env) == after_first


def test_a_replay_says_where_the_first_result_is(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v1_live)
    argv = ["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"]
    cli(capsys, env, *argv)
    seq = head_seq(env)
    assert f"was used at seq {seq}" in cli(capsys, env, *argv).out
    outcome = api_submit(env, Deploy("v2", meta(key="K")))
    assert (outcome.replayed, outcome.receipt.seq) == (True, seq)


def test_a_replayed_deploy_is_not_decided_again(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The retry comes after v2 completed: decided again it would be refused; replayed it is not."""
    prepare(env, v1_live)
    argv = ["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"]
    cli(capsys, env, *argv)
    cli(capsys, env, "complete", "v2", "--actor", "ci")
    before = head_seq(env)
    assert (cli(capsys, env, *argv).code, head_seq(env)) == (0, before)


REUSES = [
    pytest.param(["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"],
                 ["mark", "verified", "v1", "--actor", "qa", "--idempotency-key", "K"],
                 Judge(Verdict.VERIFIED, "v1", meta("qa", key="K")), id="deploy-then-verdict"),
    pytest.param(["deploy", "v2", "--actor", "ci", "--idempotency-key", "K"],
                 [*ROLLBACK, "--idempotency-key", "K", "--no-drive"], rollback(key="K"),
                 id="deploy-then-rollback"),
    pytest.param([*ROLLBACK, "--idempotency-key", "K", "--no-drive"],
                 ["deploy", "v3", "--actor", "ci", "--idempotency-key", "K"], Deploy("v3", meta(key="K")),
                 id="rollback-then-deploy"),
    pytest.param(["complete", "v9", "--actor", "ci", "--idempotency-key", "K"],
                 ["deploy", "v9", "--actor", "ci", "--idempotency-key", "K"], Deploy("v9", meta(key="K")),
                 id="refused-complete-then-deploy"),
    pytest.param(["mark", "verified", "v1", "--actor", "qa", "--idempotency-key", "K"],
                 ["mark", "bad", "v1", "--actor", "qa", "--reason", "x", "--idempotency-key", "K"],
                 Judge(Verdict.BAD, "v1", meta("qa", "x", "K")), id="verified-then-bad"),
]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(("first", "argv", "request_"), REUSES)
def test_an_idempotency_key_reused_by_another_command_exits_2(
    env: Env, capsys: pytest.CaptureFixture[str], first: list[str], argv: list[str], request_: Request,
    via: str
) -> None:
    prepare(env, v2_live)
    cli(capsys, env, *first)
    before = head_seq(env)
    if via == "cli":
        assert cli(capsys, env, *argv).code == 2
    else:
        with pytest.raises(InputError):
            api_submit(env, request_)
    assert head_seq(env) == before


# -- fleet --------------------------------------------------------------------------------------


def test_a_fleet_with_no_known_worker_is_not_clean(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v1_complete_no_workers)
    done = cli(capsys, env, "fleet", "--json")
    summary = orjson.loads(done.out)["summary"]
    assert (summary["live_workers"], summary["clean"]) == (0, False)


def test_a_fleet_with_no_known_worker_says_it_cannot_say_clean(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(env, v1_complete_no_workers)
    assert "cannot say clean" in cli(capsys, env, "fleet").out


def test_a_fleet_all_on_the_current_version_is_clean(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v1_live)
    summary = orjson.loads(cli(capsys, env, "fleet", "--json").out)["summary"]
    assert (summary["clean"], summary["not_current"]) == (True, [])


def test_live_workers_on_another_version_are_named(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(env, v2_deploying)
    submit_facts = [build.worker_start("w2", "v2", "platform")]
    with env.open() as lg:
        submit(lg, FLEET, *submit_facts)
    summary = orjson.loads(cli(capsys, env, "fleet", "--json").out)["summary"]
    assert (summary["current"], summary["not_current"], summary["clean"]) == ("v2", ["w0", "w1"], False)


def test_the_fleet_table_names_the_workers_not_on_the_current_version(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(env, v2_deploying)
    assert "live workers not on v2: w0, w1" in cli(capsys, env, "fleet").out


# -- more of the contract: supersede keys, races, dry runs, batches, caller extras -----------


@pytest.mark.parametrize("via", VIAS)
def test_a_repeated_supersede_with_its_key_returns_the_first_result(
    env: Env, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    """Both records of a supersede carry the key; a retry must replay, not exit 2."""
    prepare(env, v2_deploying)
    argv = ["deploy", "v3", "--actor", "ci", "--supersede", "--idempotency-key", "K"]
    command = Deploy("v3", meta(key="K"), supersede=True)
    attempt(capsys, env, via, argv, command)
    after_first = head_seq(env)
    if via == "cli":
        again = cli(capsys, env, *argv)
        assert (again.code, head_seq(env)) == (0, after_first), again.err
    else:
        outcome = api_submit(env, command)
        assert (outcome.replayed, outcome.receipt.seq, head_seq(env)) == (True, after_first, after_first)


class RacingStates:
    """A StateSource that lets another writer in right after the first state is read."""

    def __init__(self, views: Projections, race: Callable[[], None]):
        self.views, self.race, self.raced = views, race, False

    def _then_race(self, state: Any) -> Any:
        if not self.raced:
            self.raced = True
            self.race()
        return state

    def fleet_state(self, fleet: str) -> Any:
        return self._then_race(self.views.fleet_state(fleet))

    def decision_state(self, fleet: str, target: str | None = None) -> Any:
        return self._then_race(self.views.decision_state(fleet, target))

    def command_state(self, fleet: str, versions: Any) -> Any:
        return self._then_race(self.views.command_state(fleet, versions))


RACES = [
    pytest.param(v2_deploying, Complete("v2", meta("other")), Complete("v2", meta()),
                 "deployment.completed", Check.NO_MOVE_IN_FLIGHT, id="two-completions"),
    pytest.param(v2_live, Deploy("v3", meta("other")), Deploy("v4", meta()),
                 "deployment.started", Check.ROLLOUT_IN_FLIGHT, id="two-deploys"),
    pytest.param(v2_live, rollback(to_version="v1"), rollback(to_version="v1"), "deployment.rolled_back",
                 Check.TARGET_IS_CURRENT, id="two-rollbacks"),
    pytest.param(v1_bad_v2_live, Judge(Verdict.CLEARED, "v1", meta("other", "x")),
                 Judge(Verdict.CLEARED, "v1", meta("qa", "x")), "version.cleared", Check.NOT_BAD,
                 id="two-clearings"),
]


@pytest.mark.parametrize(("setup", "winner", "loser", "won", "check"), RACES)
def test_a_decision_whose_head_moved_is_decided_again_on_the_new_head(
    env: Env, setup: Setup, winner: Command, loser: Command, won: str, check: Check
) -> None:
    prepare(env, setup)
    before = head_seq(env)
    with open_app(env.db, env.key, notice=quiet) as other, open_app(env.db, env.key, notice=quiet) as app:
        app.service.states = RacingStates(app.views, lambda: other.service.submit(FLEET, winner) and None)
        outcome = app.service.submit(FLEET, loser)
    assert outcome.check is check
    assert [(r["event"], r.get("check")) for r in records(env, before)] == [
        (won, None), (refusal_event(loser), check.value)]


@pytest.mark.parametrize("setup", [pytest.param(v2_live, id="accepted"), pytest.param(v1_live, id="refused")])
def test_a_dry_run_rollback_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    prepare(env, setup)
    before = head_seq(env)
    done = cli(capsys, env, *ROLLBACK, "--dry-run")
    assert ("dry run: nothing written" in done.out, head_seq(env)) == (True, before)


def test_an_append_file_with_a_malformed_decision_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    path = write_jsonl(env, build.worker_sessions("w0", "v1", 4, "w0"),
                       raw("deployment.started", version="v3"),
                       {**rolled_back("v1", "v3"), "start_workers": ["v1-x-1"]})
    done = cli(capsys, env, "append", "--file", str(path))
    assert (done.code, head_seq(env)) == (2, before), done.err


def test_a_caller_extra_cannot_state_where_a_first_deploy_came_from(env: Env) -> None:
    """`from_version` of a deploy is the fleet's current version, decided by the gate; a
    Python caller's extra field must not put a version the fleet never ran in the record."""
    try:
        api_submit(env, Deploy("v1", Meta("ci", extra={"from_version": "v0"})))
    except InputError:
        return
    (record,) = records(env)
    assert record.get("from_version") is None, record


def test_an_idempotency_key_passed_as_an_extra_field_is_honoured_or_refused(env: Env) -> None:
    """A key in `Meta.extra` lands in a gated record, so the fold claims it: a retry must
    then replay (or the extra be refused), never write a second record carrying it."""
    prepare(env, v1_live)
    command = Judge(Verdict.VERIFIED, "v1", Meta("qa", extra={"idempotency_key": "K"}))
    before = head_seq(env)
    try:
        api_submit(env, command)
        api_submit(env, command)
    except InputError:
        pass
    assert len([r for r in records(env, before) if r.get("idempotency_key") == "K"]) <= 1


def test_two_racing_retries_with_one_key_write_one_record(env: Env) -> None:
    prepare(env, v2_live)
    before = head_seq(env)
    command = Deploy("v3", meta(key="K"))
    with open_app(env.db, env.key, notice=quiet) as other, open_app(env.db, env.key, notice=quiet) as app:
        app.service.states = RacingStates(app.views, lambda: other.service.submit(FLEET, command) and None)
        outcome = app.service.submit(FLEET, command)
    assert outcome.replayed
    assert [r["event"] for r in records(env, before)] == ["deployment.started"]


KEY_REUSE_FILES = [
    pytest.param([], [raw("deployment.started", version="v3", idempotency_key="K"),
                      build.worker_start("w5", "v3", "platform"),
                      raw("version.verified", version="v2", idempotency_key="K")], id="within-the-file"),
    pytest.param(["deploy", "v3", "--actor", "ci", "--idempotency-key", "K"],
                 [build.worker_start("w5", "v3", "platform"),
                  raw("version.verified", version="v2", idempotency_key="K")], id="against-the-ledger"),
]


@pytest.mark.parametrize(("first", "bodies"), KEY_REUSE_FILES)
def test_an_append_file_that_reuses_a_key_exits_2_and_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], first: list[str], bodies: list[Body]
) -> None:
    """Exit 2 means nothing was written: the key's reuse must be found before the file's
    first record is written (or the run must not exit 2 after writing)."""
    prepare(env, v2_live)
    if first:
        cli(capsys, env, *first)
    before = head_seq(env)
    done = cli(capsys, env, "append", "--file", str(write_jsonl(env, *bodies)))
    assert done.code == 2, done.err
    assert head_seq(env) == before
