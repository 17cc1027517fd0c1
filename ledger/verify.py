"""Whole-ledger verification, with evidence of the first fault.

Per record, a worker checks what needs only the record: its position, that its
bytes are canonical, its hash, its schema and its Ed25519 signature. Those run
in a process pool on every core (signature checks dominate and hold the GIL).
The parent checks what links records: no gap in `seq`, each `prev` is the hash
before it, timestamps never go back, and each signing key was in force at that
time according to the key chain, which is itself verified first from the
trusted anchor key. The parent also folds the Merkle root for checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent

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
)
from ledger.children import die_with_parent, parent_identity
from ledger.encoding import canonical
from ledger.errors import Fault, FaultCheck, InputError, VerificationError
from ledger.events import INTERNAL_EVENTS, stored_schema_error
from ledger.keys import key_id, parse_public_key, verify_signature
from ledger.names import is_ledger_id, shown
from ledger.store import KEY_CHAIN, Store, stored_bytes

BATCH = 1024
PARALLEL_THRESHOLD = 4096
Progress = Callable[[int, int], None]

# (seq, prev, hash, kid, timestamp, leaf hash, event type, new key or None, sig)
RecordInfo = tuple[int, str, str, str, str, bytes, str, "tuple[str, str] | None", str]
# (seq, check, expected, found, detail)
RawFault = tuple[int, FaultCheck, str, str, str]


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
    root: bytes = b""
    checkpoint_size: int | None = None


@dataclass
class LedgerReport:
    keys: list[KeyEpoch] = field(default_factory=list)
    ledger_id: str = NO_LEDGER
    chains: list[ChainReport] = field(default_factory=list)


def check_batch(
    chain: str, rows: Sequence[tuple[int, bytes]], keys: dict[str, bytes], ledger_id: str,
    signatures: bool = True,
) -> tuple[list[RecordInfo], RawFault | None]:
    """Check each record on its own; stop at the first fault in the batch.

    Signatures are checked as made for the ledger `ledger_id`: a record copied
    from another ledger, even one signed with the same key, fails here. With
    `signatures` false they are left to the caller, which checks those that
    carry the proof (see `Verifier`).
    """
    infos: list[RecordInfo] = []
    for position, data in rows:
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return infos, (position, FaultCheck.ENCODING, "a JSON record", "undecodable bytes", str(exc))
        if not isinstance(record, dict):
            return infos, (position, FaultCheck.ENCODING, "a JSON object", type(record).__name__, "")
        if canonical(record) != data:
            return infos, (position, FaultCheck.ENCODING, "canonical JSON bytes", "non-canonical bytes", "")
        seq = record.get("seq")
        if seq != position:
            return infos, (position, FaultCheck.SEQ, str(position), repr(seq), "record stored out of place")
        schema_error = stored_schema_error(record)
        if schema_error is not None:
            return infos, (position, FaultCheck.SCHEMA, "a valid record", "invalid record", schema_error)
        if record["fleet"] != chain:
            return infos, (position, FaultCheck.FLEET, chain, record["fleet"], "record moved between chains")
        stated = record["hash"]
        body = {k: v for k, v in record.items() if k != "hash" and k != "sig"}
        actual = hashlib.sha256(canonical(body)).hexdigest()
        if actual != stated:
            return infos, (position, FaultCheck.HASH, actual, stated, "record content changed")
        kid = record["kid"]
        public_raw = keys.get(kid)
        if public_raw is None:
            return infos, (position, FaultCheck.SIGNATURE, "a key of this ledger", f"unknown key {kid}", "")
        if signatures and not verify_signature(public_raw, record["sig"],
                                               signed_message(actual, ledger_id)):
            return infos, (position, FaultCheck.SIGNATURE, f"valid signature by {kid} for ledger {ledger_id}",
                           "bad signature", "forged, altered, or signed for another ledger")
        new_key = None
        if record["event"] in ("ledger.initialized", "key.rotated"):
            new_key = (record["new_kid"], record["public_key"])
        if (record["event"] in INTERNAL_EVENTS) != (chain == KEY_CHAIN):
            return infos, (position, FaultCheck.EVENT, "an event of this chain", record["event"], "")
        infos.append(
            (position, record["prev"], actual, kid, record["timestamp"], leaf_hash(data),
             record["event"], new_key, record["sig"])
        )
    return infos, None


_worker_keys: dict[str, bytes] = {}
_worker_ledger: list[str] = [NO_LEDGER]


def _init_worker(keys: dict[str, bytes], ledger_id: str, parent: tuple[int, bool]) -> None:
    die_with_parent(*parent)
    _worker_keys.clear()
    _worker_keys.update(keys)
    _worker_ledger[0] = ledger_id


def _check_in_worker(
    chain: str, rows: Sequence[tuple[int, bytes]], signatures: bool = True
) -> tuple[list[RecordInfo], RawFault | None]:
    return check_batch(chain, rows, _worker_keys, _worker_ledger[0], signatures)



def claimed_ledger_id(store: Store) -> str | None:
    """The identity the ledger's genesis record states, if it is a well-formed one.

    Unverified (it serves to find the ledger's pinned anchor and to sign new
    records), so it is taken only in the one form an identity has: 32 lowercase
    hex digits, not all zero. Anything else, a path part included, is no identity.
    """
    first = store.page(KEY_CHAIN, 0, 1)
    if not first:
        return None
    try:
        value = orjson.loads(stored_bytes(first[0].state)).get("ledger_id")
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
        seq, prev, digest, kid, timestamp, leaf, _event, _new_key, sig = info
        report = self.report
        self.expect_position(seq)
        if prev != report.head:
            self.fault(seq, FaultCheck.PREV, report.head, prev, "link to the record before is broken")
        if timestamp < self.last_timestamp:
            self.fault(seq, FaultCheck.TIMESTAMP, f">= {self.last_timestamp}", timestamp, "time went back")
        epoch = self.epochs.get(kid)
        if epoch is None:
            self.fault(seq, FaultCheck.SIGNATURE, "a key of this ledger", f"unknown key {kid}")
        elif timestamp < epoch.start or (epoch.end is not None and timestamp > epoch.end):
            self.fault(seq, FaultCheck.KEY, f"key {kid} in force {epoch.start}..{epoch.end or 'now'}",
                       timestamp, "signed outside the key's time in force (retired key?)")
        self.last_timestamp = timestamp
        self.last_by_key[kid] = (seq, digest, sig)
        self.accumulator.add(leaf)
        report.count = seq
        report.head = digest
        if self.checkpoint is not None and seq == self.checkpoint.size:
            self._match_checkpoint(seq)

    def _match_checkpoint(self, seq: int) -> None:
        assert self.checkpoint is not None
        root = self.accumulator.root()
        if root != self.checkpoint.root:
            self.fault(seq, FaultCheck.CHECKPOINT_ROOT, base64.b64encode(self.checkpoint.root).decode(),
                       base64.b64encode(root).decode(), "history differs from the checkpoint")
        if self.report.head != self.checkpoint.head:
            self.fault(seq, FaultCheck.CHECKPOINT_HEAD, self.checkpoint.head, self.report.head)
        self.report.checkpoint_size = seq

    def finish(self) -> ChainReport:
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


def _batches(rows: Iterator[StoredEvent]) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for row in rows:
        batch.append((row.originator_version, stored_bytes(row.state)))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Verifier:
    """Verifies chains of one store against a trusted anchor key."""

    def __init__(self, store: Store, anchor_raw: bytes, progress: Progress | None = None,
                 all_signatures: bool = True):
        self.store = store
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
        for batch in _batches(self.store.scan(KEY_CHAIN)):
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

    def _verify_chain(self, chain: str, checkpoint: Checkpoint | None, signatures: bool) -> ChainReport:
        last = self.store.last_row(chain)
        total = last.originator_version if last else 0
        linker = _Linker(chain, self.epochs, checkpoint)
        batches = _batches(self.store.scan(chain))
        if total >= PARALLEL_THRESHOLD:
            results = self._parallel(chain, batches, signatures)
        else:
            keys = {k: e.public_raw for k, e in self.epochs.items()}
            results = (check_batch(chain, batch, keys, self.ledger_id, signatures) for batch in batches)
        for infos, fault in results:
            for info in infos:
                linker.link(info)
            if fault is not None:
                linker.expect_position(fault[0])  # a gap before the bad record comes first
                raise VerificationError(Fault(chain, *fault))
            if self.progress:
                self.progress(linker.report.count, total)
        if not signatures:
            for kid, (seq, digest, sig) in sorted(linker.last_by_key.items(), key=lambda i: i[1][0]):
                if not verify_signature(self.epochs[kid].public_raw, sig,
                                        signed_message(digest, self.ledger_id)):
                    linker.fault(seq, FaultCheck.SIGNATURE,
                                 f"valid signature by {kid} for ledger {self.ledger_id}",
                                 "bad signature", "forged, altered, or signed for another ledger")
        return linker.finish()

    def _parallel(
        self, chain: str, batches: Iterator[list[tuple[int, bytes]]], signatures: bool = True
    ) -> Iterator[tuple[list[RecordInfo], RawFault | None]]:
        if self._pool is None:
            keys = {k: e.public_raw for k, e in self.epochs.items()}
            self._pool = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1, initializer=_init_worker,
                initargs=(keys, self.ledger_id, parent_identity()),
            )
        window = 4 * (os.cpu_count() or 1)
        pending: deque[Future[Any]] = deque()
        for batch in batches:
            pending.append(self._pool.submit(_check_in_worker, chain, batch, signatures))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def verify_ledger(
    store: Store,
    anchor_raw: bytes,
    *,
    fleets: Sequence[str] | None = None,
    checkpoint_text: str | None = None,
    progress: Progress | None = None,
    all_signatures: bool = True,
) -> LedgerReport:
    """Verify the key chain, then each fleet (all of them unless named)."""
    report = LedgerReport()
    with Verifier(store, anchor_raw, progress, all_signatures) as verifier:
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
    return report
