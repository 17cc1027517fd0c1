"""Every fleet decision as a pure function: a command and the fleet's state in, a verdict out.

A command says what someone wants the fleet to become (deploy a version,
complete or fail the move in flight, roll back, give a verdict on a version).
`decide(state, command)` looks only at the fleet's state at the chain head
(`FleetHistory`, consistent with `state.head_seq`) and returns either
`Accepted`, with the records to write, or `Refused`, naming the one `Check`
that failed and carrying the refusal record to write instead. Nothing here
reads or writes storage; the gate (`ledger.gate`) does that, and appends only
if the head has not moved since the state was read.

Malformed commands (an empty actor, a field the ledger computes itself) raise
`InputError` from `check_well_formed()` before any state is read: they are
not decisions, and nothing is recorded for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ledger.analysis import Rule, validate_rule
from ledger.commands import record
from ledger.errors import InputError
from ledger.events import ATTESTATION_FIELDS, Check
from ledger.model import Move, MoveKind
from ledger.names import check_actor, check_version
from ledger.rollback import DEFAULT_DRAIN_TIMEOUT_S, Refusal, RollbackPlan, RollbackRequest, plan_rollback
from ledger.rules import FleetHistory

#: Fields of a decision record that the gate computes; a command may not set them.
GATE_FIELDS = frozenset({
    "event", "result", "start_workers", "drain_workers", "drain_timeout_s", "rollback_id",
    "operation_id", "forced", "good_evidence_seq", "supersedes_seq", "move_seq", "check",
    "detail", "command", "operator_confirmed", "external", "superseded_by",
}) | ATTESTATION_FIELDS
#: Fields a command states through its own arguments, never through `Meta.extra`.
ARGUMENT_FIELDS = frozenset({
    "actor", "reason", "idempotency_key", "version", "from_version", "evidence", "dropped_calls",
    "live_workers",
})


class Verdict(StrEnum):
    """An explicit judgement on a version, and the event that records it."""

    VERIFIED = "version.verified"
    BAD = "version.marked_bad"
    CLEARED = "version.cleared"


@dataclass(frozen=True)
class Meta:
    """What every command carries besides its arguments: who, why, and how to retry safely.

    `extra` holds caller fields kept verbatim in the record (a change ticket,
    say); they may not name a field the gate computes.
    """

    actor: str
    reason: str | None = None
    idempotency_key: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if not isinstance(self.actor, str) or not self.actor.strip():
            raise InputError("a decision needs --actor (who is doing this; it is recorded)")
        if self.reason is not None and not self.reason.strip():
            raise InputError("--reason must not be empty when given")
        if self.idempotency_key is not None and not self.idempotency_key.strip():
            raise InputError("--idempotency-key must not be empty when given")
        owned = sorted(GATE_FIELDS.intersection(self.extra))
        if owned:
            raise InputError(f"field {owned[0]!r} is computed by the ledger when it decides; "
                             "remove it from the request")
        stated = sorted(ARGUMENT_FIELDS.intersection(self.extra))
        if stated:
            raise InputError(f"field {stated[0]!r} is an argument of the command, not an extra field")

    def body(self, event: str, *, result: str = "success", reason: str | None = None,
             target: str | None = None, **fields: Any) -> dict[str, Any]:
        """A record body: the caller's extra fields, then the decision's own.

        `target` is what the decision is about: the fleet unless the caller or
        the decision (a policy change: "policy") names another. A required field
        the caller left out (a reason) is left for the schema to name when the
        body is validated: bad input, not a broken builder.
        """
        return record(event, self.actor, target or self.extra.get("target", "fleet"), result=result,
                      extra=self.extra, reason=self.reason or reason or None,
                      idempotency_key=self.idempotency_key or None, partial=True, **fields)


@dataclass(frozen=True)
class WorkerPlan:
    """How a driven deploy is to be carried out: how many new workers, how long a drain may take."""

    workers: int | None = None
    drain_timeout_s: int = 120


@dataclass(frozen=True)
class Deploy:
    """Start moving the fleet to `version`; with `supersede`, replace the move in flight."""

    version: str
    meta: Meta
    from_version: str | None = None
    supersede: bool = False
    plan: WorkerPlan | None = None


@dataclass(frozen=True)
class Complete:
    """Settle the move in flight as done. `kind` None means whichever move is in flight.

    A rollback's completion needs the fleet's state to show it done, or
    `evidence` from an operator who confirms it (recorded as such).
    """

    version: str
    meta: Meta
    kind: MoveKind | None = None
    from_version: str | None = None
    dropped_calls: int | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class Fail:
    """Settle the move in flight as failed; `reason` is required."""

    version: str
    meta: Meta
    kind: MoveKind | None = None
    from_version: str | None = None


@dataclass(frozen=True)
class Judge:
    """A verdict on a version the fleet has seen."""

    verdict: Verdict
    version: str
    meta: Meta


@dataclass(frozen=True)
class Rollback:
    """A rollback, as `ledger rollback` or an outside system (a pool) requests it.

    `source` links a request that an outside system made to the event that
    made it (its `source_*` fields); `external` says the platform starts and
    drains the workers while the ledger only watches.
    """

    request: RollbackRequest
    meta: Meta
    external: bool = False
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetRule:
    """Record the fleet's rollback rule, so what the automation may do is itself on record.

    Its values are validated (`ledger.analysis.validate_rule`) before any state is read.
    """

    rule: Rule
    meta: Meta


Command = Deploy | Complete | Fail | Judge | Rollback | SetRule


@dataclass(frozen=True)
class Accepted:
    """The command stands: write `records` (in one transaction, at the head it was decided on)."""

    records: tuple[dict[str, Any], ...]
    plan: RollbackPlan | None = None


@dataclass(frozen=True)
class Refused:
    """A check refused the command: write `record` (the refusal) and nothing else."""

    check: Check
    detail: str
    record: dict[str, Any]


Decision = Accepted | Refused


def check_well_formed(command: Command) -> None:
    """Refuse malformed commands (exit 2, nothing written) before any state is read.

    Identifiers are checked here, before they become lookup keys of the state
    read: a version no record could hold is bad input, never a storage fault.
    """
    command.meta.check()
    check_actor(command.meta.actor)
    if isinstance(command, SetRule):
        validate_rule(**command.rule.to_fields())
        return
    if isinstance(command, Rollback):
        command.request.check_well_formed()
        for what, value in (("--to", command.request.to_version),
                            ("--from-version", command.request.from_version)):
            if value is not None:
                check_version(value, what)
        return
    check_version(command.version)
    from_version = getattr(command, "from_version", None)
    if from_version is not None:
        check_version(from_version, "--from-version")
    if isinstance(command, Fail) and not command.meta.reason:
        raise InputError("a failure needs --reason (why the move failed; it is recorded)")
    if isinstance(command, Judge) and command.verdict is not Verdict.VERIFIED and not command.meta.reason:
        raise InputError(f"{command.verdict.value} needs --reason (why; it is recorded)")
    if isinstance(command, Complete) and command.evidence is not None and not command.evidence.strip():
        raise InputError("--confirm needs the evidence that the fleet is clean")
    if isinstance(command, Deploy) and command.plan is not None:
        if command.plan.workers is not None and command.plan.workers < 1:
            raise InputError(f"--workers must be at least 1, not {command.plan.workers}")
        if command.plan.drain_timeout_s < 1:
            raise InputError(f"--drain-timeout must be at least 1 second, not {command.plan.drain_timeout_s}")


def command_versions(command: Command) -> list[str]:
    """The versions whose entries a decision on `command` reads (beyond the fleet's core)."""
    if isinstance(command, Rollback):
        return [v for v in (command.request.to_version,) if v]
    if isinstance(command, SetRule):
        return []
    return [command.version]


def decide(state: FleetHistory, command: Command) -> Decision:
    """Accept or refuse `command` against the fleet's state at its head."""
    if isinstance(command, Deploy):
        return _deploy(state, command)
    if isinstance(command, Complete):
        return _complete(state, command)
    if isinstance(command, Fail):
        return _fail(state, command)
    if isinstance(command, Judge):
        return _judge(state, command)
    if isinstance(command, SetRule):
        rule: dict[str, Any] = {**command.rule.to_fields()}
        return Accepted((command.meta.body("analysis.rule_set", **rule),))
    return _rollback(state, command)


def refusal(command: Command, check: Check, detail: str) -> Refused:
    """The refusal record of a command: `rollback.rejected` for rollbacks, else `command.rejected`."""
    meta = command.meta
    if isinstance(command, Rollback):
        request = command.request
        body = meta.body("rollback.rejected", result="rejected", reason=request.reason, check=check.value,
                         detail=detail, version=request.to_version, from_version=request.from_version,
                         **command.source)
        return Refused(check, detail, body)
    body = meta.body("command.rejected", result="rejected", command=command_event(command),
                     check=check.value, detail=detail, version=getattr(command, "version", None),
                     from_version=getattr(command, "from_version", None))
    return Refused(check, detail, body)


def command_event(command: Command) -> str:
    """The event an accepted command records (for a move of either kind: the deploy's name)."""
    if isinstance(command, Deploy):
        return "deployment.started"
    if isinstance(command, Judge):
        return command.verdict.value
    if isinstance(command, Rollback):
        return "deployment.rolled_back"
    if isinstance(command, SetRule):
        return "analysis.rule_set"
    kind = command.kind or MoveKind.DEPLOY
    done = isinstance(command, Complete)
    if kind is MoveKind.ROLLBACK:
        return "rollback.completed" if done else "rollback.failed"
    return "deployment.completed" if done else "deployment.failed"


# -- deploys ------------------------------------------------------------------------------


def _deploy(state: FleetHistory, command: Deploy) -> Decision:
    meta, version = command.meta, command.version
    current, flight = state.current, state.in_flight
    if command.from_version is not None and command.from_version != current:
        return refusal(command, Check.FROM_VERSION_MISMATCH,
                       f"the fleet runs {current or 'nothing yet'}, not {command.from_version}")
    records: list[dict[str, Any]] = []
    supersedes = None
    if flight is not None:
        if not command.supersede:
            return refusal(command, Check.ROLLOUT_IN_FLIGHT,
                           f"a {flight.kind.value} to {flight.version} is in flight since seq "
                           f"{flight.seq}; complete or fail it first, or deploy with --supersede")
        supersedes = flight.seq
        ended = meta.body("move.superseded", version=flight.version, move_seq=flight.seq,
                          from_version=flight.from_version, superseded_by=version)
        ended.pop("idempotency_key", None)  # the key names the deploy, recorded next
        records.append(ended)
    elif version == current:
        return refusal(command, Check.TARGET_IS_CURRENT, f"the fleet already runs {version}")
    body = meta.body("deployment.started", version=version, from_version=current,
                     supersedes_seq=supersedes)
    if command.plan is not None:
        body.update(_worker_plan(state, version, command.plan, state.head_seq + 1 + len(records)))
    records.append(body)
    return Accepted(tuple(records))


def _worker_plan(state: FleetHistory, version: str, plan: WorkerPlan, seq: int) -> dict[str, Any]:
    """The workers a driven deploy starts and drains, decided with it and kept in its record.

    New workers: `plan.workers`, or as many as the current version runs (at
    least one). To drain: every live worker of another version.
    """
    current = state.current
    count = plan.workers or max(1, sum(1 for w in state.workers.values() if w.version == current))
    operation_id = f"op{seq}"
    return {
        "operation_id": operation_id,
        "start_workers": [f"{version}-{operation_id}-{i}" for i in range(1, count + 1)],
        "drain_workers": sorted(w.worker_id for w in state.workers.values() if w.version != version),
        "drain_timeout_s": plan.drain_timeout_s,
    }


# -- settling the move in flight ----------------------------------------------------------


def _the_move(state: FleetHistory, command: Complete | Fail) -> Refused | Move:
    """The move in flight, if `command` names it; else the refusal."""
    flight = state.in_flight
    if flight is None:
        return refusal(command, Check.NO_MOVE_IN_FLIGHT,
                       f"no deploy or rollback is in flight in fleet {state.fleet}")
    if command.kind is not None and command.kind is not flight.kind:
        return refusal(command, Check.NOT_THE_MOVE,
                       f"the move in flight is {flight.describe()}, not a {command.kind.value}")
    if command.version != flight.version:
        return refusal(command, Check.NOT_THE_MOVE,
                       f"the move in flight is {flight.describe()}, not to {command.version}")
    if command.from_version is not None and command.from_version != flight.from_version:
        return refusal(command, Check.FROM_VERSION_MISMATCH,
                       f"the {flight.kind.value} in flight leaves {flight.from_version}, "
                       f"not {command.from_version}")
    return flight


def unclean_workers(state: FleetHistory, target: str) -> list[str]:
    """Live workers that keep the fleet from being on `target` alone: other versions, or draining."""
    return sorted(w.worker_id for w in state.workers.values() if w.version != target or w.draining)


def dropped_since_move(state: FleetHistory) -> int:
    """Calls held by workers that exited since the move in flight started (dropped calls)."""
    return sum(w.exited.dropped_sessions for w in state.recent_exits if w.exited is not None)


def _complete(state: FleetHistory, command: Complete) -> Decision:
    found = _the_move(state, command)
    if isinstance(found, Refused):
        return found
    flight, meta = found, command.meta
    dropped = command.dropped_calls if command.dropped_calls is not None else dropped_since_move(state)
    if flight.kind is MoveKind.DEPLOY:
        body = meta.body("deployment.completed", version=command.version, move_seq=flight.seq,
                         dropped_calls=dropped)
        if command.evidence is not None:
            body.update(operator_confirmed=True, evidence=command.evidence)
        return Accepted((body,))
    unclean = unclean_workers(state, command.version)
    confirmed = command.evidence is not None
    if not confirmed and (unclean or not state.workers):
        why = (f"workers not on {command.version} alone: {', '.join(unclean[:10])}" if unclean
               else "no live worker is known to the ledger")
        return refusal(Complete(command.version, meta, MoveKind.ROLLBACK, command.from_version),
                       Check.FLEET_NOT_CLEAN,
                       f"{why}; wait for the fleet, or confirm with evidence (--confirm)")
    body = meta.body("rollback.completed", version=command.version, from_version=flight.from_version,
                     move_seq=flight.seq, rollback_id=_rollback_id(flight), dropped_calls=dropped,
                     live_workers=len(state.workers))
    if confirmed:
        body.update(operator_confirmed=True, evidence=command.evidence)
    return Accepted((body,))


def _fail(state: FleetHistory, command: Fail) -> Decision:
    found = _the_move(state, command)
    if isinstance(found, Refused):
        return found
    flight = found
    if flight.kind is MoveKind.DEPLOY:
        body = command.meta.body("deployment.failed", result="failure", version=command.version,
                                 from_version=flight.from_version, move_seq=flight.seq)
    else:
        body = command.meta.body("rollback.failed", result="failure", version=command.version,
                                 from_version=flight.from_version, move_seq=flight.seq,
                                 rollback_id=_rollback_id(flight))
    return Accepted((body,))


def _rollback_id(flight: Move) -> str:
    """The id `plan_rollback` gave the rollback recorded at `flight.seq`."""
    return f"rb{flight.seq}"


def external_settlement(state: FleetHistory, actor: str, now: datetime) -> Complete | Fail | None:
    """How to settle a rollback the platform carries out, as of `now`; None while it is under way.

    Done when the ledger knows at least one live worker and every live worker
    runs the target and none drains (the bad version's workers have exited);
    failed once its drain timeout has passed without that.
    """
    flight = state.in_flight
    if flight is None or flight.kind is not MoveKind.ROLLBACK or not flight.external:
        return None
    target = flight.version
    unclean = unclean_workers(state, target)
    if state.workers and not unclean:
        return Complete(target, Meta(actor, "fleet clean: every live worker runs the target"),
                        MoveKind.ROLLBACK)
    started = datetime.strptime(str(flight.timestamp), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    timeout = flight.drain_timeout_s or DEFAULT_DRAIN_TIMEOUT_S
    if (now - started).total_seconds() <= timeout:
        return None
    left = ", ".join(unclean[:10]) if unclean else f"no live worker of {target} reported"
    return Fail(target, Meta(actor, f"fleet not clean {timeout}s after the rollback: {left}"),
                MoveKind.ROLLBACK)


# -- verdicts -----------------------------------------------------------------------------


def _judge(state: FleetHistory, command: Judge) -> Decision:
    entry = state.versions.get(command.version)
    if entry is None:
        return refusal(command, Check.VERSION_UNKNOWN,
                       f"version {command.version} never appears in fleet {state.fleet}")
    if command.verdict is Verdict.CLEARED and entry.bad is None:
        return refusal(command, Check.NOT_BAD, f"{command.version} carries no bad mark to clear")
    return Accepted((command.meta.body(command.verdict.value, version=command.version),))


# -- rollbacks ----------------------------------------------------------------------------


def _rollback(state: FleetHistory, command: Rollback) -> Decision:
    decision = plan_rollback(state, command.request)
    if isinstance(decision, Refusal):
        return refusal(command, Check(decision.check), decision.reason)
    body = decision.record(command.request)
    if command.external:
        for name in ("start_workers", "drain_workers"):
            body.pop(name, None)
        body["external"] = True
    body.update(command.source)
    extra = {k: v for k, v in command.meta.extra.items() if k not in body}
    return Accepted(({**extra, **body},), decision)
