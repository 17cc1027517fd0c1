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

import contextlib
import errno
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from eventsourcing.application import Application
from eventsourcing.persistence import (
    InterfaceError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger import merkle_nodes
from ledger.config import DEFAULT_DB
from ledger.errors import NotInitializedError, StorageError, TransientStorageError
from ledger.postgres_url import check_connection, ensure_schema, postgres_env, redact, redact_text


def storage_errors() -> tuple[type[BaseException], ...]:
    """What the storage layers raise when the disk or the server fails us (not our callers).

    psycopg's errors count once psycopg is loaded; a SQLite ledger never loads it.
    """
    psycopg = sys.modules.get("psycopg")
    driver: tuple[type[BaseException], ...] = (psycopg.Error,) if psycopg is not None else ()
    return (PersistenceError, sqlite3.Error, OSError, *driver)


FLEET_PREFIX = "fleet:"
KEY_CHAIN = "@keys"
#: The policy chain (`ledger.policy.POLICY_CHAIN`), named here so the store imports no policy.
POLICY_CHAIN = "@policy"
PAGE_SIZE = 2000
NODES_PER_READ = 200  # nodes per query for `Store.nodes`: 600 parameters, under either database's limit
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


class PolicyMovedError(Exception):
    """The policy chain changed since the writer decided against it: decide again."""


def chain_guards(key_chain_seq: int | None, policy_seq: int | None) -> list[tuple[str, int, type[Exception]]]:
    """The chains an insert must find at the lengths its writer read, and what it raises if not."""
    guards: list[tuple[str, int, type[Exception]]] = []
    if key_chain_seq is not None:
        guards.append((KEY_CHAIN, key_chain_seq, KeyChainMovedError))
    if policy_seq is not None:
        guards.append((POLICY_CHAIN, policy_seq, PolicyMovedError))
    return guards


class GuardedSQLiteRecorder(SQLiteApplicationRecorder):
    """Inserts a batch in one statement and, inside the same write transaction,
    checks that the key chain is still at the position the writer sealed against
    and, for a decision, that the policy chain is still at the position it was
    decided against.

    The check runs after the insert, when the write lock is held, so no rotation
    (or policy change) can commit between the check and the commit: a record is
    never stored with a key that was retired before it was written, nor a
    decision taken under a policy that was already replaced.
    """

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {merkle_nodes.table_name(self.events_table_name)} "
                "(stream TEXT, level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (stream, level, idx))"]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        c.executemany(self.insert_events_statement, [
            (s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events
        ])
        table = merkle_nodes.table_name(self.events_table_name)
        nodes = merkle_nodes.nodes_to_write(c, table, "?", stored_events)
        if nodes:
            c.executemany(merkle_nodes.UPSERT_SQLITE.format(table=table), nodes)
        for chain, length, moved in chain_guards(kwargs.get("key_chain_seq"), kwargs.get("policy_seq")):
            expected = length + sum(1 for s in stored_events if s.originator_id == chain)
            c.execute(f"SELECT MAX(originator_version) FROM {self.events_table_name} "
                      "WHERE originator_id=?", (chain,))
            found = c.fetchone()[0] or 0
            if found != expected:
                raise moved(f"{chain} at {found}, sealed against {expected}")
        return None


class LedgerApplication(Application[str]):
    """The eventsourcing application that holds every chain of one ledger."""

    name = "DeployLedger"

    def construct_mapper(self) -> Mapper[str]:
        return RecordMapper()


_CAUSES = (  # (text in the driver's message, the cause in plain words)
    ("readonly", "the database is read-only here"),
    ("read-only", "the database is read-only here"),
    ("disk is full", "the disk is full"),
    ("no space left", "the disk is full"),
    ("file is not a database", "the file is not a ledger database (damaged or overwritten)"),
    ("malformed", "the database file is damaged (malformed)"),
    ("no such table", "the file holds no ledger tables (damaged or another database)"),
    ("unable to open", "the database file cannot be opened (missing permission?)"),
    ("disk i/o error", "disk I/O error"),
    ("locked", "the database is locked by another process"),
    ("connection refused", "the server refused the connection (is it running?)"),
    ("could not connect", "the server is unreachable"),
    ("connection timeout", "the server did not answer in time"),
    ("timeout expired", "the server did not answer in time"),
    ("terminating connection", "the server closed the connection (restarted?)"),
    ("server closed the connection", "the server closed the connection (restarted?)"),
    ("connection is lost", "the connection to the server was lost"),
    ("consuming input failed", "the connection to the server was lost"),
    ("password authentication failed", "the server refused the credentials"),
    ("permission denied", "permission denied (a role that may not do this?)"),
)
_ERRNO_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "disk I/O error",
}


