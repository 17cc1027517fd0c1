"""Two-person control: commands that wait for other actors' signed approvals.

When the policy says an action needs approvals (a forced rollback, clearing a
bad mark, a change of the policy), the gate records the requester's signed
command as `command.pending` instead of deciding it. Each approval is the
approver's own signed envelope naming the request by position and hash
(`command.approved`), so an approval cannot be moved to another request. The
requester never counts, nor does anyone twice. When the last approval needed
arrives, the gate decides the original command, as its requester signed it,
against the state at that moment, and its record lists every approval with its
signature, so that `verify` can check the whole chain of consent at the
decision itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.analysis import Rule
from ledger.api import Ledger
from ledger.decide import (
    Command,
    Complete,
    Deploy,
    Fail,
    Judge,
    Meta,
    Rollback,
    SetRule,
    Verdict,
    WorkerPlan,
)
from ledger.envelope import Envelope, SignedEnvelope
from ledger.errors import InputError
from ledger.keys import parse_public_key
from ledger.model import MoveKind
from ledger.policy import Action
from ledger.policy_decide import AddActor, EnablePolicy, GrantRole, PolicyCommand, RevokeActor, RevokeKey
from ledger.rollback import RollbackRequest

PENDING = "command.pending"
APPROVED = "command.approved"


@dataclass(frozen=True)
class Approve:
    """An actor approves the pending request at `request_seq` of `chain` (whose hash is `request_hash`)."""

    chain: str
    request_seq: int
    request_hash: str
    meta: Meta

    def arguments(self) -> dict[str, Any]:
        return {"request_seq": self.request_seq, "request_hash": self.request_hash}


@dataclass(frozen=True)
class Request:
    """A pending command as recorded, with the approvals recorded after it so far."""

    chain: str
    seq: int
    hash: str
    signed: SignedEnvelope
    command: Command | PolicyCommand
    action: Action
    approvals: tuple[Mapping[str, Any], ...]
    timestamp: str

    @property
    def requested_at(self) -> datetime:
        """When the request was recorded: its envelope's expiry counts from here."""
        return datetime.strptime(self.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)

    @property
    def requester(self) -> str:
        return self.signed.envelope.actor

    def approvers(self) -> set[str]:
        return {str(a["actor"]) for a in self.approvals}


def approval_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a decision keeps of one approval: who, with which key, the envelope and signature."""
    return {"actor": record["actor"], "actor_kid": record["actor_kid"], "actor_sig": record["actor_sig"],
            "envelope": record["envelope"]}


def read_request(ledger: Ledger, chain: str, seq: int) -> Request:
    """The pending request at `chain` seq `seq`; InputError if there is none or it was decided."""
    first = next(ledger.records(chain, after=seq - 1), None) if seq >= 1 else None
    if first is None or first.get("seq") != seq or first.get("event") != PENDING:
        raise InputError(f"{chain} seq {seq} is not a pending request")
    signed = SignedEnvelope.parse(first)
    approvals: list[Mapping[str, Any]] = []
    for record in ledger.records(chain, after=seq):
        if record.get("request_seq") != seq:
            continue
        if record.get("event") == APPROVED:
            approvals.append(approval_entry(record))
        elif record.get("event") != "command.rejected":  # the decision of the request
            raise InputError(f"the request at {chain} seq {seq} was decided at seq {record['seq']}")
    envelope = signed.envelope
    return Request(chain, seq, str(first["hash"]), signed, command_from_envelope(envelope),
                   Action(envelope.action), tuple(approvals), str(first["timestamp"]))


def _meta(envelope: Envelope, args: Mapping[str, Any]) -> Meta:
    return Meta(envelope.actor, args.get("reason"), args.get("idempotency_key"),
                dict(args.get("extra") or {}))


def command_from_envelope(envelope: Envelope) -> Command | PolicyCommand:
    """The command an envelope states (the inverse of `ledger.authority.command_arguments`)."""
    args, action = envelope.args, Action(envelope.action)
    meta = _meta(envelope, args)
    kind = MoveKind(args["kind"]) if args.get("kind") else None
    if action in (Action.DEPLOY, Action.SUPERSEDE):
        plan = args.get("plan")
        return Deploy(args["version"], meta, args.get("from_version"), bool(args.get("supersede")),
                      WorkerPlan(plan.get("workers"), plan["drain_timeout_s"]) if plan else None)
    if action is Action.COMPLETE:
        return Complete(args["version"], meta, kind, args.get("from_version"), args.get("dropped_calls"),
                        args.get("evidence"))
    if action is Action.FAIL:
        return Fail(args["version"], meta, kind, args.get("from_version"))
    if action in (Action.MARK, Action.CLEAR):
        return Judge(Verdict(args["verdict"]), args["version"], meta)
    if action in (Action.ROLLBACK, Action.FORCE):
        request = dict(args["request"])
        return Rollback(RollbackRequest(fleet=envelope.fleet, actor=envelope.actor, **request), meta,
                        bool(args.get("external")), dict(args.get("source") or {}))
    if action is Action.RULE:
        return SetRule(Rule(**args["rule"]), meta)
    if action is Action.ACTORS:
        if "keys" in args:
            return AddActor(args["name"], tuple(parse_public_key(k) for k in args["keys"]),
                            tuple(args["roles"]), meta, tuple(args.get("workers") or ()))
        if "key_id" in args:
            return RevokeKey(args["name"], args["key_id"], meta)
        return RevokeActor(args["name"], meta)
    if action is Action.POLICY:
        if "role" in args:
            return GrantRole(args["role"], tuple(Action(a) for a in args["actions"]), tuple(args["fleets"]),
                             meta)
        if "admin" in args:
            raise InputError("a bootstrap of the policy is never a pending request")
        return EnablePolicy(meta, args["persons"], tuple(Action(a) for a in args["approval_actions"]))
    raise InputError(f"action {action.value} cannot be a pending request")
