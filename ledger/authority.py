"""Who asks: the gate's checks of a signed command in enforced mode.

In an enforced ledger every decision must come with an envelope signed by
the actor it names (`ledger.envelope`). Before the fleet's own checks, the gate
asks `Authority.check`, which checks in this order and stops at the first
failure, naming it:

1. the envelope is there at all (`actor_unsigned`) and states exactly this
   command: ledger, fleet, action, arguments, actor (`envelope_mismatch`);
2. the key that signed is one of the actor's registered keys
   (`actor_key_unknown`), and the signature verifies under it (`actor_signature`);
3. the key and the actor are not revoked (`actor_key_revoked`);
4. the nonce was never used in this chain by a verified command (`nonce_reused`);
5. the envelope has not expired (`envelope_expired`);
6. a role of the actor allows the action on the fleet (`role_denied`);
7. the approvals the policy asks for are there (`approval_missing`).

Each failure becomes a recorded refusal. A claim that fails 1-5 is recorded
with `actor_verified: false`: the name is what someone claimed, never proven.
A command that passes is recorded with the envelope, the key id, the actor's
signature and the policy position it was decided against (`policy_seq`).

Nonces are remembered per chain (an envelope names its fleet, so it is
valid in one chain only); since no envelope lives longer than
`MAX_EXPIRY_MINUTES`, only that window of the chain needs reading, and the
append at the head the nonces were read at makes the check and the write one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ledger.api import Ledger
from ledger.approvals import Approve
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
)
from ledger.envelope import MAX_EXPIRY_MINUTES, SignedEnvelope
from ledger.events import Check
from ledger.policy import POLICY_CHAIN, Action, Policy, fold
from ledger.policy_decide import PolicyCommand, policy_action, policy_arguments
from ledger.store import stored_bytes

#: Checks after which the claimed actor is not proven to have asked for this.
UNPROVEN = frozenset({Check.ACTOR_UNSIGNED, Check.ENVELOPE_MISMATCH, Check.ACTOR_KEY_UNKNOWN,
                      Check.ACTOR_SIGNATURE, Check.ACTOR_KEY_REVOKED, Check.NONCE_REUSED,
                      Check.ENVELOPE_EXPIRED})
_VERIFIED_MARK = b'"actor_verified":true'
_PAGE = 2000


@dataclass(frozen=True)
class Report:
    """A fact about a worker, as a reporter bound to that worker signs it (`body` without `actor`)."""

    body: Mapping[str, Any]
    meta: Meta


AnyCommand = Command | PolicyCommand | Approve | Report


def command_action(command: AnyCommand) -> Action:
    """The action a command asks for, as roles grant it."""
    if isinstance(command, Approve):
        return Action.APPROVE
    if isinstance(command, Report):
        return Action.REPORT
    if isinstance(command, Deploy):
        return Action.SUPERSEDE if command.supersede else Action.DEPLOY
    if isinstance(command, Complete):
        return Action.COMPLETE
    if isinstance(command, Fail):
        return Action.FAIL
    if isinstance(command, Judge):
        return Action.CLEAR if command.verdict is Verdict.CLEARED else Action.MARK
    if isinstance(command, Rollback):
        return Action.FORCE if command.request.force_bad_target else Action.ROLLBACK
    if isinstance(command, SetRule):
        return Action.RULE
    return policy_action(command)


def _plain(value: Any) -> Any:
    """A command's value as canonical JSON values: dataclasses as objects, enums as their value,
    absent (None) fields left out."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def command_arguments(command: AnyCommand) -> dict[str, Any]:
    """Everything a command says besides who asks, as the actor signs it."""
    if isinstance(command, Approve):
        return command.arguments()
    if isinstance(command, Report):
        return {k: v for k, v in command.body.items() if k != "actor"}
    if not isinstance(command, Deploy | Complete | Fail | Judge | Rollback | SetRule):
        return policy_arguments(command)
    args = _plain(command)
    meta = args.pop("meta")
    meta.pop("actor", None)
    if not meta.get("extra"):
        meta.pop("extra", None)
    args.update(meta)
    if isinstance(command, Rollback):
        request = args["request"]
        request.pop("fleet", None)
        request.pop("actor", None)
        if not args.get("source"):
            args.pop("source", None)
    return dict(args)


@dataclass(frozen=True)
class Attestation:
    """What the gate learned about who asks: the record fields, and the refusal if any."""

    fields: Mapping[str, Any]
    check: Check | None = None
    detail: str = ""


@dataclass
class _Nonces:
    """The verified nonces of one chain, read up to position `seq`."""

    seq: int = 0
    used: dict[str, int] = field(default_factory=dict)


