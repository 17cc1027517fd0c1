"""Persistence: sealed records as events of an eventsourcing application.

Each chain is one event stream: a fleet's records live in stream
`fleet:<name>` and the key history in stream `@keys`, with a record's `seq`
as the stream's `originator_version`. The store's unique key on
(stream, version) is what stops two writers from forking a chain: the loser of
a race gets `IntegrityError` and re-seals on the new head. The stored state is
the record's canonical bytes exactly as hashed and signed, so verification
reads the very bytes that were signed; no transcoder, compressor or cipher
touches them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger.errors import NotInitializedError, StorageError
from ledger.postgres_url import check_connection, postgres_env, redact

FLEET_PREFIX = "fleet:"
KEY_CHAIN = "@keys"
PAGE_SIZE = 2000
OPEN_ATTEMPTS = 5


@dataclass(frozen=True)
class SealedRecord:
    """The domain event: one sealed record at its position in its chain."""

    originator_id: str
    originator_version: int
    event: str
    data: bytes


class RecordMapper(Mapper[str]):
    """Maps a sealed record to a stored event and back, bytes untouched.

    The topic column carries the event type, so followers can filter by it.
    """

    def __init__(self) -> None:
        super().__init__(transcoder=JSONTranscoder())  # unused: state is already bytes

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=domain_event.event,
            state=domain_event.data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return SealedRecord(
            str(stored_event.originator_id),
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )


class KeyChainMovedError(Exception):
    """The key chain changed since the writer read it: re-read the key, re-seal."""


class GuardedSQLiteRecorder(SQLiteApplicationRecorder):
    """Inserts a batch in one statement and, inside the same write transaction,
    checks that the key chain is still at the position the writer sealed against.

    The check runs after the insert, when the write lock is held, so no rotation
    can commit between the check and the commit: a record is never stored with
    a key that was retired before it was written.
    """

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        c.executemany(self.insert_events_statement, [
            (s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events
        ])
        expected = kwargs.get("key_chain_seq")
        if expected is not None:
            expected += sum(1 for s in stored_events if s.originator_id == KEY_CHAIN)
            c.execute(f"SELECT MAX(originator_version) FROM {self.events_table_name} "
                      "WHERE originator_id=?", (KEY_CHAIN,))
            found = c.fetchone()[0] or 0
            if found != expected:
                raise KeyChainMovedError(f"key chain at {found}, sealed against {expected}")
        return None


class LedgerApplication(Application[str]):
    """The eventsourcing application that holds every chain of one ledger."""

    name = "DeployLedger"

    def construct_mapper(self) -> Mapper[str]:
        return RecordMapper()


def stream_id(chain: str) -> str:
    return chain if chain == KEY_CHAIN else FLEET_PREFIX + chain


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def persistence_env(db: str) -> dict[str, str]:
    """eventsourcing settings for a database location (a file path by default)."""
    if is_postgres(db):
        return postgres_env(db)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(Path(db)),
        "SQLITE_LOCK_TIMEOUT": "30",
        "ORIGINATOR_ID_TYPE": "text",
        "APPLICATION_RECORDER_TOPIC": "ledger.store:GuardedSQLiteRecorder",
    }


class Store:
    """Reads and writes the stored records of every chain in one ledger."""

    def __init__(self, db: str, *, create: bool = False):
        if not is_postgres(db) and not create and not Path(db).exists():
            raise NotInitializedError(
                f"no ledger at {db} (run `ledger init`, or give --db / LEDGER_DB)"
            )
        self.db = db
        self.is_sqlite = not is_postgres(db)
        self.label = redact(db) if is_postgres(db) else db
        if is_postgres(db):
            check_connection(db)
        for attempt in range(OPEN_ATTEMPTS):
            try:
                self.app = LedgerApplication(env=persistence_env(db))
                break
            except (PersistenceError, OSError) as exc:
                # Concurrent first opens can collide creating types and tables; the
                # loser finds them made when it tries again.
                if attempt + 1 == OPEN_ATTEMPTS or not is_postgres(db):
                    raise StorageError(f"cannot open ledger database {self.label}: {exc}") from None
                time.sleep(0.05 * (attempt + 1))
        self.recorder: Any = self.app.recorder

    def close(self) -> None:
        self.app.close()

    def insert(self, records: Sequence[SealedRecord], key_chain_seq: int | None = None) -> None:
        """Write records in one transaction; returns only once they are durable.

        Raises eventsourcing's IntegrityError when a position is taken, and
        `KeyChainMovedError` when `key_chain_seq` is given and is no longer the
        key chain's length (before this batch). (The application's event store is used directly:
        `Application.save` only adds aggregate bookkeeping this ledger has none of.)
        """
        self.app.events.put(list(records), key_chain_seq=key_chain_seq)

    def insert_locked(self, make: Callable[[], Sequence[SealedRecord]]) -> None:
        """Take the write lock first, then build the records and insert them.

        For writes whose content must be decided while no one else can commit
        (a key rotation's timestamp).
        """
        recorder = self.recorder
        if is_postgres(self.db):
            with recorder.datastore.transaction(commit=True) as cursor:
                recorder._lock_table(cursor)  # the lock every insert takes, before deciding
                stored = [self.app.mapper.to_stored_event(record) for record in make()]
                recorder._insert_stored_events(cursor, stored)
            return
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"UPDATE {recorder.events_table_name} SET topic=topic WHERE 0")
            stored = [self.app.mapper.to_stored_event(record) for record in make()]
            recorder._insert_events(cursor, stored)

    def last(self, chain: str) -> bytes | None:
        row = self.last_row(chain)
        return bytes(row.state) if row else None

    def last_row(self, chain: str) -> StoredEvent | None:
        rows = self.recorder.select_events(stream_id(chain), desc=True, limit=1)
        return rows[0] if rows else None

    def page(self, chain: str, after: int, limit: int = PAGE_SIZE) -> Sequence[StoredEvent]:
        result: Sequence[StoredEvent] = self.recorder.select_events(
            stream_id(chain), gt=after, limit=limit
        )
        return result

    def scan(self, chain: str, after: int = 0, page_size: int = PAGE_SIZE) -> Iterator[StoredEvent]:
        """Every stored record of a chain after a position, in order, page by page."""
        while True:
            rows = self.page(chain, after, page_size)
            yield from rows
            if len(rows) < page_size:
                return
            after = rows[-1].originator_version

    def follow(self, chain: str, after: int, poll_s: float = 0.1) -> Iterator[bytes]:
        """Every record of a chain after position `after`, as it lands, forever.

        It reads by position in the chain, so notification-id gaps (left on
        PostgreSQL by rolled-back inserts) never matter. On PostgreSQL it
        LISTENs on the recorder's channel first and only then reads, so a
        record committed in between is read, not missed; each NOTIFY (or a
        one-second safety tick) triggers the next read. SQLite polls.
        """
        if not is_postgres(self.db):
            while True:
                rows = self.page(chain, after)
                for row in rows:
                    after = row.originator_version
                    yield bytes(row.state)
                if not rows:
                    time.sleep(poll_s)
        with self.recorder.datastore.get_connection() as connection:
            connection.execute(f'LISTEN "{self.recorder.channel_name}"')
            connection.commit()
            try:
                while True:
                    for row in self.scan(chain, after):
                        after = row.originator_version
                        yield bytes(row.state)
                    for _ in connection.notifies(timeout=1.0, stop_after=1):
                        pass
            finally:  # the connection goes back to the pool: leave it as it came
                connection.execute("UNLISTEN *")
                connection.commit()

    def chains(self) -> list[str]:
        """Names of the fleets that have records (the key chain excluded)."""
        table = self.recorder.events_table_name
        if is_postgres(self.db):
            table = f'"{self.recorder.datastore.schema}"."{table}"'
        try:
            with self.recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(f"SELECT DISTINCT originator_id AS stream FROM {table}")
                names = [row["stream"] for row in cursor.fetchall()]
        except PersistenceError as exc:
            raise StorageError(f"cannot read {self.label}: {exc}") from None
        return sorted(n.removeprefix(FLEET_PREFIX) for n in names if n.startswith(FLEET_PREFIX))

    def max_notification_id(self) -> int:
        return int(self.recorder.max_notification_id() or 0)


def default_db() -> str:
    return os.environ.get("LEDGER_DB", "ledger.db")
