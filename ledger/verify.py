"""Whole-ledger verification, with evidence of the first fault.

Each record is checked alone: its position, that its bytes are canonical, its
schema, its hash, that its key is one of the ledger's, and (all of them, or
only those that carry the proof) its Ed25519 signature. Records are linked:
no gap in `seq`, each `prev` is the hash before it, timestamps never go back,
and each signing key was in force at that time according to the key chain,
which is itself verified first from the trusted anchor key. The Merkle root
is folded along the way, for checkpoints.

The work goes in spans of consecutive records, in a process pool on every core
for a long chain (see `Verifier`); memory stays bounded by a few spans.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ledger.chain import (
    GENESIS_PREV,
    NO_LEDGER,
    Checkpoint,
    MerkleAccumulator,
    checkpoint_origin,
    checkpoint_signed_by,
    leaf_hash,
    parse_checkpoint,
    signed_message,
    subtree_peaks,
)
from ledger.children import die_with_parent, parent_identity
from ledger.errors import Fault, FaultCheck, InputError, VerificationError
from ledger.events import INTERNAL_EVENTS, stored_check, stored_schema_error
from ledger.keys import key_id, parse_public_key, verify_signature
from ledger.names import is_ledger_id, shown
from ledger.policy import POLICY_CHAIN
from ledger.store import KEY_CHAIN, Store
from ledger.verify_actors import ActorsReport, verify_actors

SPAN = 1024  # records per unit of work: a power of two, so each full span is one Merkle subtree
#: Fields the gate of an enforced ledger puts in every record it decides (its attestation:
#: whether the actor's signature held, and the policy it was decided against), and nothing
#: else writes: a record carrying one needs a policy chain to be checked against.
ATTESTED = ("actor_verified", "policy_seq")
PARALLEL_THRESHOLD = 4096
Progress = Callable[[int, int], None]

# (seq, prev, hash, kid, timestamp, leaf hash, event type, new key or None, sig)
RecordInfo = tuple[int, str, str, str, str, bytes, str, "tuple[str, str] | None", str]
# (seq, check, expected, found, detail)
RawFault = tuple[int, FaultCheck, str, str, str]
# (record, its computed hash, its sig) of a record that passed every check made alone
Checked = tuple[dict[str, Any], str, str]


@dataclass(frozen=True)
class KeyEpoch:
    """A signing key and the span of time in which it may sign."""

    kid: str
    public_raw: bytes
    start: str
    end: str | None = None


@dataclass
class ChainReport:
    """What verification proved about one chain."""

    chain: str
    count: int = 0
    head: str = GENESIS_PREV
    #: The Merkle root of the `count` records; None when the verifier was asked for no roots
    #: and had no checkpoint to match (matching one folds the tree).
    root: bytes | None = None
    checkpoint_size: int | None = None
    #: The position of the first record only an enforced ledger's gate writes (0: none), for
    #: the actor checks: such a record is never taken as open mode.
    first_attested: int = 0


@dataclass
class LedgerReport:
    keys: list[KeyEpoch] = field(default_factory=list)
    ledger_id: str = NO_LEDGER
    chains: list[ChainReport] = field(default_factory=list)
    #: Who did what: the policy chain and every signed decision (`ledger.verify_actors`).
    actors: ActorsReport = field(default_factory=lambda: ActorsReport(False))


class RecordSource(Protocol):
    """What verification reads: a `Store`, or records held elsewhere (a bundle, a key chain file)."""

    def rows(self, chain: str, after: int, limit: int) -> list[tuple[int, bytes]]: ...

    def last_seq(self, chain: str) -> int: ...

    def chains(self) -> list[str]: ...


_loads, _dumps, _SORTED, _sha256 = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256


def check_record(
    chain: str, position: int, data: bytes, keys: dict[str, bytes], ledger_id: str,
    signatures: bool = True, linked: bool = False,
) -> Checked | RawFault:
    """Check one record on its own: bytes, position, schema, chain, hash, key, signature.

    Signatures are checked as made for the ledger `ledger_id`: a record copied
    from another ledger, even one signed with the same key, fails here. With
    `signatures` false they are left to the caller, which checks those that
    carry the proof (see `Verifier`). With `linked` the caller also checks
    `prev` against the hash before, so the schema's patterns for `hash`, `prev`
    and `kid` are left to the value checks (see `stored_schema_error`), and,
    without `signatures`, the pattern of `sig`: a signature left unchecked is
    left unchecked in form too.
    """
    try:
        record = _loads(data)
    except orjson.JSONDecodeError as exc:
        return (position, FaultCheck.ENCODING, "a JSON record", "undecodable bytes", str(exc))
    if type(record) is not dict:
        return (position, FaultCheck.ENCODING, "a JSON object", type(record).__name__, "")
    try:
        canonical_bytes = _dumps(record, option=_SORTED)  # `canonical`, called directly: per record
    except orjson.JSONEncodeError as exc:  # nested deeper than the encoder goes: never written so
        return (position, FaultCheck.ENCODING, "canonical JSON bytes", "bytes no encoder writes", str(exc))
    if canonical_bytes != data:
        return (position, FaultCheck.ENCODING, "canonical JSON bytes", "non-canonical bytes", "")
    seq = record.get("seq")
    if seq != position:
        return (position, FaultCheck.SEQ, str(position), repr(seq), "record stored out of place")
    schema_error = stored_schema_error(record, linked=linked, signed=signatures)
    if schema_error is not None:
        return (position, FaultCheck.SCHEMA, "a valid record", "invalid record", schema_error)
    if record["fleet"] != chain:
        return (position, FaultCheck.FLEET, chain, record["fleet"], "record moved between chains")
    # The hash covers the record less `hash` and `sig`: take them out to encode it, then back.
    stated = record.pop("hash")
    sig = record.pop("sig")
    actual = _sha256(_dumps(record, option=_SORTED)).hexdigest()
    record["hash"] = stated
    record["sig"] = sig
    if actual != stated:
        return _schema_fault(position, record, linked) or (
            position, FaultCheck.HASH, actual, stated, "record content changed")
    kid = record["kid"]
    public_raw = keys.get(kid)
    if public_raw is None:
        return _schema_fault(position, record, linked) or (
            position, FaultCheck.SIGNATURE, "a key of this ledger", f"unknown key {kid}", "")
    if signatures and not verify_signature(public_raw, sig, signed_message(actual, ledger_id)):
        return (position, FaultCheck.SIGNATURE, f"valid signature by {kid} for ledger {ledger_id}",
                "bad signature", "forged, altered, or signed for another ledger")
    if (record["event"] in INTERNAL_EVENTS) != (chain == KEY_CHAIN):
        return (position, FaultCheck.EVENT, "an event of this chain", record["event"], "")
    return record, actual, sig


def _schema_fault(position: int, record: dict[str, Any], linked: bool) -> RawFault | None:
    """The schema fault a record checked `linked` has, found only once a value check failed."""
    error = stored_schema_error(record) if linked else None
    return None if error is None else (position, FaultCheck.SCHEMA, "a valid record", "invalid record", error)


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and not value.strip("0123456789abcdef")


def check_batch(
    chain: str, rows: Sequence[tuple[int, bytes]], keys: dict[str, bytes], ledger_id: str,
    signatures: bool = True,
) -> tuple[list[RecordInfo], RawFault | None]:
    """Check each record on its own (`check_record`); stop at the first fault in the batch."""
    infos: list[RecordInfo] = []
    for position, data in rows:
        checked = check_record(chain, position, data, keys, ledger_id, signatures)
        if len(checked) == 5:
            return infos, checked
        record, actual, sig = checked
        new_key = None
        if record["event"] in ("ledger.initialized", "key.rotated"):
            new_key = (record["new_kid"], record["public_key"])
        infos.append((position, record["prev"], actual, record["kid"], record["timestamp"],
                      leaf_hash(data), record["event"], new_key, sig))
    return infos, None


@dataclass
class Span:
    """What checking a run of consecutive records proved, for the parent to join onto the chain.

    Each record is checked alone and linked to the one before it in the span;
    the first record's link (its `prev` and timestamp against the chain so
    far, and its key's time in force) is the parent's to check, since only the
    parent knows what came before. `count` records from `first` passed; `fault`
    is the first fault after them, if any.
    """

    first: int
    count: int = 0
    prev: str = ""
    first_timestamp: str = ""
    first_kid: str = ""
    head: str = ""
    last_timestamp: str = ""
    #: kid -> (seq, hash, sig) of the last record it signed in the span.
    last_by_key: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    #: The Merkle peaks (height, hash) of the records that passed, largest first.
    peaks: list[tuple[int, bytes]] = field(default_factory=list)
    #: The peaks and head at `cut` (a checkpoint's size), when it falls in the span.
    cut_peaks: list[tuple[int, bytes]] | None = None
    cut_head: str = ""
    #: The first record that passed carrying the gate's attestation (see `ATTESTED`), or 0.
    first_attested: int = 0
    fault: RawFault | None = None


@dataclass(frozen=True)
class SpanChecker:
    """Checks spans of one chain: what a pool worker (or the parent, for a short chain) runs."""

    chain: str
    keys: dict[str, bytes]
    epochs: dict[str, tuple[str, str | None]]  # kid -> (start, end) of its time in force
    ledger_id: str
    signatures: bool
    cut: int = 0  # a checkpoint's size: the span holding it reports the tree there
    #: Fold the records into the span's Merkle subtrees: for a root (a checkpoint to match or
    #: to sign). Verifying the chain alone needs none, and the leaf and node hashes are about
    #: a sixth of the work per record.
    merkle: bool = True

    def check(self, first: int, rows: Sequence[tuple[int, bytes]]) -> Span:
        """Check `rows`, which should hold the records from position `first` on, in order."""
        if (first - 1) % SPAN:
            raise ValueError(f"a span starts after a multiple of {SPAN}, not at {first}")
        if self.cut and not self.merkle:
            raise ValueError("a checkpoint's tree needs the Merkle subtrees")
        return self._check_clean(first, rows) or self._check_exact(first, rows)

    def _check_clean(self, first: int, rows: Sequence[tuple[int, bytes]]) -> Span | None:
        """The span, if it is the common case; else None, for `_check_exact` to find the fault.

        The common case is a span of records that pass every check. For it one
        pass of the fewest steps per record will do: the checks of
        `check_record` and `_check_exact` in their cheapest order, each the same
        test on the same values, and each key's time in force compared once per
        run of records it signed (timestamps never go back, so a run's first and
        last record bound the rest). It accepts no span those refuse: on a
        fault it gives up, and the exact check decides and names the first one.
        (It also gives up on a span whose first record is outside its key's
        time: the exact check leaves that record's link to the caller, who
        names it.)
        """
        if not rows:
            return None
        chain, keys, ledger_id, signatures, cut = (self.chain, self.keys, self.ledger_id,
                                                   self.signatures, self.cut)
        key_chain = chain == KEY_CHAIN
        #: event type of this chain -> its schema's part for this check, whether a record has only
        #: the names it lists (quick), whether its names conform (listed or by pattern)
        schemas: dict[str, tuple[Callable[[Any], bool], Callable[[Any], bool], Callable[[Any], bool]]] = {}
        leaves: list[bytes] | None = [] if self.merkle else None
        #: (kid, first timestamp, last timestamp) of each run of records one key signed
        runs: list[tuple[str, str, str]] = []
        last_by_key: dict[str, tuple[int, str, str]] = {}
        expected = first
        first_prev = first_timestamp = kid = head = last_timestamp = last_sig = cut_head = ""
        attested_at = 0
        for position, data in rows:
            if position != expected:
                return None
            try:
                record = _loads(data)
                if type(record) is not dict or _dumps(record, option=_SORTED) != data:
                    return None
            except (orjson.JSONDecodeError, orjson.JSONEncodeError):
                return None
            event = record.get("event")
            schema = schemas.get(event) if type(event) is str else None
            if schema is None:  # an event type this span has not met yet: one of this chain's?
                check = stored_check(event)
                if check is None or type(event) is not str or (event in INTERNAL_EVENTS) != key_chain:
                    return None
                schema = schemas[event] = (check.validator(linked=True, signed=signatures).is_valid,
                                           check.known.issuperset, check.names_conform)
            conforms, listed, named = schema
            if (record.get("seq") != position or record.get("fleet") != chain or not conforms(record)
                    or not (listed(record) or named(record))):
                return None
            stated = record.pop("hash")
            sig = record.pop("sig")
            digest = _sha256(_dumps(record, option=_SORTED)).hexdigest()
            if digest != stated:
                return None
            timestamp = record["timestamp"]
            prev = record["prev"]
            if position == first:
                if not _is_hex64(prev):
                    return None
                first_prev, first_timestamp = prev, timestamp
            elif prev != head or timestamp < last_timestamp:
                return None
            if position == first or record["kid"] != kid:  # a run of records by one key starts
                if runs:
                    runs[-1] = (kid, runs[-1][1], last_timestamp)
                    last_by_key[kid] = (position - 1, head, last_sig)
                kid = record["kid"]
                if kid not in keys:
                    return None
                runs.append((kid, timestamp, ""))
            if signatures and not verify_signature(keys[kid], sig, signed_message(digest, ledger_id)):
                return None
            head, last_timestamp, last_sig = digest, timestamp, sig
            if not attested_at and (ATTESTED[0] in record or ATTESTED[1] in record):
                attested_at = position
            if leaves is not None:
                leaves.append(_sha256(b"\x00" + data).digest())
            if position == cut:
                cut_head = digest
            expected += 1
        runs[-1] = (kid, runs[-1][1], last_timestamp)
        last_by_key[kid] = (expected - 1, head, last_sig)
        for run_kid, since, until in runs:
            epoch = self.epochs.get(run_kid)
            if epoch is None or since < epoch[0] or (epoch[1] is not None and until > epoch[1]):
                return None
        span = Span(first, expected - first, first_prev, first_timestamp, runs[0][0], head,
                    last_timestamp, last_by_key, first_attested=attested_at)
        if leaves is not None:
            span.peaks = subtree_peaks(leaves)
            if cut_head:
                span.cut_head = cut_head
                span.cut_peaks = subtree_peaks(leaves[:cut - first + 1])
        return span

    def _check_exact(self, first: int, rows: Sequence[tuple[int, bytes]]) -> Span:
        """Check the span record by record (`check_record`, then the link), stopping at a fault."""
        span = Span(first)
        chain, keys, epochs, ledger_id, signatures = (self.chain, self.keys, self.epochs,
                                                      self.ledger_id, self.signatures)
        last_by_key = span.last_by_key
        leaves: list[bytes] | None = [] if self.merkle else None
        cut = self.cut
        expected = first
        head = last_timestamp = ""
        # The key whose time in force the last record was checked against, and its end: a
        # later record by the same key, no earlier (checked), needs only the end compared.
        key_kid, key_end = "", None
        for position, data in rows:
            if position != expected:
                span.fault = (expected, FaultCheck.SEQ, str(expected), str(position),
                              f"{position - expected} record(s) missing")
                break
            checked = check_record(chain, position, data, keys, ledger_id, signatures, linked=True)
            if len(checked) == 5:
                span.fault = checked
                break
            record, digest, sig = checked
            timestamp = record["timestamp"]
            kid = record["kid"]
            prev = record["prev"]
            if position == first:  # its link is the parent's to check; its form is checked here
                if not _is_hex64(prev):
                    span.fault = _schema_fault(position, record, True) or (
                        position, FaultCheck.PREV, "64 lowercase hex digits", prev, "")
                    break
                span.prev, span.first_timestamp, span.first_kid = prev, timestamp, kid
            elif (prev != head or timestamp < last_timestamp or kid != key_kid
                  or (key_end is not None and timestamp > key_end)):
                fault = _link_fault(position, prev, head, timestamp, last_timestamp, kid, epochs)
                if fault is not None:
                    span.fault = _schema_fault(position, record, True) or fault
                    break
                key_kid, key_end = kid, epochs[kid][1]
            head, last_timestamp = digest, timestamp
            last_by_key[kid] = (position, digest, sig)
            if not span.first_attested and any(name in record for name in ATTESTED):
                span.first_attested = position
            if leaves is not None:
                leaves.append(_sha256(b"\x00" + data).digest())
            if position == cut:
                span.cut_head = digest
            expected += 1
        span.count = expected - first
        span.head, span.last_timestamp = head, last_timestamp
        if leaves is not None:
            span.peaks = subtree_peaks(leaves)
            if span.cut_head:
                span.cut_peaks = subtree_peaks(leaves[:self.cut - first + 1])
        return span


def _link_fault(seq: int, prev: str, head: str, timestamp: str, last_timestamp: str, kid: str,
                epochs: dict[str, tuple[str, str | None]]) -> RawFault | None:
    """Why a record does not follow the one before it (hash `head`, time `last_timestamp`)."""
    if prev != head:
        return (seq, FaultCheck.PREV, head, prev, "link to the record before is broken")
    if timestamp < last_timestamp:
        return (seq, FaultCheck.TIMESTAMP, f">= {last_timestamp}", timestamp, "time went back")
    epoch = epochs.get(kid)
    if epoch is None:
        return (seq, FaultCheck.SIGNATURE, "a key of this ledger", f"unknown key {kid}", "")
    start, end = epoch
    if timestamp < start or (end is not None and timestamp > end):
        return (seq, FaultCheck.KEY, f"key {kid} in force {start}..{end or 'now'}", timestamp,
                "signed outside the key's time in force (retired key?)")
    return None


_worker: list[Any] = [None]  # the database a pool worker reads its spans from: its path, then its Store


def _init_worker(db: str | None, parent: tuple[int, bool]) -> None:
    die_with_parent(*parent)
    _worker[0] = db


def _span_in_worker(checker: SpanChecker, first: int,
                    rows: Sequence[tuple[int, bytes]] | None) -> Span:
    """Check one span in a pool worker, reading its rows itself unless they are given."""
    if rows is None:
        if isinstance(_worker[0], str):
            _worker[0] = Store(_worker[0], read_only=True)
        rows = _worker[0].rows(checker.chain, first - 1, SPAN)
    return checker.check(first, rows)


def claimed_ledger_id(store: RecordSource) -> str | None:
    """The identity the ledger's genesis record states, if it is a well-formed one.

    Unverified (it serves to find the ledger's pinned anchor and to sign new
    records), so it is taken only in the one form an identity has: 32 lowercase
    hex digits, not all zero. Anything else, a path part included, is no identity.
    """
    first = store.rows(KEY_CHAIN, 0, 1)
    if not first:
        return None
    try:
        value = orjson.loads(first[0][1]).get("ledger_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if is_ledger_id(value) else None


class _Linker:
    """The parent's checks across records of one chain."""

    def __init__(self, chain: str, epochs: dict[str, KeyEpoch], checkpoint: Checkpoint | None):
        self.report = ChainReport(chain)
        self.epochs = epochs
        self.accumulator = MerkleAccumulator()
        self.checkpoint = checkpoint
        self.last_timestamp = ""
        #: kid -> (seq, hash, sig) of the last record it signed: where its signature carries the proof.
        self.last_by_key: dict[str, tuple[int, str, str]] = {}

    def fault(self, seq: int, check: FaultCheck, expected: str, found: str, detail: str = "") -> None:
        raise VerificationError(Fault(self.report.chain, seq, check, expected, found, detail))

    def expect_position(self, seq: int) -> None:
        """Fault unless `seq` is the next position: records before it are missing."""
        count = self.report.count
        if seq != count + 1:
            self.fault(count + 1, FaultCheck.SEQ, str(count + 1), str(seq),
                       f"{seq - count - 1} record(s) missing")

    def link(self, info: RecordInfo) -> None:
        """Join one record (the key chain's way: a record at a time)."""
        seq, prev, digest, kid, timestamp, leaf, _event, _new_key, sig = info
        self.expect_position(seq)
        self._link_first(seq, prev, timestamp, kid)
        self.last_timestamp = timestamp
        self.last_by_key[kid] = (seq, digest, sig)
        self.accumulator.add(leaf)
        self.report.count = seq
        self.report.head = digest
        if self.checkpoint is not None and seq == self.checkpoint.size:
            self._match_checkpoint(seq, self.accumulator.root(), digest)

    def _link_first(self, seq: int, prev: str, timestamp: str, kid: str) -> None:
        epochs = {k: (e.start, e.end) for k, e in self.epochs.items()}
        fault = _link_fault(seq, prev, self.report.head, timestamp, self.last_timestamp, kid, epochs)
        if fault is not None:
            raise VerificationError(Fault(self.report.chain, *fault))

    def join(self, span: Span) -> None:
        """Join a span's records onto the chain so far, then raise its fault if it found one."""
        if span.count:
            self.expect_position(span.first)
            self._link_first(span.first, span.prev, span.first_timestamp, span.first_kid)
            last = span.first + span.count - 1
            checkpoint = self.checkpoint
            if checkpoint is not None and span.cut_peaks is not None:
                at_cut = self.accumulator.copy()
                for height, node in span.cut_peaks:
                    at_cut.add_subtree(height, node)
                self._match_checkpoint(checkpoint.size, at_cut.root(), span.cut_head)
            for height, node in span.peaks:
                self.accumulator.add_subtree(height, node)
            self.last_timestamp = span.last_timestamp
            self.last_by_key.update(span.last_by_key)
            self.report.first_attested = self.report.first_attested or span.first_attested
            self.report.count = last
            self.report.head = span.head
        if span.fault is not None:
            self.expect_position(span.fault[0])  # a gap before the bad record comes first
            raise VerificationError(Fault(self.report.chain, *span.fault))

    def _match_checkpoint(self, seq: int, root: bytes, head: str) -> None:
        assert self.checkpoint is not None
        if root != self.checkpoint.root:
            self.fault(seq, FaultCheck.CHECKPOINT_ROOT, base64.b64encode(self.checkpoint.root).decode(),
                       base64.b64encode(root).decode(), "history differs from the checkpoint")
        if head != self.checkpoint.head:
            self.fault(seq, FaultCheck.CHECKPOINT_HEAD, self.checkpoint.head, head)
        self.report.checkpoint_size = seq

    def finish(self, roots: bool) -> ChainReport:
        if roots:
            self.report.root = self.accumulator.root()
        checkpoint = self.checkpoint
        if checkpoint is not None:
            if checkpoint.size == 0:
                self.report.checkpoint_size = 0
            elif self.report.count < checkpoint.size:
                self.fault(self.report.count + 1, FaultCheck.TRUNCATED, f"{checkpoint.size} records",
                           f"{self.report.count} records",
                           "the ledger no longer extends the checkpoint")
        return self.report


