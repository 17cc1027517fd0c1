"""Evidence a reviewer can carry away: inclusion and consistency proofs as files.

An inclusion proof is a C2SP tlog-proof (c2sp.org/tlog-proof@v1) whose `extra`
line carries the record's stored bytes, so it stands alone: the verifier hashes
those bytes into the leaf (RFC 6962: SHA-256(0x00 || bytes)), so the extra data,
unauthenticated by the format, is authenticated by the proof itself:

    c2sp.org/tlog-proof@v1
    extra <base64 of the record's canonical bytes>
    index <seq - 1>
    <base64 audit path hash, leaf side first>...

    <the signed checkpoint, verbatim>

A consistency proof has no C2SP format; this ledger's is the same shape:

    deploy-ledger/consistency-proof@v1
    <base64 consistency path hash (RFC 6962 §2.1.2)>...

    <the old signed checkpoint, verbatim>

    <the new signed checkpoint, verbatim>

Verifying needs no database: the anchor key, and, for checkpoints signed after
a rotation, the key chain (`ledger keys export`), which is walked from the
anchor exactly as `verify` walks it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import TypeVar

import orjson

from ledger.chain import (
    Checkpoint,
    checkpoint_origin,
    checkpoint_signed_by,
    leaf_hash,
    parse_checkpoint,
    signed_message,
)
from ledger.encoding import canonical
from ledger.errors import Fault, FaultCheck, InputError, VerificationError
from ledger.keys import key_id, verify_signature
from ledger.proofs import (
    HASH_SIZE,
    Node,
    ProofError,
    consistency_proof,
    inclusion_proof,
    nodes_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.store import KEY_CHAIN, Store
from ledger.verify import KeyEpoch, Verifier

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
CONSISTENCY_HEADER = "deploy-ledger/consistency-proof@v1"


class MemoryStore:
    """The reading side of a `Store` over records held in memory (an export, a key chain file),
    so the one `Verifier` checks a bundle or a key chain with no database."""

    def __init__(self, chains: dict[str, Sequence[bytes]]):
        self._chains = chains

    def rows(self, chain: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        records = self._chains.get(chain, ())
        return [(n, bytes(records[n - 1])) for n in range(after + 1, min(after + limit, len(records)) + 1)]

    def last_seq(self, chain: str) -> int:
        return len(self._chains.get(chain, ()))

    def chains(self) -> list[str]:
        return sorted(c for c in self._chains if c != KEY_CHAIN)


def verify_key_chain(lines: Sequence[bytes], anchor_raw: bytes) -> tuple[str, list[KeyEpoch]]:
    """The ledger id and keys a key chain (as `keys export` prints it) proves from the anchor."""
    store = MemoryStore({KEY_CHAIN: list(lines)})
    with Verifier(store, anchor_raw) as verifier:
        epochs = verifier.verify_keys()
        return verifier.ledger_id, epochs


def read_key_chain(text: bytes) -> list[bytes]:
    return [line for line in text.split(b"\n") if line.strip()]


class CheckpointRole(StrEnum):
    """Which checkpoint a check is about (a proof may carry two): named in refusals."""

    CHECKPOINT = "checkpoint"
    OLD = "old checkpoint"
    NEW = "new checkpoint"

    @property
    def origin_check(self) -> FaultCheck:
        return FaultCheck(f"{self.value} origin")

    @property
    def signature_check(self) -> FaultCheck:
        return FaultCheck(f"{self.value} signature")


@dataclass(frozen=True)
class Trust:
    """What a proof's checkpoints must be signed by: the keys proven from the anchor."""

    keys: list[bytes]
    ledger_id: str | None  # None when only the anchor is known (then the origin states it)

    @classmethod
    def from_anchor(cls, anchor_raw: bytes, key_chain: Sequence[bytes] | None = None) -> Trust:
        if not key_chain:
            return cls([anchor_raw], None)
        ledger_id, epochs = verify_key_chain(key_chain, anchor_raw)
        return cls([e.public_raw for e in epochs], ledger_id)

    def checkpoint(self, text: str, what: CheckpointRole) -> tuple[Checkpoint, str]:
        """The checkpoint and its fleet, once its signature and origin check out."""
        checkpoint, signatures = parse_checkpoint(text)
        parts = checkpoint.origin.split("/", 2)
        if len(parts) != 3 or checkpoint_origin(parts[1], parts[2]) != checkpoint.origin:
            raise InputError(f"{what} origin is not a deploy-ledger origin")
        fleet = parts[2]
        if self.ledger_id is not None and parts[1] != self.ledger_id:
            raise VerificationError(Fault(fleet, checkpoint.size, what.origin_check,
                                          f"ledger {self.ledger_id}", f"ledger {parts[1]}",
                                          "a checkpoint of another ledger"))
        if not checkpoint_signed_by(checkpoint, signatures, self.keys):
            raise VerificationError(Fault(fleet, checkpoint.size, what.signature_check,
                                          "a signature by a trusted key", "none",
                                          "forged or altered checkpoint, or a key not given "
                                          "(pass the key chain with --keys)"))
        return checkpoint, fleet


