"""The checks a record must pass before any read model may reflect it.

The same checks, names and evidence as `ledger verify` (ledger/verify.py),
less the signature and the key's time in force: the stored bytes are
canonical, the record sits at its position in its own chain, its hash is the
hash of its bytes, and it links to the record before. A projection never
answers from a record that fails them. (The schema is checked only to name a
fault as verify would; signatures stay verify's job, at ~16k/s per core they
would make a rebuild of a million records take a minute.)
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.chain import GENESIS_PREV, unsigned_hash
from ledger.encoding import canonical
from ledger.errors import Fault, FaultCheck, VerificationError
from ledger.events import stored_schema_error


class LinkFaultError(VerificationError):
    """A fault in the link between a record and the head the projection holds.

    Carries that head, so the runner can tell a broken ledger from a
    projection whose stored head disagrees with the ledger.
    """

    def __init__(self, fault: Fault, head_seq: int, head_hash: str):
        super().__init__(fault)
        self.head_seq = head_seq
        self.head_hash = head_hash


def checked_record(
    chain: str, position: int, data: bytes, head_seq: int, head_hash: str | None
) -> dict[str, Any]:
    """Decode a stored record and check it against its chain's head; raise on a fault."""

    def fault(seq: int, check: FaultCheck, expected: str, found: str, detail: str = "") -> VerificationError:
        return VerificationError(Fault(chain, seq, check, expected, found, detail))

    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise fault(position, FaultCheck.ENCODING, "a JSON record", "undecodable bytes", str(exc)) from None
    if not isinstance(record, dict):
        raise fault(position, FaultCheck.ENCODING, "a JSON object", type(record).__name__)
    if canonical(record) != data:
        raise fault(position, FaultCheck.ENCODING, "canonical JSON bytes", "non-canonical bytes")
    seq = record.get("seq")
    if seq != position:
        raise fault(position, FaultCheck.SEQ, str(position), repr(seq), "record stored out of place")
    stated = record.get("hash")
    actual = unsigned_hash(record)
    if record.get("fleet") != chain or actual != stated:
        # Report what verify would report first: it checks the schema before these.
        schema_error = stored_schema_error(record)
        if schema_error is not None:
            raise fault(position, FaultCheck.SCHEMA, "a valid record", "invalid record", schema_error)
        if record.get("fleet") != chain:
            raise fault(position, FaultCheck.FLEET, chain, str(record.get("fleet")),
                        "record moved between chains")
        raise fault(position, FaultCheck.HASH, actual, str(stated), "record content changed")
    head = head_hash or GENESIS_PREV
    if seq != head_seq + 1:
        raise LinkFaultError(
            Fault(chain, head_seq + 1, FaultCheck.SEQ, str(head_seq + 1), str(seq),
                  f"{seq - head_seq - 1} record(s) missing"), head_seq, head)
    prev = record.get("prev")
    if prev != head:
        raise LinkFaultError(
            Fault(chain, seq, FaultCheck.PREV, head, str(prev), "link to the record before is broken"),
            head_seq, head)
    return record