class Authority:
    """The policy at the head of `@policy`, and the checks of signed commands against it."""

    def __init__(self, ledger: Ledger, now: Callable[[], datetime] | None = None):
        self.ledger = ledger
        self._policy = Policy()
        self._nonces: dict[str, _Nonces] = {}
        self._now = now or (lambda: datetime.now(UTC))

    # -- reading -----------------------------------------------------------------------------

    def policy(self) -> Policy:
        """The policy at the head of the policy chain (read incrementally)."""
        records = list(self.ledger.records(POLICY_CHAIN, after=self._policy.seq))
        if records:
            self._policy = fold(records, self._policy)
        return self._policy

    def nonce_seq(self, fleet: str, nonce: str, head_seq: int) -> int | None:
        """Where a verified command of `fleet` used `nonce`, among records up to `head_seq`."""
        index = self._nonces.get(fleet)
        if index is None:
            index = self._nonces[fleet] = _Nonces(self._window_start(fleet, head_seq))
        if head_seq < index.seq:  # pragma: no cover - a chain never shrinks
            index.seq, index.used = self._window_start(fleet, head_seq), {}
        if index.seq < head_seq:
            for data in self.ledger.raw_records(fleet, after=index.seq):
                record_seq = index.seq + 1
                if _VERIFIED_MARK in data:
                    record = orjson.loads(data)
                    record_seq = int(record["seq"])
                    envelope = record.get("envelope")
                    # Only the gate writes `actor_verified` (a raw append of it is refused).
                    if record.get("actor_verified") is True and isinstance(envelope, dict):
                        index.used[str(envelope.get("nonce"))] = record_seq
                index.seq = record_seq
                if index.seq >= head_seq:
                    break
        return index.used.get(nonce)

    def _window_start(self, fleet: str, head_seq: int) -> int:
        """A position before which no envelope still unexpired can have been used."""
        cutoff = (self._now() - timedelta(minutes=MAX_EXPIRY_MINUTES + 5)).strftime("%Y-%m-%dT%H:%M:%S")
        start = head_seq
        while start > 0:
            probe = max(0, start - _PAGE)
            rows = self.ledger.store.page(fleet, probe, 1)
            if not rows:
                break
            stamp = str(orjson.loads(stored_bytes(rows[0].state)).get("timestamp", ""))
            if stamp < cutoff:
                return probe
            start = probe
        return 0

    # -- checking ----------------------------------------------------------------------------

    def check(self, chain: str, command: AnyCommand, signed: SignedEnvelope | None,
              head_seq: int, policy: Policy | None = None, *,
              approvals: Sequence[Mapping[str, Any]] | None = None, request_seq: int | None = None,
              requested_at: datetime | None = None, role_action: Action | None = None,
              ) -> Attestation | None:
        """None in open mode; else what the record must carry, and the failed check if any.

        For a pending request being decided (`request_seq`), its nonce was first used by
        the request itself and its expiry counts at the request (`requested_at`).
        An approval's role check is for the action approved (`role_action`).
        """
        policy = policy or self.policy()
        if not policy.enforced:
            return None
        base: dict[str, Any] = {"actor_verified": False, "policy_seq": policy.seq}
        if signed is None:
            return Attestation(base, Check.ACTOR_UNSIGNED,
                               f"the policy is enforced: {command.meta.actor} must sign the command "
                               "(--actor-key or LEDGER_ACTOR_KEY)")
        fields = {**base, **signed.fields()}
        envelope = signed.envelope
        action = command_action(command)
        expected = (self.ledger.ledger_id, chain, action.value, command_arguments(command),
                    command.meta.actor)
        stated = (envelope.ledger, envelope.fleet, envelope.action, dict(envelope.args), envelope.actor)
        if expected != stated:
            names = ("ledger", "fleet", "action", "arguments", "actor")
            which = next(n for n, a, b in zip(names, expected, stated, strict=True) if a != b)
            return Attestation(fields, Check.ENVELOPE_MISMATCH,
                               f"the signed envelope states another {which} than this command")
        actor = policy.actor(envelope.actor)
        key = actor.keys.get(signed.kid) if actor is not None else None
        if actor is None or key is None:
            return Attestation(fields, Check.ACTOR_KEY_UNKNOWN,
                               f"key {signed.kid} is not a registered key of actor {envelope.actor}")
        if not signed.verifies_under(key.public_raw):
            return Attestation(fields, Check.ACTOR_SIGNATURE,
                               f"the signature is not {envelope.actor}'s (key {signed.kid}) over this "
                               "envelope")
        if actor.key_in_force(signed.kid) is None:
            what = "actor" if actor.revoked_seq is not None else "key"
            at = actor.revoked_seq if actor.revoked_seq is not None else key.revoked_seq
            return Attestation(fields, Check.ACTOR_KEY_REVOKED,
                               f"the {what} was revoked at {POLICY_CHAIN} seq {at}")
        used = self.nonce_seq(chain, envelope.nonce, head_seq)
        if used is not None and used != request_seq:
            return Attestation(fields, Check.NONCE_REUSED,
                               f"nonce {envelope.nonce} was used at {chain} seq {used}")
        if envelope.expired(requested_at or self._now()):
            return Attestation(fields, Check.ENVELOPE_EXPIRED, f"the envelope expired at {envelope.expires}")
        fields["actor_verified"] = True
        if request_seq is not None:
            fields["request_seq"] = request_seq
        allowed = role_action or action
        if not policy.allows(envelope.actor, allowed, chain):
            return Attestation(fields, Check.ROLE_DENIED,
                               f"no role of {envelope.actor} allows {allowed.value} on {chain}")
        needed = policy.approvers_needed(action)
        given = [dict(a) for a in approvals or ()]
        if approvals is not None:
            fields["approvals"] = given
        if len({a["actor"] for a in given} - {envelope.actor}) < needed:
            return Attestation(fields, Check.APPROVAL_MISSING,
                               f"{action.value} needs the approval of {needed} other actor(s)")
        return Attestation(fields)

