"""The one gate through which every fleet decision becomes a record.

`FleetService.submit(fleet, command)` is the only writer of decision and
refusal records (`ledger.events.GATED_EVENTS`): the CLI, the Python API, the
executor's own settlements, the OpenRTC sink and the importer all come here.
It reads the fleet's state at the chain head from a `StateSource` (the
projections, caught up), decides with the pure `ledger.decide.decide`, and
appends the result with `expect_seq` set to that head and `policy_seq` set to
the policy position it was decided against: if another writer got there first
(a fleet record, or a policy change such as a revocation) the append fails
cleanly and the command is decided again on the new heads, so no decision ever
rests on stale history or a superseded policy.

A repeated idempotency key returns the first result and writes nothing; keys
count only on records this gate wrote (a fact carrying one claims nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.actors import ActorSigner
from ledger.analysis import RULE_FIELDS, Rule
from ledger.api import Ledger, Receipt
from ledger.approvals import PENDING, Request
from ledger.authority import AnyCommand, Attestation, Authority, command_action, command_arguments
from ledger.decide import (
    Accepted,
    Command,
    Complete,
    Decision,
    Deploy,
    Fail,
    Judge,
    Meta,
    Refused,
    Rollback,
    SetRule,
    Verdict,
    WorkerPlan,
    check_well_formed,
    command_event,
    command_versions,
    decide,
    refusal,
)
from ledger.envelope import DEFAULT_EXPIRY_MINUTES, SignedEnvelope, seal_envelope
from ledger.errors import HeadMovedError, InputError, RecordError, UnknownFleetError
from ledger.events import GATE_COMMANDS, GATED_EVENTS, Check, check_fleet_name
from ledger.model import MoveKind
from ledger.policy import POLICY_CHAIN, Policy, PolicyEvent
from ledger.policy_decide import (
    PolicyCommand,
    check_policy_well_formed,
    decide_policy,
    policy_event,
    policy_refusal,
)
from ledger.rollback import RollbackPlan, RollbackRequest, decision_from_record
from ledger.rules import FleetHistory

#: The policy chain's records: never submitted as fleet decisions.
POLICY_EVENTS = frozenset(e.value for e in PolicyEvent)
#: Decisions taken again after the head moved, before giving up.
MAX_DECISIONS = 20


class StateSource(Protocol):
    """Where the gate reads a fleet's state: caught up to the ledger's head when asked."""

    def fleet_state(self, fleet: str) -> FleetHistory:
        """The fleet's whole state, consistent with its chain's head at the time of the call."""

    def decision_state(self, fleet: str, target: str | None = None) -> FleetHistory:
        """The state a rollback to `target` (default: the last-good version) reads, at a
        cost that does not grow with the fleet's history."""

    def command_state(self, fleet: str, versions: Sequence[str]) -> FleetHistory:
        """The fleet's core state (current version, move in flight, workers) and the
        entries of `versions` only: what a deploy, settlement or verdict reads."""


@dataclass(frozen=True)
class Outcome:
    """What the gate did with a command: the decision, where it was recorded, and
    whether it is the replay of an earlier attempt with the same idempotency key."""

    decision: Decision
    receipts: tuple[Receipt, ...]
    replayed: bool = False

    @property
    def accepted(self) -> bool:
        return isinstance(self.decision, Accepted)

    @property
    def receipt(self) -> Receipt:
        """Where the decision's main record (the last one written) landed."""
        return self.receipts[-1]

    @property
    def check(self) -> Check | None:
        return self.decision.check if isinstance(self.decision, Refused) else None


