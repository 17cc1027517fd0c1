"""The command envelope: what an actor signs when they ask the ledger to decide something.

An envelope binds the request to one ledger (its identity), one fleet, one
action with its exact arguments, the actor's name, a random 128-bit nonce (so
a captured request cannot be replayed) and an expiry (so a request cannot be
held back and used much later). Its signed message is a domain-separation
context followed by the canonical JSON bytes of those seven fields; the
context keeps an actor's command signature from ever being taken for a
signature of anything else (a record, a checkpoint, an SSH login).

The accepted record keeps the envelope and the actor's signature beside the
ledger's own, so anyone can later check who asked for it with the actor's
public key alone.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.actors import ActorSigner
from ledger.encoding import canonical, check_values
from ledger.errors import InputError

CONTEXT = b"deploy-ledger/command/v1\x00"
DEFAULT_EXPIRY_MINUTES = 10
#: The longest an envelope may stay valid: the window in which its nonce must be remembered.
MAX_EXPIRY_MINUTES = 24 * 60
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_KID_RE = re.compile(r"[0-9a-f]{16}")
_SIG_RE = re.compile(r"[A-Za-z0-9+/]{86}==")
_TIME_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ")
FIELDS = ("ledger", "fleet", "action", "args", "actor", "nonce", "expires")


@dataclass(frozen=True)
class Envelope:
    """A request as its actor signed it."""

    ledger: str
    fleet: str
    action: str
    args: Mapping[str, Any]
    actor: str
    nonce: str
    expires: str

    def fields(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "fleet": self.fleet, "action": self.action,
                "args": dict(self.args), "actor": self.actor, "nonce": self.nonce,
                "expires": self.expires}

    def message(self) -> bytes:
        """What the actor's signature covers: the context, then the canonical fields."""
        return CONTEXT + canonical(self.fields())

    def expired(self, now: datetime) -> bool:
        return now > datetime.strptime(self.expires, TIME_FORMAT).replace(tzinfo=UTC)

    @classmethod
    def parse(cls, value: Any, where: str = "the envelope", *, stored: bool = False) -> Envelope:
        """An envelope from its stored or transmitted fields; InputError if it is malformed.

        `stored`: the fields come from a record whose bytes verify already checked as
        canonical JSON, so its values are known to be in the canonical set.
        """
        if not isinstance(value, Mapping) or sorted(value) != sorted(FIELDS):
            raise InputError(f"{where} must be an object with exactly the fields {', '.join(FIELDS)}")
        strings = [name for name in FIELDS if name != "args" and not isinstance(value[name], str)]
        if strings or not isinstance(value["args"], Mapping):
            raise InputError(f"{where}: field {(strings or ['args'])[0]!r} has the wrong type")
        if not stored and not _NONCE_RE.fullmatch(value["nonce"]):
            raise InputError(f"{where}: the nonce must be 32 lowercase hex digits")
        if not _TIME_RE.fullmatch(value["expires"]):
            raise InputError(f"{where}: expires must look like 2026-01-31T12:00:00Z")
        args = dict(value["args"])
        if not stored:
            check_values(args, "args")
        return cls(value["ledger"], value["fleet"], value["action"], args, value["actor"],
                   value["nonce"], value["expires"])


@dataclass(frozen=True)
class SignedEnvelope:
    """An envelope with the id of the actor key that signed it and the signature (base64)."""

    envelope: Envelope
    kid: str
    sig: str

    def verifies_under(self, public_raw: bytes) -> bool:
        try:
            raw = base64.b64decode(self.sig, validate=True)
            Ed25519PublicKey.from_public_bytes(public_raw).verify(raw, self.envelope.message())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def fields(self) -> dict[str, Any]:
        """As a record stores it: `envelope`, `actor_kid`, `actor_sig`."""
        return {"envelope": self.envelope.fields(), "actor_kid": self.kid, "actor_sig": self.sig}

    @classmethod
    def parse(cls, value: Mapping[str, Any], where: str = "the signed command", *,
              stored: bool = False) -> SignedEnvelope:
        envelope = Envelope.parse(value.get("envelope"), where, stored=stored)
        kid, sig = value.get("actor_kid"), value.get("actor_sig")
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise InputError(f"{where}: actor_kid and actor_sig must be strings")
        if not stored and not _KID_RE.fullmatch(kid):  # a stored record's schema checked both
            raise InputError(f"{where}: actor_kid must be 16 lowercase hex digits")
        if not stored and not _SIG_RE.fullmatch(sig):
            raise InputError(f"{where}: actor_sig must be a base64 Ed25519 signature")
        return cls(envelope, kid, sig)


def expiry(minutes: int, now: datetime | None = None) -> str:
    if not 1 <= minutes <= MAX_EXPIRY_MINUTES:
        raise InputError(f"the expiry must be 1 to {MAX_EXPIRY_MINUTES} minutes, not {minutes}")
    moment = (now or datetime.now(UTC)) + timedelta(minutes=minutes)
    return moment.strftime(TIME_FORMAT)


def seal_envelope(signer: ActorSigner, *, ledger: str, fleet: str, action: str, args: Mapping[str, Any],
                  minutes: int = DEFAULT_EXPIRY_MINUTES, now: datetime | None = None,
                  nonce: str | None = None) -> SignedEnvelope:
    """A new envelope for `signer`'s request, with a fresh nonce, signed."""
    plain = dict(args)
    check_values(plain, "args")
    envelope = Envelope(ledger, fleet, action, plain, signer.name, nonce or secrets.token_hex(16),
                        expiry(minutes, now))
    return SignedEnvelope(envelope, signer.kid, signer.sign(envelope.message()))