class Verifier:
    """Verifies chains of one store against a trusted anchor key.

    A chain is checked in spans of `SPAN` consecutive records. Each span is
    checked in one go (every record alone, then linked to the one before it in
    the span, and folded into the span's Merkle subtrees); the parent joins
    the spans (the link between them, the Merkle root, the checkpoint) and so
    holds only a few spans at a time, whatever the chain's length. A long
    chain's spans run in a process pool on every core, each worker reading its
    span from the database itself: only positions go out and summaries come
    back.
    """

    def __init__(self, store: RecordSource, anchor_raw: bytes, progress: Progress | None = None,
                 all_signatures: bool = True, roots: bool = True):
        self.store = store
        #: Report each chain's Merkle root. A chain verified against a checkpoint has its tree
        #: folded regardless; one verified alone, without roots, skips the Merkle hashing.
        self.roots = roots
        #: False: check every record's bytes, hash, link and position, and the signatures
        #: that carry the proof (each key's last record in the chain, the head among them);
        #: a fault found that way is re-examined with every signature, to name the first.
        self.all_signatures = all_signatures
        self.anchor_raw = anchor_raw
        self.progress = progress
        #: Proven by the genesis record's signature under the anchor (`verify_keys`).
        self.ledger_id = NO_LEDGER
        self.epochs: dict[str, KeyEpoch] = {}
        self._pool: Executor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify_keys(self) -> list[KeyEpoch]:
        """Walk the key chain from the anchor; every key must be introduced by the one before."""
        anchor_kid = key_id(self.anchor_raw)
        keys = {anchor_kid: self.anchor_raw}
        linker = _Linker(KEY_CHAIN, {anchor_kid: KeyEpoch(anchor_kid, self.anchor_raw, "")}, None)
        epochs: list[KeyEpoch] = []
        self.ledger_id = claimed_ledger_id(self.store) or NO_LEDGER
        for batch in self._pages(KEY_CHAIN):
            for position, data in batch:
                infos, fault = check_batch(KEY_CHAIN, [(position, data)], keys, self.ledger_id)
                if fault:
                    linker.expect_position(fault[0])
                    raise VerificationError(Fault(KEY_CHAIN, *fault))
                info = infos[0]
                linker.link(info)
                seq, _prev, _h, kid, timestamp, _leaf, event, new_key, _sig = info
                assert new_key is not None
                new_kid, new_public = new_key
                raw = parse_public_key(new_public)
                if key_id(raw) != new_kid:
                    linker.fault(seq, FaultCheck.KEY, f"kid {key_id(raw)}", new_kid, "kid does not match key")
                if seq == 1:
                    if event != "ledger.initialized" or new_kid != anchor_kid:
                        linker.fault(1, FaultCheck.ANCHOR, f"ledger initialized with key {anchor_kid}",
                                     f"{event} introducing {new_kid}",
                                     "this ledger was not made with the trusted key")
                    epochs.append(KeyEpoch(new_kid, raw, timestamp))
                else:
                    if event != "key.rotated":
                        linker.fault(seq, FaultCheck.KEY_CHAIN, "key.rotated", event)
                    current = epochs[-1]
                    if kid != current.kid:
                        linker.fault(seq, FaultCheck.KEY,
                                     f"rotation signed by current key {current.kid}", kid)
                    epochs[-1] = KeyEpoch(current.kid, current.public_raw, current.start, timestamp)
                    epochs.append(KeyEpoch(new_kid, raw, timestamp))
                keys = {e.kid: e.public_raw for e in epochs}
                linker.epochs = {e.kid: e for e in epochs}
        if not epochs:
            raise VerificationError(Fault(KEY_CHAIN, 1, FaultCheck.ANCHOR, "ledger.initialized", "no records",
                                          "the key chain is empty"))
        self.epochs = {e.kid: e for e in epochs}
        return epochs

    def _pages(self, chain: str) -> Iterator[list[tuple[int, bytes]]]:
        """Every stored record of a chain, `SPAN` at a time."""
        after = 0
        while True:
            rows = self.store.rows(chain, after, SPAN)
            if rows:
                yield rows
            if len(rows) < SPAN or rows[-1][0] <= after:  # (a damaged position ends it too)
                return
            after = rows[-1][0]

    def verify_chain(self, chain: str, checkpoint: Checkpoint | None = None) -> ChainReport:
        if not self.epochs:
            self.verify_keys()
        if self.all_signatures:
            return self._verify_chain(chain, checkpoint, True)
        try:
            return self._verify_chain(chain, checkpoint, False)
        except VerificationError as fast:
            try:
                self._verify_chain(chain, checkpoint, True)  # to name the first bad record
            except VerificationError as exact:
                raise exact from None
            raise fast from None  # pragma: no cover - every signature checks a superset

    def span_checker(self, chain: str, signatures: bool, cut: int = 0, merkle: bool = True) -> SpanChecker:
        """What checks `chain`'s spans under the verified key chain (`verify_keys` first)."""
        return SpanChecker(chain, {k: e.public_raw for k, e in self.epochs.items()},
                           {k: (e.start, e.end) for k, e in self.epochs.items()}, self.ledger_id,
                           signatures, cut, merkle)

    def _verify_chain(self, chain: str, checkpoint: Checkpoint | None, signatures: bool) -> ChainReport:
        total = self.store.last_seq(chain)
        linker = _Linker(chain, self.epochs, checkpoint)
        merkle = self.roots or checkpoint is not None
        checker = self.span_checker(chain, signatures, checkpoint.size if checkpoint is not None else 0,
                                    merkle)
        firsts = range(1, total + 1, SPAN)
        if total >= PARALLEL_THRESHOLD and (os.cpu_count() or 1) > 1:
            spans = self._parallel(checker, firsts)
        else:
            spans = (checker.check(first, self.store.rows(chain, first - 1, SPAN)) for first in firsts)
        for span in spans:
            linker.join(span)
            if self.progress:
                self.progress(linker.report.count, total)
        if not signatures:
            for kid, (seq, digest, sig) in sorted(linker.last_by_key.items(), key=lambda i: i[1][0]):
                if not verify_signature(self.epochs[kid].public_raw, sig,
                                        signed_message(digest, self.ledger_id)):
                    linker.fault(seq, FaultCheck.SIGNATURE,
                                 f"valid signature by {kid} for ledger {self.ledger_id}",
                                 "bad signature", "forged, altered, or signed for another ledger")
        return linker.finish(merkle)

    def _parallel(self, checker: SpanChecker, firsts: range) -> Iterator[Span]:
        """The spans, checked in a pool, in order; at most a few in flight at a time.

        Workers read their spans from the database when the store is one (it
        has a `db` to open); otherwise the parent reads the rows and sends them.
        """
        db = getattr(self.store, "db", None)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1, initializer=_init_worker,
                initargs=(db, parent_identity()),
            )
        window = 4 * (os.cpu_count() or 1)
        pending: deque[Future[Span]] = deque()
        for first in firsts:
            rows = None if db is not None else self.store.rows(checker.chain, first - 1, SPAN)
            pending.append(self._pool.submit(_span_in_worker, checker, first, rows))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def verify_ledger(
    store: RecordSource,
    anchor_raw: bytes,
    *,
    fleets: Sequence[str] | None = None,
    checkpoint_text: str | None = None,
    progress: Progress | None = None,
    all_signatures: bool = True,
    roots: bool = False,
) -> LedgerReport:
    """Verify the key chain, then each fleet (all of them unless named); each chain's Merkle
    root is reported with `roots` (or a checkpoint to match), as `Ledger.verify` does."""
    report = LedgerReport()
    with Verifier(store, anchor_raw, progress, all_signatures, roots) as verifier:
        report.keys = verifier.verify_keys()
        report.ledger_id = verifier.ledger_id
        checkpoint = None
        if checkpoint_text is not None:
            checkpoint, signatures = parse_checkpoint(checkpoint_text)
            if not checkpoint_signed_by(checkpoint, signatures, [e.public_raw for e in report.keys]):
                raise InputError("checkpoint signature does not verify under any key of this ledger")
            prefix = checkpoint_origin(verifier.ledger_id, "")
            if not checkpoint.origin.startswith(prefix):
                raise InputError(f"checkpoint origin {shown(checkpoint.origin)} is not of this ledger "
                                 f"(its origins start {prefix!r})")
            fleets = [checkpoint.origin.removeprefix(prefix)]
        names = list(fleets) if fleets is not None else store.chains()
        for name in names:
            report.chains.append(verifier.verify_chain(name, checkpoint))
        if isinstance(store, Store):  # a bundle's policy chain is checked by `ledger.bundle`
            heads = {chain.chain: chain.count for chain in report.chains}  # no further than verified
            report.actors = verify_actors(store, verifier.ledger_id, heads,
                                          lambda chain: verifier.verify_chain(chain).count)
            if not report.actors.enforced:
                _refuse_attested_in_open_mode(report)
    return report


def _refuse_attested_in_open_mode(report: LedgerReport) -> None:
    """A record the gate attested was decided under an enforced policy: with no policy chain
    that enforces one (its records deleted or cut back), its actor checks cannot be made,
    so the ledger is not taken as open mode."""
    for chain in report.chains:
        if chain.first_attested:
            records = report.actors.policy_records
            found = (f"{records} {POLICY_CHAIN} record(s) that never enforce a policy" if records
                     else f"no {POLICY_CHAIN} records")
            raise VerificationError(Fault(
                chain.chain, chain.first_attested, FaultCheck.POLICY_POSITION,
                f"a policy chain ({POLICY_CHAIN}) that enforces the policy this record names", found,
                "policy records deleted? the record's actor checks cannot be made"))