class FleetService:
    """Decide commands against the fleet's state at the head, and record them."""

    def __init__(self, ledger: Ledger, states: StateSource, signer: ActorSigner | None = None):
        self.ledger = ledger
        self.states = states
        #: Who signs this process's commands when a call names no signer (the CLI's --actor-key).
        self.signer = signer
        #: How long an envelope signed here stays valid.
        self.expiry_minutes = DEFAULT_EXPIRY_MINUTES
        self.authority = Authority(ledger)

    # -- reading the state a decision needs --------------------------------------------------

    def state_for(self, fleet: str, command: Command) -> FleetHistory:
        """The state `command` is decided on; an unknown fleet is empty for a deploy only."""
        try:
            if isinstance(command, Rollback):
                return self.states.decision_state(fleet, command.request.to_version)
            return self.states.command_state(fleet, command_versions(command))
        except UnknownFleetError:
            if isinstance(command, Deploy):
                return FleetHistory(fleet)
            raise

    def preview(self, fleet: str, command: Command) -> Decision:
        """Decide without writing (a dry run)."""
        check_fleet_name(fleet)
        check_well_formed(command)
        _check_fleet(fleet, command)
        return decide(self.state_for(fleet, command), command)

    # -- the write ---------------------------------------------------------------------------

    def submit(self, fleet: str, command: Command, *, signer: ActorSigner | None = None,
               signed: SignedEnvelope | None = None) -> Outcome:
        """Decide `command` at the head and record the decision (or the refusal).

        In an enforced ledger the command must be signed: by `signer` (or the
        service's own), or as an envelope signed elsewhere (`signed`). A command
        the policy wants approved is recorded as a pending request (`approve`).
        """
        check_fleet_name(fleet)
        check_well_formed(command)
        _check_fleet(fleet, command)
        for _ in range(MAX_DECISIONS):
            state = self.state_for(fleet, command)
            replay = self._replay(fleet, state, command)
            if replay is not None:
                return replay
            policy = self.authority.policy()
            if policy.enforced and signed is None:
                signed = self.sign(fleet, command, signer)
            decision, bodies = self.decide_at(fleet, command, signed, state.head_seq, policy, state)
            try:
                receipts = self.ledger.append_gated(fleet, bodies, expect_seq=state.head_seq,
                                                   policy_seq=policy.seq)
            except HeadMovedError:
                continue  # someone wrote meanwhile (the fleet or the policy): decide again
            return Outcome(decision, tuple(receipts))
        raise HeadMovedError(f"fleet {fleet} kept moving; gave up after {MAX_DECISIONS} decisions")

    def decide_at(self, chain: str, command: Command | PolicyCommand, signed: SignedEnvelope | None,
                head_seq: int, policy: Policy, state: FleetHistory | None, *,
                request: Request | None = None, approvals: Sequence[Mapping[str, Any]] | None = None,
                ) -> tuple[Decision, list[dict[str, Any]]]:
        """Who asks, then what: the decision at `head_seq` and the records that state it.

        A command the policy wants approved becomes a pending request, unless it is the
        `request` being decided with its `approvals`.
        """
        attestation = self.authority.check(
            chain, command, signed, head_seq, policy, approvals=approvals,
            request_seq=request.seq if request else None,
            requested_at=request.requested_at if request else None)
        failed = attestation.check if attestation is not None else None
        if failed is Check.APPROVAL_MISSING and request is None:
            decision: Decision = pending(command, policy, head_seq + 1)
        elif failed is not None:
            assert attestation is not None
            decision = (refusal(command, failed, attestation.detail) if isinstance(command, Command)
                        else policy_refusal(command, failed, attestation.detail))
        elif isinstance(command, Command):
            assert state is not None
            decision = decide(state, command)
        else:
            decision = decide_policy(policy, command)
        return decision, _attested(decision, attestation)

    def sign(self, chain: str, command: AnyCommand,
             signer: ActorSigner | None = None) -> SignedEnvelope | None:
        """The envelope of `command` signed by `signer` (or the service's), if there is one."""
        who = signer or self.signer
        if who is None:
            return None
        if who.name != command.meta.actor:
            who = who.as_actor(command.meta.actor)  # the key decides whether the claim holds
        return seal_envelope(who, ledger=self.ledger.ledger_id, fleet=chain,
                             action=command_action(command).value, args=command_arguments(command),
                             minutes=self.expiry_minutes)

    def submit_policy(self, command: PolicyCommand, *, signer: ActorSigner | None = None,
                      signed: SignedEnvelope | None = None) -> Outcome:
        """Decide a change of the policy at the head of `@policy`, and record it (or its refusal).

        In an enforced ledger it must be signed by an actor the policy allows
        (`actors` or `policy` action); in an open one the ledger's key vouches.
        """
        check_policy_well_formed(command)
        for _ in range(MAX_DECISIONS):
            policy = self.authority.policy()
            if policy.enforced and signed is None:
                signed = self.sign(POLICY_CHAIN, command, signer)
            decision, bodies = self.decide_at(POLICY_CHAIN, command, signed, policy.seq, policy, None)
            try:
                receipts = self.ledger.append_policy(bodies, expect_seq=policy.seq)
            except HeadMovedError:
                continue
            return Outcome(decision, tuple(receipts))
        raise HeadMovedError(f"{POLICY_CHAIN} kept moving; gave up after {MAX_DECISIONS} decisions")

    def report(self, fleet: str, body: Mapping[str, Any], *, signer: ActorSigner | None = None,
               signed: SignedEnvelope | None = None) -> Outcome:
        """Append a fact, signed by a reporter bound to its worker in an enforced ledger
        (`ledger.consent.report`)."""
        from ledger.consent import report  # the consent paths build on this gate

        return report(self, fleet, body, signer=signer, signed=signed)

    def approve(self, chain: str, request_seq: int, meta: Meta, *, signer: ActorSigner | None = None,
                signed: SignedEnvelope | None = None) -> Outcome:
        """Record a signed approval of the pending request at `chain` seq `request_seq`; the last
        one needed decides it (`ledger.consent.approve`)."""
        from ledger.consent import approve

        return approve(self, chain, request_seq, meta, signer=signer, signed=signed)

    def check_key(self, fleet: str, command: Command) -> None:
        """Refuse (InputError) a command whose idempotency key a different command used.

        `submit` checks this too, at the moment it decides; a caller writing several
        records in a row (`ledger append --file`) checks every key first, so that a bad
        key stops the run before anything is written.
        """
        key = _idempotency_key(command)
        if not key:
            return
        try:
            state = self.state_for(fleet, command)
        except UnknownFleetError:
            return
        self._replay(fleet, state, command)

    def _replay(self, fleet: str, state: FleetHistory, command: Command) -> Outcome | None:
        """A repeated idempotency key returns the first result and writes nothing."""
        key = _idempotency_key(command)
        first = state.idempotency.get(key) if key else None
        if first is None:
            return None
        record = next(self.ledger.records(fleet, after=first - 1), None)
        if record is None:
            return None
        wanted = _events_of(command)
        event = record["event"]
        if event not in wanted and record.get("command") not in wanted:
            raise InputError(f"idempotency key {key!r} was used by a {event} record at seq "
                             f"{record['seq']}, not by this command; choose another key")
        receipt = Receipt(fleet, record["seq"], record["hash"])
        return Outcome(_decision_of(record), (receipt,), replayed=True)

    # -- requests that arrive as records ----------------------------------------------------

    def submit_record(self, fleet: str, body: Mapping[str, Any]) -> Outcome:
        """Decide a decision that arrives as a record body (`ledger append`, an import)."""
        return self.submit(fleet, command_from_record(fleet, body))


