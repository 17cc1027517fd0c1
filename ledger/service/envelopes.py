"""Actor-signed requests over HTTP: the envelope fields a body carries, read and made.

Over HTTP the signature is the credential: the bearer token only lets a
client reach the gate, and in an enforced ledger the gate believes nothing
but an actor's signature over the command envelope. So a client signs the
envelope itself, with its own key, and sends it beside the request in the
three fields a record stores it under: `envelope`, `actor_kid`, `actor_sig`.
The server never sees a private key and never signs on anyone's behalf.

The envelope a client signs must be exactly the one the gate expects for the
request it posts (same ledger, fleet, action and arguments), so both sides
build the command from the body with the same code (`bodies.command_from_body`)
and derive the envelope's action and arguments from it as the CLI does
(`ledger.authority`). A body whose envelope is malformed is refused here, as
bad input, before anything is written; a well-formed envelope that states
another request, or whose signature, key, nonce, expiry or role fails, is the
gate's to refuse and record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.actors import ActorSigner
from ledger.approvals import Approve
from ledger.authority import AnyCommand, Report, command_action, command_arguments
from ledger.decide import Meta
from ledger.envelope import DEFAULT_EXPIRY_MINUTES, SignedEnvelope, seal_envelope
from ledger.errors import InputError
from ledger.service.bodies import command_from_body

#: The fields of a body (and of the record it becomes) that carry the actor's signed envelope.
SIGNED_FIELDS = ("envelope", "actor_kid", "actor_sig")
_APPROVAL_FIELDS = {"request_seq", "request_hash", "actor", "reason", *SIGNED_FIELDS}


def split_signed(body: Mapping[str, Any], where: str = "the body"
                 ) -> tuple[dict[str, Any], SignedEnvelope | None]:
    """The body without its envelope fields, and the signed envelope it carries (None if unsigned).

    InputError (one line) when only some of the three fields are there or one is malformed.
    """
    present = [name for name in SIGNED_FIELDS if name in body]
    rest = {k: v for k, v in body.items() if k not in SIGNED_FIELDS}
    if not present:
        return rest, None
    if len(present) < len(SIGNED_FIELDS):
        missing = [name for name in SIGNED_FIELDS if name not in body]
        raise InputError(f"{where} carries {present[0]!r} but not {missing[0]!r}: a signed request "
                         f"carries all of {', '.join(SIGNED_FIELDS)}")
    return rest, SignedEnvelope.parse(body, f"{where}'s signed envelope")


@dataclass(frozen=True)
class ApprovalRequest:
    """A parsed approval body: which pending request, who approves, and their signed envelope."""

    request_seq: int
    meta: Meta
    signed: SignedEnvelope | None


def approval_from_body(body: object) -> ApprovalRequest:
    """`{"request_seq": N, "actor": "...", "reason": "...", <envelope fields>}`; InputError if malformed.

    `request_hash` may be sent too (the client signed it); the gate checks the
    envelope names the request's real hash, so it is not read here.
    """
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    unknown = sorted(set(body) - _APPROVAL_FIELDS)
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} for an approval "
                         f"(allowed: {', '.join(sorted(_APPROVAL_FIELDS))})")
    rest, signed = split_signed(body)
    seq, actor, reason = rest.get("request_seq"), rest.get("actor"), rest.get("reason")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InputError("an approval needs 'request_seq': the pending request's seq (a positive integer)")
    if not isinstance(actor, str):
        raise InputError("an approval needs 'actor' (a string)")
    if reason is not None and not isinstance(reason, str):
        raise InputError("field 'reason' must be a string")
    meta = Meta(actor, reason)
    meta.check()
    return ApprovalRequest(seq, meta, signed)


# -- the client's side: sealing a body ---------------------------------------------------------


def _seal(signer: ActorSigner, ledger_id: str, fleet: str, command: AnyCommand,
          minutes: int) -> dict[str, Any]:
    if signer.name != command.meta.actor:
        raise InputError(f"the body names actor {command.meta.actor!r} but the key signs as {signer.name!r}")
    signed = seal_envelope(signer, ledger=ledger_id, fleet=fleet, action=command_action(command).value,
                           args=command_arguments(command), minutes=minutes)
    return signed.fields()


def sign_command(signer: ActorSigner, ledger_id: str, fleet: str, body: Mapping[str, Any], *,
                 minutes: int = DEFAULT_EXPIRY_MINUTES) -> dict[str, Any]:
    """`body` (a `/commands` body naming `signer` as its actor) with the envelope fields added."""
    plain = {k: v for k, v in body.items() if k not in SIGNED_FIELDS}
    command = command_from_body(fleet, plain).command
    return {**plain, **_seal(signer, ledger_id, fleet, command, minutes)}


def sign_report(signer: ActorSigner, ledger_id: str, fleet: str, body: Mapping[str, Any], *,
                minutes: int = DEFAULT_EXPIRY_MINUTES) -> dict[str, Any]:
    """A worker fact (naming `signer` as its actor) with the envelope fields of its reporter."""
    plain = {k: v for k, v in body.items() if k not in SIGNED_FIELDS}
    return {**plain, **_seal(signer, ledger_id, fleet, Report(plain, Meta(str(plain.get("actor")))), minutes)}


def sign_approval(signer: ActorSigner, ledger_id: str, fleet: str, request_seq: int, request_hash: str,
                  reason: str | None = None, *, minutes: int = DEFAULT_EXPIRY_MINUTES) -> dict[str, Any]:
    """An `/approvals` body: `signer` approves the pending request at `request_seq` (with its hash)."""
    approval = Approve(fleet, request_seq, request_hash, Meta(signer.name, reason))
    body: dict[str, Any] = {"request_seq": request_seq, "request_hash": request_hash, "actor": signer.name}
    if reason is not None:
        body["reason"] = reason
    return {**body, **_seal(signer, ledger_id, fleet, approval, minutes)}