def _b64(line: str, what: str) -> bytes:
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not base64") from None


def _b64s(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _leaves(store: Store, fleet: str, size: int) -> list[bytes]:
    """Leaf hashes of a fleet's first `size` records, for a chain with no stored nodes."""
    leaves: list[bytes] = []
    for row in store.scan(fleet):
        if len(leaves) == size:
            break
        leaves.append(leaf_hash(bytes(row.state)))
    if len(leaves) < size:
        raise VerificationError(Fault(fleet, len(leaves) + 1, FaultCheck.TRUNCATED, f"{size} records",
                                      f"{len(leaves)} records",
                                      "the ledger no longer extends the checkpoint"))
    return leaves


T = TypeVar("T")


def with_tree(store: Store, fleet: str, size: int, compute: Callable[[Node], T]) -> T:
    """`compute` over the `node` callback of a fleet's tree of `size` leaves.

    With stored interior hashes, the nodes `compute` reads are fetched in one
    query: it runs once over placeholder hashes to learn which (the RFC 6962
    algorithms read the same nodes whatever their hashes), then over the stored
    ones. Without them, the tree is computed from the chain's leaves.
    """
    if not store.has_nodes(fleet, size):
        return compute(nodes_from_leaves(_leaves(store, fleet, size)))
    wanted: list[tuple[int, int]] = []

    def placeholder(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return bytes(HASH_SIZE)

    compute(placeholder)
    stored = store.nodes(fleet, wanted)
    return compute(lambda level, index: stored[level, index])


def _root_check(root: bytes, checkpoint: Checkpoint, fleet: str) -> None:
    if root != checkpoint.root:
        raise VerificationError(Fault(fleet, checkpoint.size, FaultCheck.CHECKPOINT_ROOT,
                                      _b64s(checkpoint.root),
                                      _b64s(root), "history differs from the checkpoint"))


def prove_inclusion(store: Store, fleet: str, seq: int, checkpoint_text: str) -> str:
    """A tlog-proof that record `seq` of `fleet` is in the tree `checkpoint_text` signs."""
    checkpoint, _ = parse_checkpoint(checkpoint_text)
    if not 1 <= seq <= checkpoint.size:
        raise InputError(f"seq {seq} is not in the checkpoint's {checkpoint.size} records")
    size = checkpoint.size
    root, leaf, path = with_tree(store, fleet, size, lambda node: (
        subtree_hash(0, size, node), node(0, seq - 1), inclusion_proof(seq - 1, size, node)))
    _root_check(root, checkpoint, fleet)
    rows = store.page(fleet, seq - 1, 1)
    record = bytes(rows[0].state) if rows else b""
    if leaf_hash(record) != leaf:
        raise VerificationError(Fault(fleet, seq, FaultCheck.RECORD, "the record the tree holds",
                                      "other bytes" if rows else "no record",
                                      "the stored record changed since it was appended"))
    lines = [TLOG_PROOF_HEADER, f"extra {_b64s(record)}", f"index {seq - 1}", *map(_b64s, path)]
    return "\n".join(lines) + "\n\n" + checkpoint_text


def prove_consistency(store: Store, old_text: str, new_text: str) -> str:
    """A consistency proof from the old checkpoint's tree to the new one's."""
    old, _ = parse_checkpoint(old_text)
    new, _ = parse_checkpoint(new_text)
    if old.origin != new.origin:
        raise InputError("the two checkpoints are of different fleets or ledgers")
    if not 0 < old.size <= new.size:
        raise InputError(f"no consistency proof from {old.size} to {new.size} records")
    fleet = new.origin.split("/", 2)[-1]
    old_root, new_root, path = with_tree(store, fleet, new.size, lambda node: (
        subtree_hash(0, old.size, node), subtree_hash(0, new.size, node),
        consistency_proof(old.size, new.size, node)))
    _root_check(old_root, old, fleet)
    _root_check(new_root, new, fleet)
    return "\n".join([CONSISTENCY_HEADER, *map(_b64s, path)]) + "\n\n" + old_text + "\n" + new_text


def split_notes(text: str, count: int) -> list[str]:
    """`count` signed notes (text, empty line, signature lines), one empty line between them."""
    notes = []
    rest = text
    for number in range(count):
        body, sep, after = rest.partition("\n\n")
        if not sep:
            raise InputError("a checkpoint in the proof has no signature block")
        signatures, more, rest = after.partition("\n\n")
        notes.append(body + "\n\n" + signatures + ("\n" if more else ""))
        if number + 1 < count and not more:
            raise InputError("the proof holds fewer checkpoints than its kind needs")
    if rest.strip():
        raise InputError("the proof has trailing data after its checkpoints")
    return notes


@dataclass(frozen=True)
class ProofVerdict:
    kind: str
    fleet: str
    summary: str


def verify_proof_text(text: str, trust: Trust) -> ProofVerdict:
    """Check a proof file; InputError when malformed, VerificationError when it proves nothing."""
    head, sep, rest = text.partition("\n\n")
    if not sep:
        raise InputError("not a proof: no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] == TLOG_PROOF_HEADER:
        return _verify_inclusion(lines[1:], rest, trust)
    if lines[0] == CONSISTENCY_HEADER:
        return _verify_consistency(lines[1:], rest, trust)
    raise InputError(f"not a proof: the first line must be {TLOG_PROOF_HEADER} or {CONSISTENCY_HEADER}")


def _verify_inclusion(lines: list[str], rest: str, trust: Trust) -> ProofVerdict:
    if len(lines) < 2 or not lines[0].startswith("extra ") or not lines[1].startswith("index "):
        raise InputError("a tlog-proof of this ledger needs 'extra <record>' and 'index N' lines")
    record_bytes = _b64(lines[0].removeprefix("extra "), "the record (extra line)")
    index_text = lines[1].removeprefix("index ")
    if not index_text.isdigit() or (index_text != "0" and index_text.startswith("0")):
        raise InputError("the index is not a decimal number")
    index = int(index_text)
    path = [_b64(line, f"audit path line {n}") for n, line in enumerate(lines[2:], 1)]
    [note] = split_notes(rest, 1)
    checkpoint, fleet = trust.checkpoint(note, CheckpointRole.CHECKPOINT)
    seq = index + 1
    try:
        verify_inclusion(index, checkpoint.size, leaf_hash(record_bytes), path, checkpoint.root)
    except ProofError as exc:
        raise VerificationError(Fault(fleet, seq, FaultCheck.INCLUSION, "the record in the signed tree",
                                      "a proof that fails", str(exc))) from None
    record = _record_checks(record_bytes, fleet, seq, trust)
    return ProofVerdict("inclusion", fleet,
                        f"record {fleet} seq {seq} ({record['event']}, hash {record['hash']}) is in "
                        f"the checkpoint of {checkpoint.size} records")


def _record_checks(data: bytes, fleet: str, seq: int, trust: Trust) -> dict[str, object]:
    """The record is what the proof says: canonical, at its place, its hash right, and
    signed when its key is known."""
    def fault(check: FaultCheck, expected: str, found: str) -> VerificationError:
        return VerificationError(Fault(fleet, seq, check, expected, found, "in the proven record"))
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise fault(FaultCheck.ENCODING, "a JSON record", "undecodable bytes") from None
    if not isinstance(record, dict) or canonical(record) != data:
        raise fault(FaultCheck.ENCODING, "canonical JSON bytes", "other bytes")
    if record.get("seq") != seq or record.get("fleet") != fleet:
        raise fault(FaultCheck.POSITION, f"{fleet} seq {seq}",
                    f"{record.get('fleet')} seq {record.get('seq')}")
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    digest = sha256(canonical(body)).hexdigest()
    if digest != record.get("hash"):
        raise fault(FaultCheck.HASH, digest, str(record.get("hash")))
    keys = {key_id(raw): raw for raw in trust.keys}
    raw = keys.get(str(record.get("kid")))
    if raw is not None and trust.ledger_id is not None and not verify_signature(
            raw, str(record.get("sig")), signed_message(digest, trust.ledger_id)):
        raise fault(FaultCheck.SIGNATURE, f"valid signature by {record.get('kid')}", "bad signature")
    return record


def _verify_consistency(lines: list[str], rest: str, trust: Trust) -> ProofVerdict:
    path = [_b64(line, f"consistency path line {n}") for n, line in enumerate(lines, 1) if line]
    old_note, new_note = split_notes(rest, 2)
    old, fleet = trust.checkpoint(old_note, CheckpointRole.OLD)
    new, new_fleet = trust.checkpoint(new_note, CheckpointRole.NEW)
    if old.origin != new.origin:
        raise VerificationError(Fault(new_fleet, new.size, FaultCheck.ORIGIN, old.origin, new.origin,
                                      "checkpoints of different logs"))
    try:
        verify_consistency(old.size, new.size, old.root, new.root, path)
    except ProofError as exc:
        raise VerificationError(Fault(fleet, new.size, FaultCheck.CONSISTENCY,
                                      f"a tree of {new.size} extending the one of {old.size}",
                                      "a proof that fails", str(exc))) from None
    return ProofVerdict("consistency", fleet,
                        f"the checkpoint of {new.size} records extends the one of {old.size}")