def pending(command: Command | PolicyCommand, policy: Policy, seq: int) -> Refused:
    """The record of a command that waits for approvals: `command.pending` at `seq`."""
    needed = policy.approvers_needed(command_action(command))
    if isinstance(command, Command):
        event = command_event(command)
        version = command.request.to_version if isinstance(command, Rollback) else getattr(
            command, "version", None)
    else:
        event, version = policy_event(command), None
    detail = (f"{command_action(command).value} needs the approval of {needed} other actor(s): "
              f"request recorded at seq {seq}, approve it with `ledger approve {seq}`")
    body = command.meta.body(PENDING, target="fleet" if isinstance(command, Command) else "policy",
                             command=event, check=Check.APPROVAL_MISSING.value, detail=detail,
                             version=version)
    body["result"] = "pending"
    body.pop("idempotency_key", None)  # the key names the decision, recorded once approved
    return Refused(Check.APPROVAL_MISSING, detail, body)


def _attested(decision: Decision, attestation: Attestation | None) -> list[dict[str, Any]]:
    """The records to write: the decision's, its main (last) record carrying who signed it."""
    bodies = [dict(b) for b in (decision.records if isinstance(decision, Accepted) else (decision.record,))]
    if attestation is not None:
        bodies[-1].update(attestation.fields)
    return bodies


def _check_fleet(fleet: str, command: Command) -> None:
    if isinstance(command, Rollback) and command.request.fleet != fleet:
        raise InputError(f"the rollback request names fleet {command.request.fleet}, not {fleet}")


def _idempotency_key(command: Command) -> str | None:
    if isinstance(command, Rollback):
        return command.meta.idempotency_key or command.request.idempotency_key
    return command.meta.idempotency_key