def _file_cause(path: Path) -> str | None:
    """What is wrong with where a SQLite file lives, when SQLite's own words are vague."""
    try:
        directory = path.resolve().parent
        stat = os.statvfs(directory)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return "the file system is read-only"
    if stat.f_bavail == 0:
        return "the disk is full"
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "the database is read-only here (no permission to write it or its directory)"
    return None


def storage_fault(exc: BaseException, label: str, doing: str = "use", *,
                  server: bool = False, path: Path | None = None) -> StorageError:
    """One line naming the cause and where, for any failure of the storage underneath.

    The driver's own wording is kept after the plain cause (on one line,
    passwords removed), so nothing an operator needs is lost. A lost
    connection to a database `server` yields `TransientStorageError`, which a
    writer may retry on a new connection.
    """
    if isinstance(exc, StorageError):
        return exc
    detail = " ".join(str(exc).split()) or type(exc).__name__
    lowered = detail.lower()
    cause = next((plain for text, plain in _CAUSES if text in lowered), None)
    if cause is None and isinstance(exc, OSError) and exc.errno in _ERRNO_CAUSES:
        cause = _ERRNO_CAUSES[exc.errno]
    vague = (None, "disk I/O error", "the database file cannot be opened (missing permission?)",
             "the database is read-only here")
    if path is not None and cause in vague:
        # SQLite reports a lock file it could not create or grow as "unable to open" or an I/O error.
        cause = _file_cause(path) or cause
    reason = f"{cause or 'storage error'} ({redact_text(detail)[:200]})"
    message = f"storage fault: cannot {doing} {label}: {reason}"
    psycopg = sys.modules.get("psycopg")
    lost = isinstance(exc, InterfaceError | OperationalError) or (
        psycopg is not None and isinstance(exc, psycopg.OperationalError))
    if server and lost:
        return TransientStorageError(message)
    return StorageError(message)


@contextlib.contextmanager
def faults_as(label: str, doing: str, *, server: bool = False,
              path: Path | None = None) -> Iterator[None]:
    """Turn a storage failure inside the block into one `StorageError` line."""
    try:
        yield
    except storage_errors() as exc:
        raise storage_fault(exc, label, doing, server=server, path=path) from None


def stream_id(chain: str) -> str:
    """The stream of a chain: `@keys` and `@policy` as they are, a fleet under its prefix."""
    return chain if chain.startswith("@") else FLEET_PREFIX + chain


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def _wal_pending(path: Path) -> bool:
    wal = Path(f"{path}-wal")
    return wal.exists() and wal.stat().st_size > 0


def sqlite_read_only_uri(path: Path, *, immutable: bool | None = None) -> str:
    """A URI that opens a SQLite ledger for reading only, whoever may write the file.

    `mode=ro` never writes the database. Where SQLite could not create its lock
    files beside it (a directory the user may not write, a full disk) and no
    write-ahead log is pending, `immutable=1` lets it read without them.
    """
    absolute = path.resolve()
    uri = f"file:{quote(str(absolute))}?mode=ro"
    if immutable is None:
        immutable = not os.access(absolute.parent, os.W_OK)
    if immutable and not _wal_pending(absolute):
        uri += "&immutable=1"
    return uri


