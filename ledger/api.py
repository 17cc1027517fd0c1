"""The ledger as a Python object: open, append, read, verify, checkpoint.

This is the one place that puts records into chains. It validates every body
against its schema before anything is written, seals it on the chain's current
head with the ledger's current key, and retries on a lost race for the next
position, so concurrent writers never fork a chain.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
)

from ledger import commands
from ledger.chain import (
    NO_LEDGER,
    Checkpoint,
    Head,
    checkpoint_origin,
    link,
    note_key_name,
    seal,
    sign_checkpoint,
    signed_message,
    vkey,
)
from ledger.config import DEFAULT_KEY
from ledger.encoding import canonical, check_values
from ledger.errors import (
    ConflictError,
    HeadMovedError,
    InputError,
    KeyFileError,
    LedgerError,
    NotInitializedError,
    RecordError,
    StorageError,
    TransientStorageError,
)
from ledger.events import ATTESTATION_FIELDS, GATE_COMMANDS, check_fleet_name, validate_input
from ledger.evidence import prove_consistency, prove_inclusion
from ledger.keys import (
    Signer,
    load_signer,
    next_key_path,
    parse_public_key,
    public_key_path,
    write_private_key,
    write_public_key,
)
from ledger.policy import POLICY_CHAIN
from ledger.signing import BatchSigner, Signatures
from ledger.store import (
    KEY_CHAIN,
    PAGE_SIZE,
    KeyChainMovedError,
    PolicyMovedError,
    SealedRecord,
    Store,
    default_db,
    storage_errors,
    storage_fault,
    stored_bytes,
    stream_id,
)
from ledger.trust import Anchor, pin_anchor, resolve_anchor
from ledger.verify import LedgerReport, Progress, Verifier, claimed_ledger_id, verify_ledger

CHUNK = 1000
MAX_ATTEMPTS = 60
RECONNECT_SECONDS = 60.0
SIGN_AHEAD = 3  # chunks being signed while one is inserted


@dataclass(frozen=True)
class Receipt:
    """What an append returns: where the record landed. It is durable."""

    fleet: str
    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.fleet} seq {self.seq} hash {self.hash}"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def random_ledger_id() -> str:
    """A new ledger identity: 16 random bytes in hex, never the all-zero `NO_LEDGER`."""
    ledger_id = secrets.token_hex(16)
    while ledger_id == NO_LEDGER:  # pragma: no cover - one chance in 2**128
        ledger_id = secrets.token_hex(16)
    return ledger_id


@dataclass(frozen=True)
class Sources:
    """Where a ledger takes the time of its records, its new keys and its identity.

    By default the system clock and the operating system's randomness. Fixed
    sources (a clock that ticks by a set step, keys from fixed seeds, a fixed
    identity) make a ledger whose every byte is reproducible: the known-answer
    vectors that pin the record, checkpoint and proof formats are made that way.
    Everything else (hashing, signing, ordering) is the same code either way.
    """

    now: Callable[[], str] = utc_now
    new_signer: Callable[[], Signer] = Signer.generate
    new_ledger_id: Callable[[], str] = random_ledger_id


SYSTEM = Sources()


def default_key() -> Path:
    """The key file a library caller means when it names none (the CLI reads LEDGER_KEY)."""
    return Path(DEFAULT_KEY)


@dataclass(frozen=True)
class KeyState:
    """The key that signs now: its position in the key chain, id, public key, start."""

    seq: int
    kid: str
    public: str
    since: str


class Ledger:
    """One ledger database and, for writing, its signing key."""

    def __init__(self, store: Store, signer: Signer | None = None, key_path: Path | None = None,
                 ledger_id: str = NO_LEDGER, sources: Sources = SYSTEM):
        self.store = store
        self.sources = sources
        self.signer = signer
        #: This ledger's identity (from its genesis record), bound into every signature.
        self.ledger_id = ledger_id
        #: Where `init` pinned the anchor, if it did.
        self.pinned: Path | None = None
        self.key_path = key_path or (signer.path if signer else None) or default_key()
        # What this writer last saw; a stale value costs one retry, never a fork:
        # the store refuses a taken position and a moved key chain.
        self._heads: dict[str, Head] = {}
        self._key: KeyState | None = None
        self._batch_signer: BatchSigner | None = None

    # -- opening --------------------------------------------------------------

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None,
             *, writable: bool = True, read_only: bool | None = None,
             lock_timeout_s: float | None = None, sources: Sources = SYSTEM) -> Ledger:
        """Open an initialised ledger; `writable` loads the signing key.

        `read_only` (by default: when not `writable`) opens a SQLite file so
        that nothing is written to it or beside it, which lets a reviewer
        verify and query a copy they may not write. `lock_timeout_s` shortens
        how long a SQLite write waits for another writer's lock (default 30 s).
        """
        store = Store(str(db) if db is not None else default_db(),
                      read_only=not writable if read_only is None else read_only)
        try:
            if lock_timeout_s is not None:
                store.set_lock_timeout(lock_timeout_s)
            if store.last(KEY_CHAIN) is None:
                raise NotInitializedError(f"{store.label} holds no ledger (run `ledger init`)")
            ledger_id = claimed_ledger_id(store)
            if ledger_id is None and writable:
                raise InputError(f"{store.label} has no valid ledger id in its genesis record (made by "
                                 "an older format, or damaged: run `ledger verify`); this version "
                                 "writes format 2 only")
            key_path = Path(key) if key is not None else default_key()
            signer = load_signer(key_path) if writable else None
        except BaseException:
            store.close()
            raise
        return cls(store, signer, key_path, ledger_id or NO_LEDGER, sources)

    @classmethod
    def init(cls, db: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None,
             *, actor: str = "ledger-init", reuse_key: bool = False, pin: bool = True,
             sources: Sources = SYSTEM) -> Ledger:
        """Create a ledger: its identity, its first signing key, and (with `pin`) its
        anchor pinned in the user's configuration for later `verify` runs.

        An existing key file is refused unless `reuse_key`: a key shared between
        ledgers is a choice to make knowingly (their records stay apart: each
        signature binds its ledger's identity).
        """
        key_path = Path(key) if key is not None else default_key()
        if key_path.exists() and not reuse_key:  # checked before anything is created
            raise KeyFileError(f"key file {key_path} already exists; refusing to reuse it for a new "
                               "ledger (give --reuse-key to sign this ledger with it too)")
        store = Store(str(db) if db is not None else default_db(), create=True)
        try:
            if store.last(KEY_CHAIN) is not None:
                raise InputError(f"{store.label} is already a ledger; refusing to initialise it again")
            signer = load_signer(key_path) if key_path.exists() else sources.new_signer()
            ledger_id = sources.new_ledger_id()
            ledger = cls(store, signer, key_path, ledger_id, sources)
            if pin:  # first: a ledger is never left without the pin its `init` promised
                ledger.pinned = pin_anchor(ledger_id, signer.public_raw)
            try:
                if signer.path is None:
                    write_private_key(key_path, signer)
                if not public_key_path(key_path).exists():
                    write_public_key(public_key_path(key_path), signer.public_raw)
                ledger._append_chunk(KEY_CHAIN, [commands.record(
                    "ledger.initialized", actor, "ledger", public_key=signer.public_text,
                    new_kid=signer.kid, ledger_id=ledger_id,
                )], check_key=False)
            except BaseException:
                made = True  # when unsure whether the genesis landed, keep the pin
                with contextlib.suppress(LedgerError):
                    made = claimed_ledger_id(store) == ledger_id
                if ledger.pinned is not None and not made:
                    ledger.pinned.unlink(missing_ok=True)  # the ledger it names was never made
                raise
        except BaseException:
            store.close()
            raise
        return ledger

    def close(self) -> None:
        if self._batch_signer is not None:
            self._batch_signer.close()
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys -----------------------------------------------------------------

    def key_history(self) -> list[dict[str, Any]]:
        return [orjson.loads(stored_bytes(row.state)) for row in self.store.scan(KEY_CHAIN)]

    def current_key(self) -> tuple[str, str, str]:
        """(kid, public key, in force since) of the key that signs now."""
        key = self._read_key_state()
        return key.kid, key.public, key.since

    def _read_key_state(self) -> KeyState:
        row = self.store.last_row(KEY_CHAIN)
        if row is None:
            raise NotInitializedError(f"{self.store.label} holds no ledger (run `ledger init`)")
        try:
            record = orjson.loads(stored_bytes(row.state))
            return KeyState(row.originator_version, str(record["new_kid"]),
                            str(record["public_key"]), str(record["timestamp"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise StorageError(
                "the key chain's last record is unreadable; the ledger is damaged (run `ledger verify`)"
            ) from None

    def _signer_for(self, current_kid: str) -> Signer:
        signer = self.signer
        if signer is None:
            raise KeyFileError("this operation needs the signing key (give --key / LEDGER_KEY)")
        if signer.kid == current_kid:
            return signer
        if signer.path is not None:
            staged = next_key_path(signer.path, current_kid)
            if staged.exists():
                os.replace(staged, signer.path)  # finish a rotation cut short
            reloaded = load_signer(signer.path)
            if reloaded.kid == current_kid:
                self.signer = reloaded
                return reloaded
        raise KeyFileError(
            f"key {signer.kid} is not this ledger's signing key (the ledger signs with {current_kid})"
        )

    def rotate_key(self, actor: str, reason: str | None = None) -> Receipt:
        """Introduce a new signing key in a record signed by the retiring one."""
        current_kid, _, _ = self.current_key()
        signer = self._signer_for(current_kid)
        if signer.path is None:
            raise KeyFileError("cannot rotate a key that has no key file")
        new = self.sources.new_signer()
        staged = next_key_path(signer.path, new.kid)  # named by its kid: rotations never collide
        write_private_key(staged, new)
        body = commands.record("key.rotated", actor, "ledger", public_key=new.public_text, new_kid=new.kid,
                      reason=reason or None)
        try:
            validate_input(body)
            receipt = self._rotate(body, signer)
        except BaseException:
            self._key = None
            with contextlib.suppress(LedgerError, PersistenceError):
                if self._read_key_state().kid != new.kid:
                    staged.unlink(missing_ok=True)  # surely not committed: the key is not needed
            raise  # otherwise the staged key stays: the next writer finishes the rotation
        os.replace(staged, signer.path)
        new.path = signer.path
        self.signer = new
        return receipt

    def _rotate(self, body: Mapping[str, Any], signer: Signer) -> Receipt:
        """Seal the rotation while holding the write lock.

        Its timestamp is then later than every record committed with the old
        key, and every later append sees the new key chain (its guard fails and
        it re-seals with the new key): no legitimate record is ever stamped as
        signed after its key's retirement.
        """
        sealed: list[Receipt] = []

        def make() -> list[SealedRecord]:
            key = self._read_key_state()
            if key.kid != signer.kid:
                raise KeyFileError(f"key {signer.kid} was rotated meanwhile (now {key.kid})")
            head = self.head(KEY_CHAIN)
            # Later than every record already committed, whatever clock stamped it.
            heads = [self.head(fleet).timestamp for fleet in self.store.chains()]
            timestamp = max(self.sources.now(), head.timestamp, *heads)
            record, data = seal(body, fleet=KEY_CHAIN, seq=head.seq + 1, prev=head.hash,
                                timestamp=timestamp, signer=signer, ledger_id=self.ledger_id)
            sealed.append(Receipt(KEY_CHAIN, head.seq + 1, record["hash"]))
            return [SealedRecord(stream_id(KEY_CHAIN), head.seq + 1, record["event"], data)]

        try:
            self.store.insert_locked(make)
        except storage_errors() as exc:
            raise storage_fault(exc, self.store.label, "write to") from None
        self._key = None
        return sealed[0]

    # -- writing --------------------------------------------------------------

    def append(self, fleet: str, body: Mapping[str, Any], *, expect_seq: int | None = None) -> Receipt:
        """Validate, seal and durably store one record.

        With `expect_seq`, append only if the chain's head is still at that seq
        (a decision taken at that head stays valid); otherwise `HeadMovedError`.
        """
        check_fleet_name(fleet)
        return self._append_chunk(fleet, [self.validate(body)], expect_seq=expect_seq)[0]

    def append_many(self, fleet: str, bodies: Iterable[Mapping[str, Any]],
                    chunk: int = CHUNK, *, expect_seq: int | None = None) -> list[Receipt]:
        """Validate every body first, then store them in chunks of one transaction each.

        Nothing is written unless every body is valid. Many chunks take a
        pipelined path: the signing pool signs the next chunks while the
        parent links, encodes and inserts the current one.

        With `expect_seq` the bodies must fit one chunk, and they are stored
        only if the chain's head is still at that seq (else `HeadMovedError`):
        what a writer checked against the chain up to there (that a fact is
        not already in it) still holds when its records commit.
        """
        check_fleet_name(fleet)
        checked = [self.validate(body, f"record {n}") for n, body in enumerate(bodies, 1)]
        chunks = [checked[start:start + chunk] for start in range(0, len(checked), chunk)]
        if expect_seq is not None:
            if len(chunks) > 1:
                raise ValueError(f"expect_seq needs the records in one transaction (at most {chunk})")
            return self._append_chunk(fleet, chunks[0], expect_seq=expect_seq) if chunks else []
        if len(chunks) > 1:
            return self._append_pipelined(fleet, chunks)
        return self._append_chunk(fleet, chunks[0]) if chunks else []

    def _append_pipelined(self, fleet: str, chunks: Sequence[Sequence[dict[str, Any]]]) -> list[Receipt]:
        """Link and sign up to `SIGN_AHEAD` chunks ahead of the insert; at the first
        chunk that cannot be stored as linked (a lost race, a rotation, a lost
        connection) hand it and the rest to `_append_chunk`, which retries."""
        key = self._key or self._read_key_state()
        signer = self._signer_for(key.kid)
        head = self._heads[fleet] if fleet in self._heads else self.head(fleet)
        timestamp = max(self.sources.now(), head.timestamp, key.since)
        signing = self._signing(signer)
        prev, seq = head.hash, head.seq
        ahead: deque[tuple[int, list[dict[str, Any]], Signatures]] = deque()
        receipts: list[Receipt] = []
        for index in range(len(chunks) + SIGN_AHEAD):
            if index < len(chunks):
                records = []
                for body in chunks[index]:
                    seq += 1
                    record = link(body, fleet=fleet, seq=seq, prev=prev, timestamp=timestamp,
                                  kid=signer.kid)
                    prev = record["hash"]
                    records.append(record)
                messages = [signed_message(r["hash"], self.ledger_id) for r in records]
                ahead.append((index, records, signing.submit(messages)))
            if len(ahead) > SIGN_AHEAD or (index >= len(chunks) and ahead):
                done, records, signatures = ahead.popleft()
                stored = self._store_signed(fleet, records, signatures, key.seq)
                if not stored:
                    self._heads.pop(fleet, None)
                    self._key = None
                    for part in chunks[done:]:
                        receipts += self._append_chunk(fleet, part)
                    return receipts
                receipts += stored
        last = receipts[-1]
        self._heads[fleet] = Head(last.seq, last.hash, timestamp)
        self._key = key
        return receipts

    def _store_signed(self, fleet: str, records: list[dict[str, Any]], signatures: Signatures,
                      key_seq: int) -> list[Receipt]:
        """Insert linked records once their signatures are in; [] if the insert failed."""
        events, receipts = self._encode(fleet, records, signatures.result())
        try:
            self.store.insert(events, key_chain_seq=key_seq)
        except (KeyChainMovedError, PersistenceError):
            return receipts if self._landed(fleet, receipts) else []
        return receipts

    def append_gated(self, fleet: str, bodies: Sequence[Mapping[str, Any]], *,
                     expect_seq: int, policy_seq: int) -> list[Receipt]:
        """Store the records of one decision, in one transaction, only at head `expect_seq`
        and while the policy chain is still at `policy_seq`.

        For the gate (`ledger.gate.FleetService`) alone: it has decided these
        records against the fleet's state at that head and the policy at that
        position. A policy change (a revocation, a role) that commits in between
        fails the write with `HeadMovedError`, and the gate decides again.
        Everyone else appends facts with `append` and submits decisions to the gate.
        """
        check_fleet_name(fleet)
        checked = [self.validate(body, gated=True) for body in bodies]
        return self._append_chunk(fleet, checked, expect_seq=expect_seq, policy_seq=policy_seq)

    def append_policy(self, bodies: Sequence[Mapping[str, Any]], *, expect_seq: int) -> list[Receipt]:
        """Store the records of one policy decision in the policy chain, only at head `expect_seq`.

        For the gate alone (`FleetService.submit_policy`), like `append_gated`.
        Sealed while holding the write lock, like a key rotation: its timestamp is
        then no earlier than any record already committed, so a decision stamped
        after a policy change was written after it too (`verify` relies on this
        to tell a decision taken under a superseded policy).
        """
        checked = [self.validate(body, gated=True) for body in bodies]
        sealed: list[Receipt] = []
        sealed_at = ""

        def make() -> list[SealedRecord]:
            nonlocal sealed_at
            head = self.head(POLICY_CHAIN)
            if head.seq != expect_seq:
                raise HeadMovedError(f"{POLICY_CHAIN} moved from seq {expect_seq} to {head.seq}")
            key = self._read_key_state()
            signer = self._signer_for(key.kid)
            heads = [self.head(chain).timestamp for chain in self.store.chains()]
            sealed_at = max(utc_now(), head.timestamp, key.since, *heads)
            events, receipts = self._seal_all(POLICY_CHAIN, checked, head, sealed_at, signer)
            sealed.extend(receipts)
            return events

        try:
            self.store.insert_locked(make)
        except storage_errors() as exc:
            raise storage_fault(exc, self.store.label, "write to") from None
        last = sealed[-1]
        self._heads[POLICY_CHAIN] = Head(last.seq, last.hash, sealed_at)
        return sealed

    @staticmethod
    def validate(body: Mapping[str, Any], where: str = "record", *, gated: bool = False) -> dict[str, Any]:
        """A copy of the body, checked against the canonical value set and its schema.

        Decisions and refusals (`gated`) pass only for the gate; a fact path
        refuses them with the command that records them properly.
        """
        record = dict(body)
        check_values(record)
        event_type = validate_input(record, where)
        if event_type.internal:
            raise RecordError(f"{where}: '{event_type.name}' is written by the ledger itself")
        if event_type.gated and not gated:
            raise RecordError(f"{where}: '{event_type.name}' is a decision; it is validated and recorded "
                              f"by {GATE_COMMANDS.get(event_type.name, 'the gate')}, not appended as a fact")
        if not gated:
            claimed = sorted(ATTESTATION_FIELDS.intersection(record))
            if claimed:
                raise RecordError(f"{where}: field {claimed[0]!r} is set by the ledger when it checks an "
                                  "actor's signature (sign the fact: --actor-key)")
        return record

    def head(self, chain: str) -> Head:
        last = self.store.last(chain)
        if last is None:
            return Head.empty()
        try:
            record = orjson.loads(last)
            return Head(int(record["seq"]), str(record["hash"]), str(record["timestamp"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise StorageError(
                f"the last record of {chain} is unreadable; the ledger is damaged (run `ledger verify`)"
            ) from None

    def _append_chunk(self, chain: str, bodies: Sequence[Mapping[str, Any]], *, check_key: bool = True,
                      expect_seq: int | None = None, policy_seq: int | None = None) -> list[Receipt]:
        """Seal on the head and insert; retry lost races and a store that is briefly away.

        A lost race (the position is taken) re-reads the head and seals again.
        A connection lost around a commit (a database restart) is retried for
        up to `RECONNECT_SECONDS`. Any attempt whose outcome is unknown is
        remembered, and before sealing again the retry looks for it at its
        positions: if it did land, its receipts are returned and nothing is
        written twice. With `policy_seq` the write also needs the policy chain
        still at that position (`HeadMovedError` if it moved).
        """
        reconnect_until: float | None = None
        unknown: list[tuple[list[Receipt], str]] = []  # attempts that may have committed
        for attempt in range(MAX_ATTEMPTS):
            receipts: list[Receipt] = []
            try:
                landed = next(((r, at) for r, at in unknown if self._landed(chain, r)), None)
                if landed is not None:
                    receipts, sealed_at = landed
                    break  # an earlier attempt committed; only its acknowledgement was lost
                if check_key:
                    key = self._key or self._read_key_state()
                    signer = self._signer_for(key.kid)
                else:  # the genesis of the key chain: there is no key chain yet
                    assert self.signer is not None
                    key, signer = KeyState(0, self.signer.kid, self.signer.public_text, ""), self.signer
                if expect_seq is not None or chain not in self._heads:
                    self._heads[chain] = self.head(chain)
                head = self._heads[chain]
                if expect_seq is not None and head.seq != expect_seq:
                    raise HeadMovedError(f"{chain} moved from seq {expect_seq} to {head.seq}")
                sealed_at = max(self.sources.now(), head.timestamp, key.since)
                events, receipts = self._seal_all(chain, bodies, head, sealed_at, signer)
                self.store.insert(events, key_chain_seq=key.seq if check_key else None,
                                  policy_seq=policy_seq)
                break
            except PolicyMovedError:
                self._heads.pop(chain, None)
                raise HeadMovedError(f"{POLICY_CHAIN} moved past seq {policy_seq}") from None
            except IntegrityError:
                self._heads.pop(chain, None)
                if self._landed(chain, receipts):
                    break
                if expect_seq is not None:
                    raise HeadMovedError(f"{chain} moved past seq {expect_seq}") from None
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))
            except KeyChainMovedError:
                self._key = None  # a rotation landed: re-read the key and seal again
                unknown.append((receipts, sealed_at))  # a retried insert may have committed first
            except (InterfaceError, OperationalError, TransientStorageError) as exc:
                self._heads.pop(chain, None)
                self._key = None
                if receipts:
                    unknown.append((receipts, sealed_at))
                now = time.monotonic()
                reconnect_until = reconnect_until or now + RECONNECT_SECONDS
                if now > reconnect_until or self.store.is_sqlite:  # SQLite already waited its lock timeout
                    raise storage_fault(exc, self.store.label, "write to") from None
                time.sleep(min(0.1 * 2**attempt, 1.0))
            except storage_errors() as exc:
                raise storage_fault(exc, self.store.label, "write to") from None
        else:
            raise ConflictError(f"gave up after {MAX_ATTEMPTS} tries at the head of {chain}")
        last = receipts[-1]
        self._heads[chain] = Head(last.seq, last.hash, sealed_at)
        self._key = key if check_key and chain != KEY_CHAIN and landed is None else None
        return receipts

    def _landed(self, chain: str, receipts: Sequence[Receipt]) -> bool:
        """Whether these sealed records are the ones stored at their positions."""
        if not receipts:
            return False
        for receipt in (receipts[0], receipts[-1]):
            rows = self.store.page(chain, receipt.seq - 1, 1)
            if not rows or rows[0].originator_version != receipt.seq:
                return False
            if orjson.loads(stored_bytes(rows[0].state)).get("hash") != receipt.hash:
                return False
        return True

    def _signing(self, signer: Signer) -> BatchSigner:
        if self._batch_signer is None or self._batch_signer.signer is not signer:
            if self._batch_signer is not None:
                self._batch_signer.close()
            self._batch_signer = BatchSigner(signer)
        return self._batch_signer

    def _seal_all(self, chain: str, bodies: Sequence[Mapping[str, Any]], head: Head, timestamp: str,
                  signer: Signer) -> tuple[list[SealedRecord], list[Receipt]]:
        """Link the bodies on `head`, sign their hashes (on every core when many), encode."""
        records, prev = [], head.hash
        for seq, body in enumerate(bodies, head.seq + 1):
            record = link(body, fleet=chain, seq=seq, prev=prev, timestamp=timestamp, kid=signer.kid)
            prev = record["hash"]
            records.append(record)
        signatures = self._signing(signer).sign_all([signed_message(r["hash"], self.ledger_id)
                                                     for r in records])
        return self._encode(chain, records, signatures)

    @staticmethod
    def _encode(chain: str, records: list[dict[str, Any]],
                signatures: Sequence[str]) -> tuple[list[SealedRecord], list[Receipt]]:
        """Add each signature and encode: the stored bytes are the signed record."""
        events, receipts = [], []
        stream = stream_id(chain)
        for record, sig in zip(records, signatures, strict=True):
            record["sig"] = sig
            events.append(SealedRecord(stream, record["seq"], record["event"], canonical(record)))
            receipts.append(Receipt(chain, record["seq"], record["hash"]))
        return events, receipts

    # -- reading --------------------------------------------------------------

    @property
    def db(self) -> str:
        """Where the ledger lives: a SQLite file path or a `postgresql://` URL (it may hold a password)."""
        return self.store.db

    @property
    def label(self) -> str:
        """Where the ledger lives, fit for a message (a URL's password redacted)."""
        return self.store.label

    def fleets(self) -> list[str]:
        return self.store.chains()

    def follow(self, fleet: str, after: int = 0) -> Iterator[bytes]:
        """Stored bytes of a fleet's records after `after`, then each new one as it lands; endless."""
        return self.store.follow(fleet, after)

    def raw_records(self, fleet: str, after: int = 0) -> Iterator[bytes]:
        """Stored bytes of a fleet's records after position `after`, in order, a page at a time."""
        while True:
            rows = self.store.rows(fleet, after, PAGE_SIZE)
            for _, data in rows:
                yield data
            if len(rows) < PAGE_SIZE or rows[-1][0] <= after:  # (a damaged position ends it too)
                return
            after = rows[-1][0]

    def records(self, fleet: str, after: int = 0) -> Iterator[dict[str, Any]]:
        for data in self.raw_records(fleet, after):
            yield orjson.loads(data)

    # -- proving --------------------------------------------------------------

    def verifier(self, anchor_raw: bytes) -> Verifier:
        """A verifier of this ledger's records under the anchor key `anchor_raw`."""
        return Verifier(self.store, anchor_raw)

    def prove_inclusion(self, fleet: str, seq: int, checkpoint_text: str) -> str:
        """The proof that record `seq` of `fleet` is in the tree of a signed checkpoint."""
        return prove_inclusion(self.store, fleet, seq, checkpoint_text)

    def prove_consistency(self, old_checkpoint: str, new_checkpoint: str) -> str:
        """The proof that the tree of `new_checkpoint` extends the one of `old_checkpoint`."""
        return prove_consistency(self.store, old_checkpoint, new_checkpoint)

    def trust_anchor(self, public_key: str | None = None) -> Anchor:
        """The anchor to verify against: given, else `LEDGER_TRUST`, else pinned at init.

        Never the public key file beside the private key: whoever can replace the
        database can usually replace that file too.
        """
        return resolve_anchor(claimed_ledger_id(self.store), public_key)

    def verify(self, public_key: str | None = None, *, fleets: Sequence[str] | None = None,
               checkpoint: str | None = None, progress: Progress | None = None,
               anchor: Anchor | None = None, all_signatures: bool = True,
               roots: bool = False) -> LedgerReport:
        """Verify the whole ledger (or named fleets); raise VerificationError on a fault.

        With `all_signatures` false, every record's bytes, hash, link and position are
        checked but only the signatures that carry the proof (each key's last record in
        a chain, the head among them): as sound for the content, at hashing speed, but
        blind to a damaged signature on intact content (the README says why). The CLI's
        `verify` runs that way unless given `--all-signatures`. Each chain's Merkle root
        is reported only with `roots` (a fleet checked against `checkpoint` has its tree
        folded regardless): verifying the chains needs no tree.
        """
        trusted = anchor or self.trust_anchor(public_key)
        return verify_ledger(self.store, trusted.public_raw, fleets=fleets,
                             checkpoint_text=checkpoint, progress=progress,
                             all_signatures=all_signatures, roots=roots)

    def checkpoint(self, fleet: str, public_key: str | None = None) -> str:
        """A signed note of the fleet's size, Merkle root and head, over verified history."""
        return self.checkpoint_of(self.verify(public_key, fleets=[fleet], all_signatures=False, roots=True))

    def checkpoint_of(self, report: LedgerReport) -> str:
        """The signed checkpoint of the one fleet `report` verified (with its root): for a
        caller that has just verified it, so the history is not verified a second time."""
        chain = report.chains[0]
        if chain.root is None:
            raise ValueError("a checkpoint needs the verified root: verify with roots=True")
        fleet = chain.chain
        current_kid, _, _ = self.current_key()
        signer = self._signer_for(current_kid)
        origin = checkpoint_origin(report.ledger_id, fleet)
        return sign_checkpoint(Checkpoint(origin, chain.count, chain.root, chain.head), signer,
                               note_key_name(report.ledger_id, signer.kid))

    def vkeys(self) -> list[str]:
        """A C2SP verifier key for each key of the key chain, oldest first (unverified:
        check the chain with `verify` before publishing these)."""
        return [vkey(note_key_name(self.ledger_id, str(record["new_kid"])),
                     parse_public_key(str(record["public_key"])))
                for record in self.key_history()]
