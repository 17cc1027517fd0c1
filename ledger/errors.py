"""Errors, grouped by who must act on them.

`InputError` and its kin mean the caller gave something the ledger refuses:
nothing was written and the CLI exits 2. `VerificationError` means stored
history is not what was signed: the CLI exits 1 and prints the evidence.
`NotFoundError` is a question without an answer (exit 3). `StorageError`
means the ledger could not be read or written where it is (read-only, full,
damaged or unreachable storage): exit 4, which is never "verification failed",
since nothing about the records was learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    exit_code = 2


class InputError(LedgerError):
    """The caller's input is malformed or refused; nothing was written."""


class RecordError(InputError):
    """A record failed validation (JSON, schema, size, reserved field)."""


class KeyFileError(InputError):
    """A key file is missing, unreadable, or not this ledger's key."""


class NotInitializedError(InputError):
    """There is no ledger at the given location."""


class UnknownFleetError(InputError):
    """The named fleet has no records."""


class StorageError(LedgerError):
    """Storage fault: the ledger could not be read or written here (read-only, full,
    damaged, locked or unreachable storage); nothing was written, or the write was
    not acknowledged."""

    exit_code = 4


class TransientStorageError(StorageError):
    """A database server went away mid-operation; a writer may retry on a new connection."""


class ConflictError(LedgerError):
    """Concurrent writers kept winning the race for the next position."""


class HeadMovedError(ConflictError):
    """A conditional append found the chain's head moved: decide again."""


class NotFoundError(LedgerError):
    """A query has no answer (for example: no last-good version)."""

    exit_code = 3


class FaultCheck(StrEnum):
    """Which rule stored history broke; the value is the name printed and put in JSON."""

    # one record on its own
    ENCODING = "encoding"
    SEQ = "seq"
    SCHEMA = "schema"
    FLEET = "fleet"
    HASH = "hash"
    SIGNATURE = "signature"
    EVENT = "event"
    POSITION = "position"
    # records linked into a chain, and the keys in force
    PREV = "prev"
    TIMESTAMP = "timestamp"
    KEY = "key"
    KEY_CHAIN = "key chain"
    ANCHOR = "anchor"
    # checkpoints, proofs, bundles and witnesses
    CHECKPOINT_ROOT = "checkpoint root"
    CHECKPOINT_HEAD = "checkpoint head"
    CHECKPOINT_ORIGIN = "checkpoint origin"
    CHECKPOINT_SIGNATURE = "checkpoint signature"
    OLD_CHECKPOINT_ORIGIN = "old checkpoint origin"
    OLD_CHECKPOINT_SIGNATURE = "old checkpoint signature"
    NEW_CHECKPOINT_ORIGIN = "new checkpoint origin"
    NEW_CHECKPOINT_SIGNATURE = "new checkpoint signature"
    TRUNCATED = "truncated"
    TRUNCATION = "truncation"
    FORK = "fork"
    ORIGIN = "origin"
    CONSISTENCY = "consistency"
    INCLUSION = "inclusion"
    RECORD = "record"
    BUNDLE = "bundle"
    TILE = "tile"
    # who did it: signed commands and the policy in force
    ACTOR = "actor"
    ACTOR_ENVELOPE = "actor envelope"
    ACTOR_EXPIRY = "actor expiry"
    ACTOR_KEY = "actor key"
    ACTOR_NONCE = "actor nonce"
    ACTOR_SIGNATURE = "actor signature"
    APPROVALS = "approvals"
    AUTHORIZATION = "authorization"
    POLICY_POSITION = "policy position"
    REPORTER_BINDING = "reporter binding"


@dataclass(frozen=True)
class Fault:
    """Evidence of the first place where stored history breaks.

    `chain` is the fleet name (or `@keys` for the key chain), `seq` the
    position, `check` which rule failed, and `expected`/`found` the values.
    """

    chain: str
    seq: int
    check: FaultCheck
    expected: str
    found: str
    detail: str = ""

    def describe(self) -> str:
        text = (
            f"{self.check} at {self.chain} seq {self.seq}: "
            f"expected {self.expected}, found {self.found}"
        )
        return f"{text} ({self.detail})" if self.detail else text


class VerificationError(LedgerError):
    """Stored history fails verification; carries the first fault."""

    exit_code = 1

    def __init__(self, fault: Fault):
        super().__init__(fault.describe())
        self.fault = fault