def _events_of(command: Command) -> set[str]:
    """The records an accepted or refused `command` may have written."""
    if isinstance(command, Rollback):
        return {"deployment.rolled_back", "rollback.rejected"}
    if isinstance(command, Complete | Fail) and command.kind is None:
        done = isinstance(command, Complete)
        return {"deployment.completed" if done else "deployment.failed",
                "rollback.completed" if done else "rollback.failed"}
    return {command_event(command)}


def _decision_of(record: Mapping[str, Any]) -> Decision:
    """The decision a gate-written record states."""
    if record["event"] in ("rollback.rejected", "command.rejected"):
        return Refused(Check(record["check"]), str(record.get("detail", record.get("reason", ""))),
                       dict(record))
    plan = decision_from_record(dict(record)) if record["event"] == "deployment.rolled_back" else None
    return Accepted((dict(record),), plan if isinstance(plan, RollbackPlan) else None)


# -- decision bodies as commands ---------------------------------------------------------------

#: Fields of a decision body that become a command's arguments rather than extras.
_ARGUMENTS = frozenset({
    "event", "actor", "target", "result", "version", "from_version", "reason", "idempotency_key",
    "evidence", "dropped_calls",
})
_RESULT = {"deployment.failed": "failure", "rollback.failed": "failure"}


def command_from_record(fleet: str, body: Mapping[str, Any]) -> Command:
    """The command a decision record body asks for, so it can pass the gate like any other.

    Fields the ledger computes when it decides (a rollback's plan, its id, a
    refusal's check) are refused: a caller states what it wants, the gate
    decides what that means. Refusal records cannot be submitted at all.
    """
    event = body.get("event")
    if event not in GATED_EVENTS:
        raise RecordError(f"'{event}' is not a decision")
    if event in ("rollback.rejected", "command.rejected"):
        raise RecordError(f"'{event}' records are written by the ledger when it refuses a command; "
                          "submit the command itself")
    ledger_validated = Ledger.validate(body, gated=True)  # its schema, before anything is read
    result = ledger_validated.get("result", "success")
    if result != _RESULT.get(str(event), "success"):
        raise RecordError(f"field 'result' of a {event} is set by the ledger, not {result!r}")
    extra = {k: v for k, v in ledger_validated.items() if k not in _ARGUMENTS}
    target = ledger_validated.get("target")
    if target is not None and target != "fleet":
        extra["target"] = target
    meta = Meta(ledger_validated["actor"], ledger_validated.get("reason"),
                ledger_validated.get("idempotency_key"), extra)
    version = str(ledger_validated.get("version", ""))
    from_version = ledger_validated.get("from_version")
    if event == "analysis.rule_set":
        fields = {name: ledger_validated[name] for name in RULE_FIELDS}
        meta = Meta(meta.actor, meta.reason, meta.idempotency_key,
                    {k: v for k, v in extra.items() if k not in RULE_FIELDS})
        return SetRule(Rule(**fields), meta)
    if event == "deployment.started":
        return Deploy(version, meta, from_version=from_version)
    if event in ("deployment.completed", "rollback.completed"):
        kind = MoveKind.DEPLOY if event == "deployment.completed" else MoveKind.ROLLBACK
        return Complete(version, meta, kind, from_version, ledger_validated.get("dropped_calls"),
                        ledger_validated.get("evidence"))
    if event in ("deployment.failed", "rollback.failed"):
        kind = MoveKind.DEPLOY if event == "deployment.failed" else MoveKind.ROLLBACK
        return Fail(version, meta, kind, from_version)
    if event in ("version.verified", "version.marked_bad", "version.cleared"):
        return Judge(Verdict(event), version, meta)
    if event in POLICY_EVENTS:
        raise RecordError(f"'{event}' is a change of the policy; it is decided by {GATE_COMMANDS[event]}")
    if event == "deployment.rolled_back":
        request = RollbackRequest(fleet=fleet, actor=meta.actor, reason=meta.reason or "",
                                  to_version=version, from_version=from_version,
                                  idempotency_key=meta.idempotency_key)
        return Rollback(request, meta)
    raise RecordError(f"'{event}' is decided by `ledger deploy --supersede`; it cannot be submitted")


__all__ = [
    "Accepted",
    "Complete",
    "Deploy",
    "Fail",
    "FleetService",
    "Judge",
    "Meta",
    "MoveKind",
    "Outcome",
    "Refused",
    "Rollback",
    "RollbackRequest",
    "SetRule",
    "StateSource",
    "Verdict",
    "WorkerPlan",
    "command_from_record",
]