def persistence_env(db: str, *, read_only: bool = False, immutable: bool | None = None) -> dict[str, str]:
    """eventsourcing settings for a database location (a file path by default)."""
    if is_postgres(db):
        env = postgres_env(db)
        if read_only:  # a reviewer's role may only SELECT: create nothing, not even "IF NOT EXISTS"
            env["CREATE_TABLE"] = "n"
        return env
    name = sqlite_read_only_uri(Path(db), immutable=immutable) if read_only else str(Path(db))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": name,
        "SQLITE_LOCK_TIMEOUT": "30",
        "ORIGINATOR_ID_TYPE": "text",
        "APPLICATION_RECORDER_TOPIC": "ledger.store:GuardedSQLiteRecorder",
    }
    if read_only:
        env["CREATE_TABLE"] = "n"
    return env


class Store:
    """Reads and writes the stored records of every chain in one ledger.

    Every failure of the storage underneath (a read-only or full disk, a
    damaged file, a server that is down) leaves here as one `StorageError`
    naming the cause and the file or server. `read_only` opens a SQLite file
    so that nothing is ever written to it or beside it, for commands that only
    read: a copy on read-only media, or one the user may not write, verifies.
    """

    def __init__(self, db: str, *, create: bool = False, read_only: bool = False):
        if not is_postgres(db) and not create and not Path(db).exists():
            raise NotInitializedError(
                f"no ledger at {db} (run `ledger init`, or give --db / LEDGER_DB)"
            )
        self.db = db
        self.is_sqlite = not is_postgres(db)
        self.read_only = read_only
        self.label = redact(db) if is_postgres(db) else db
        path = None if is_postgres(db) else Path(db)
        if path is None:
            check_connection(db)
            if create:
                ensure_schema(db)  # `?schema=NAME` of a new ledger: made here, not by hand
        elif not create:
            with faults_as(self.label, "open ledger database", path=path):
                empty = path.stat().st_size == 0
            if empty:
                raise StorageError(f"storage fault: cannot open ledger database {db}: "
                                   "the file is empty (truncated?)")
        immutable: bool | None = None
        first_fault: StorageError | None = None
        for attempt in range(OPEN_ATTEMPTS):
            try:
                with faults_as(self.label, "open ledger database", server=not self.is_sqlite, path=path):
                    env = persistence_env(db, read_only=self.read_only, immutable=immutable)
                    self.app = LedgerApplication(env=env)
                    if self.is_sqlite or self.read_only:
                        self._probe()
                break
            except StorageError as exc:
                if first_fault is not None:
                    raise first_fault from None  # reading without lock files did not help either
                if "does not exist" in str(exc) and not self.is_sqlite:
                    raise NotInitializedError(f"{self.label} holds no ledger (run `ledger init`)") from None
                if self.read_only and self.is_sqlite and immutable is None and "damaged" not in str(exc) \
                        and "not a ledger" not in str(exc):
                    immutable = True  # no room or right for SQLite's lock files: read without them
                    first_fault = exc
                    continue
                # Concurrent first opens can collide creating types and tables; the
                # loser finds them made when it tries again.
                if attempt + 1 == OPEN_ATTEMPTS or not is_postgres(db):
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.recorder: Any = self.app.recorder

    def _probe(self) -> None:
        """Read the events table once, so a damaged or foreign file (or a schema with no
        ledger, when nothing may be created) is reported at open."""
        recorder: Any = self.app.recorder
        table = recorder.events_table_name
        if not self.is_sqlite:
            table = f'"{recorder.datastore.schema}"."{table}"'
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT 1 FROM {table} LIMIT 1")

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """A block whose storage failures become one `StorageError` about reading this ledger."""
        return faults_as(self.label, "read ledger", server=not self.is_sqlite)

    def close(self) -> None:
        self.app.close()

    def insert(self, records: Sequence[SealedRecord], key_chain_seq: int | None = None,
               policy_seq: int | None = None) -> None:
        """Write records in one transaction; returns only once they are durable.

        Raises eventsourcing's IntegrityError when a position is taken, and
        `KeyChainMovedError` when `key_chain_seq` is given and is no longer the
        key chain's length (before this batch); `PolicyMovedError` likewise for `policy_seq`
        and the policy chain. (The application's event store is used directly:
        `Application.save` only adds aggregate bookkeeping this ledger has none of.)
        """
        self.app.events.put(list(records), key_chain_seq=key_chain_seq, policy_seq=policy_seq)

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
        return stored_bytes(row.state) if row else None

    def last_row(self, chain: str) -> StoredEvent | None:
        with self.reading():
            rows = self.recorder.select_events(stream_id(chain), desc=True, limit=1)
        return rows[0] if rows else None

    def page(self, chain: str, after: int, limit: int = PAGE_SIZE) -> Sequence[StoredEvent]:
        with self.reading():
            result: Sequence[StoredEvent] = self.recorder.select_events(
                stream_id(chain), gt=after, limit=limit
            )
        return result

    def rows(self, chain: str, after: int, limit: int = PAGE_SIZE) -> list[tuple[int, bytes]]:
        """(seq, stored bytes) of up to `limit` records of a chain after position `after`, in order.

        One indexed range read on the (stream, position) key, with none of the
        per-row objects `page` builds: what a reader of many records wants. A
        position SQLite holds as something other than an integer (a hand-edited
        row) comes back as -1, which is no record's position.
        """
        table, mark = self._events_table(), self._mark()
        with self.reading(), self.recorder.datastore.transaction(commit=False) as cursor:
            if self.is_sqlite:
                cursor.sqlite_cursor.row_factory = None  # plain tuples: no Row object per record
            cursor.execute(f"SELECT originator_version AS seq, state FROM {table} WHERE originator_id={mark} "
                           f"AND originator_version>{mark} ORDER BY originator_version LIMIT {mark}",
                           (stream_id(chain), after, limit))
            found = cursor.fetchall()
        if self.is_sqlite:
            return [(seq, state) if type(seq) is int and type(state) is bytes
                    else (seq if type(seq) is int else -1, stored_bytes(state)) for seq, state in found]
        return [(int(row["seq"]), stored_bytes(row["state"])) for row in found]

    def last_seq(self, chain: str) -> int:
        """The position of a chain's last record (0 when it has none)."""
        row = self.last_row(chain)
        return row.originator_version if row else 0

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
                    yield stored_bytes(row.state)
                if not rows:
                    time.sleep(poll_s)
        with self.recorder.datastore.get_connection() as connection:
            connection.execute(f'LISTEN "{self.recorder.channel_name}"')
            connection.commit()
            try:
                while True:
                    for row in self.scan(chain, after):
                        after = row.originator_version
                        yield stored_bytes(row.state)
                    for _ in connection.notifies(timeout=1.0, stop_after=1):
                        pass
            finally:  # the connection goes back to the pool: leave it as it came
                connection.execute("UNLISTEN *")
                connection.commit()

    def chains(self) -> list[str]:
        """Names of the fleets that have records (the key chain excluded)."""
        with self.reading(), self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT DISTINCT originator_id AS stream FROM {self._events_table()}")
            names = [row["stream"] for row in cursor.fetchall()]
        return sorted(n.removeprefix(FLEET_PREFIX) for n in names if n.startswith(FLEET_PREFIX))

    def head_seq(self, chain: str) -> int | None:
        """The position of a chain's last record; None if it has none.

        One indexed read in a plain transaction: unlike the recorder's reads it
        is not retried for seconds when the server is away, so a caller who
        must answer at once (is there such a fleet?) gets its `StorageError` at once.
        """
        table, mark = self._events_table(), self._mark()
        with self.reading(), self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT MAX(originator_version) AS head FROM {table} "
                           f"WHERE originator_id = {mark}", (stream_id(chain),))
            row = cursor.fetchone()
        head = row["head"] if row is not None else None
        return int(head) if head is not None else None

    def _qualified(self, table: str) -> str:
        """A table's name as this database's queries write it (in the ledger's schema on PostgreSQL)."""
        return table if self.is_sqlite else f'"{self.recorder.datastore.schema}"."{table}"'

    def _events_table(self) -> str:
        return self._qualified(self.recorder.events_table_name)

    def _nodes_table(self) -> str:
        return self._qualified(merkle_nodes.table_name(self.recorder.events_table_name))

    def _mark(self) -> str:
        """The parameter placeholder of this database's driver."""
        return "?" if self.is_sqlite else "%s"

    def has_nodes(self, chain: str, size: int) -> bool:
        """Whether the interior hashes of the chain's first `size` leaves are stored
        (a chain has them for every leaf or for none; an older database has no table)."""
        if size <= 0:
            return False
        mark = self._mark()
        try:
            with self.recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(f"SELECT COUNT(*) AS n FROM {self._nodes_table()} WHERE stream={mark} "
                               f"AND level=0 AND idx IN ({mark}, {mark})", (stream_id(chain), 0, size - 1))
                return int(cursor.fetchone()["n"]) == (1 if size == 1 else 2)
        except storage_errors():
            return False

    def nodes(self, chain: str, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored interior hashes (see `ledger.merkle_nodes`) by (level, index), read
        `NODES_PER_READ` to a query: a proof's O(log n) nodes cost one round trip, whatever
        the tree's size."""
        wanted = sorted(set(wanted))
        found: dict[tuple[int, int], bytes] = {}
        mark = self._mark()
        for first in range(0, len(wanted), NODES_PER_READ):
            part = wanted[first:first + NODES_PER_READ]
            # Each term names a whole key, so both SQLite and PostgreSQL look each one up in the
            # primary key's index (the stream factored out, SQLite would scan the stream's nodes).
            terms = " OR ".join([f"(stream={mark} AND level={mark} AND idx={mark})"] * len(part))
            stream = stream_id(chain)
            with self.reading(), self.recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(f"SELECT level, idx, hash FROM {self._nodes_table()} WHERE {terms}",
                               tuple(n for level, index in part for n in (stream, level, index)))
                rows = cursor.fetchall()
            found.update(((int(row["level"]), int(row["idx"])), bytes(row["hash"])) for row in rows)
        missing = next((pair for pair in wanted if pair not in found), None)
        if missing is not None:
            raise StorageError(f"storage fault: the tree node {missing[0]}/{missing[1]} of {chain} is "
                               f"missing in {self.label}")
        return found

    def max_notification_id(self) -> int:
        with self.reading():
            return int(self.recorder.max_notification_id() or 0)

    def notifications(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """Up to `limit` records of every chain after notification id `after`, in the order
        they were stored: (notification id, the record as `insert` took it)."""
        page = self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        mapper = self.app.mapper
        return [(n.id, mapper.to_domain_event(n)) for n in page]

    def set_lock_timeout(self, seconds: float) -> bool:
        """Shorten how long a SQLite write waits for the file's lock, on the connections
        open now and those opened later; False (and nothing changed) for PostgreSQL, whose
        own connect and lock timeouts apply.

        For a writer that must not hold up its caller (an audit sink on an application's
        thread); eventsourcing takes whole seconds only, so the pool is set here.
        """
        pool = getattr(getattr(self.recorder, "datastore", None), "pool", None)
        if pool is None or not hasattr(pool, "lock_timeout"):
            return False
        pool.lock_timeout = seconds  # new connections
        for connection in list(getattr(pool, "_pool", ())):  # connections already open
            raw = getattr(connection, "_sqlite_conn", None)
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")
        return True


def stored_bytes(state: object) -> bytes:
    """A stored record's bytes, whatever type the database hands back.

    SQLite keeps any value in any column: a row edited by hand may come back as
    text, or as a number. Text is taken as its UTF-8 bytes (so an edit that kept
    the content still verifies, and one that changed it fails its hash); any
    other type is bytes no record could have, and verify reports the record as
    undecodable rather than crashing.
    """
    if isinstance(state, bytes):
        return state
    if isinstance(state, bytearray | memoryview):
        return bytes(state)
    if isinstance(state, str):
        return state.encode("utf-8", "surrogatepass")
    return repr(state).encode("utf-8", "backslashreplace")


def default_db() -> str:
    """The ledger a library caller means when it names none (the CLI reads LEDGER_DB)."""
    return DEFAULT_DB
