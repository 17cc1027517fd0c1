"""The read models in a SQLite file of their own, through eventsourcing's SQLite recorder.

A file separate from the ledger's: eventsourcing applications in one SQLite
file share one events table, and the views are disposable (they can always be
rebuilt from the ledger), so they must never be mistaken for history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import (
    ConnectionUnavailableError,
    InfrastructureFactory,
    IntegrityError,
    PersistenceError,
    Tracking,
)
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from ledger.store import storage_fault
from projections.views import (
    FORMAT,
    FleetUpdate,
    LedgerViews,
    ViewsDamagedError,
    ViewsMeta,
)

TABLES = ("projection_meta", "fleets", "version_history", "last_good", "fleet_state")

#: Errors that mean the file is not a readable views file (so rebuilding it helps).
_DAMAGE_SIGNS = ("not a database", "malformed", "no such table", "no such column", "corrupt",
                 "has no column", "disk image")


def _blob(value: object) -> bytes:
    """A stored JSON value as bytes; anything else means the row was tampered with."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ViewsDamagedError(f"holds a {type(value).__name__} where JSON was stored")


def _classify(exc: BaseException, path: str) -> Exception:
    message = str(exc)
    if any(sign in message.lower() for sign in _DAMAGE_SIGNS):
        return ViewsDamagedError(message)
    return storage_fault(exc, f"projection file {path}", "use", path=Path(path))


class SQLiteLedgerViews(SQLiteTrackingRecorder, LedgerViews):
    """The three read models (and the rules' working state) as SQLite tables."""

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.path = datastore.pool.db_name
        self._generation = 0
        self._created = False

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS projection_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            " WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS fleets (fleet TEXT PRIMARY KEY, head_seq INTEGER NOT NULL,"
            " head_hash TEXT NOT NULL, current TEXT, header BLOB NOT NULL,"
            " rules_state BLOB NOT NULL) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS version_history (fleet TEXT NOT NULL, version TEXT NOT NULL,"
            " ord INTEGER NOT NULL, status TEXT NOT NULL, good INTEGER NOT NULL,"
            " completed_seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (fleet, version))"
            " WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS version_history_order ON version_history (fleet, ord)",
            "CREATE INDEX IF NOT EXISTS version_history_good"
            " ON version_history (fleet, good, completed_seq, ord)",
            "CREATE INDEX IF NOT EXISTS version_history_completed"
            " ON version_history (fleet, completed_seq)",
            "CREATE TABLE IF NOT EXISTS last_good (fleet TEXT PRIMARY KEY, data BLOB NOT NULL)"
            " WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS fleet_state (fleet TEXT PRIMARY KEY, data BLOB NOT NULL)"
            " WITHOUT ROWID",
        ]

    @contextmanager
    def _cursor(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        """A transaction whose storage errors say whether rebuilding would help."""
        try:
            with self.datastore.transaction(commit=commit) as cursor:
                yield cursor
        except (IntegrityError, ConnectionUnavailableError):
            raise
        except (PersistenceError, sqlite3.Error) as exc:
            raise _classify(exc, self.path) from None

    def _one(self, statement: str, *params: object) -> Any:
        with self._cursor(commit=False) as c:
            c.execute(statement, params)
            row = c.fetchone()
        return None if row is None else row[0]

    # -- meta and writing -------------------------------------------------------------

    def meta(self) -> ViewsMeta | None:
        with self._cursor(commit=False) as c:
            c.execute("SELECT key, value FROM projection_meta")
            values = {row[0]: row[1] for row in c.fetchall()}
        if not values:
            return None
        try:
            meta = ViewsMeta(values["format"], values["ledger_id"], int(values["generation"]))
        except (KeyError, ValueError) as exc:
            raise ViewsDamagedError(f"its metadata is incomplete ({exc})") from None
        self._generation = meta.generation
        return meta

    def reset(self, ledger_id: str, application_name: str) -> None:
        with self._cursor(commit=True) as c:
            c.execute("SELECT value FROM projection_meta WHERE key = 'generation'")
            row = c.fetchone()
            generation = (int(row[0]) if row is not None else 0) + 1
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM tracking WHERE application_name = ?", (application_name,))
            c.executemany(
                "INSERT INTO projection_meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("ledger_id", ledger_id), ("generation", str(generation))],
            )
        self._generation = generation

    def write(self, updates: Sequence[FleetUpdate], tracking: Tracking) -> None:
        with self._cursor(commit=True) as c:
            # Write first: this takes the write lock, so the check below sees the newest state.
            self._insert_tracking(c, tracking)
            c.execute("SELECT value FROM projection_meta WHERE key = 'generation'")
            row = c.fetchone()
            if row is None or int(row[0]) != self._generation:
                raise IntegrityError("the views were rebuilt by another process")
            for u in updates:
                c.execute(
                    "INSERT OR REPLACE INTO fleets VALUES (?, ?, ?, ?, ?, ?)",
                    (u.fleet, u.head_seq, u.head_hash, u.current, u.header, u.rules_state),
                )
                c.execute("INSERT OR REPLACE INTO last_good VALUES (?, ?)", (u.fleet, u.last_good))
                c.execute("INSERT OR REPLACE INTO fleet_state VALUES (?, ?)", (u.fleet, u.fleet_state))
                c.executemany(
                    "INSERT OR REPLACE INTO version_history VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(u.fleet, v.version, v.order, v.status, int(v.good), v.completed_seq, v.data)
                     for v in u.versions],
                )

    def create_table(self) -> None:
        super().create_table()
        self._created = True

    def max_tracking_id(self, application_name: str) -> int | None:
        if not self._created:  # create_table() probes for the tracking table this way
            return super().max_tracking_id(application_name)
        try:
            return super().max_tracking_id(application_name)
        except ConnectionUnavailableError:
            raise
        except (PersistenceError, sqlite3.Error) as exc:
            raise _classify(exc, self.path) from None

    # -- reading ----------------------------------------------------------------------

    def fleet_names(self) -> list[str]:
        with self._cursor(commit=False) as c:
            c.execute("SELECT fleet FROM fleets ORDER BY fleet")
            return [row[0] for row in c.fetchall()]

    def rules_state(self, fleet: str) -> tuple[bytes, list[bytes]] | None:
        with self._cursor(commit=False) as c:
            c.execute("SELECT rules_state FROM fleets WHERE fleet = ?", (fleet,))
            row = c.fetchone()
            if row is None:
                return None
            c.execute("SELECT data FROM version_history WHERE fleet = ? ORDER BY ord", (fleet,))
            return _blob(row[0]), [_blob(r[0]) for r in c.fetchall()]

    def core_state(self, fleet: str) -> bytes | None:
        value = self._one("SELECT rules_state FROM fleets WHERE fleet = ?", fleet)
        return None if value is None else _blob(value)

    def version_rows(self, fleet: str, names: Sequence[str], completed_after: int) -> list[bytes]:
        marks = ",".join("?" * len(names)) or "NULL"
        with self._cursor(commit=False) as c:
            # Two indexed lookups, not one OR: the cost stays with the rows asked for.
            c.execute(f"SELECT data, ord FROM version_history WHERE fleet = ? AND version IN ({marks})"
                      " UNION SELECT data, ord FROM version_history WHERE fleet = ? AND completed_seq > ?"
                      " ORDER BY ord", (fleet, *names, fleet, completed_after))
            return [_blob(r[0]) for r in c.fetchall()]

    def header(self, fleet: str) -> bytes | None:
        value = self._one("SELECT header FROM fleets WHERE fleet = ?", fleet)
        return None if value is None else _blob(value)

    def history_rows(self, fleet: str) -> list[bytes]:
        with self._cursor(commit=False) as c:
            c.execute("SELECT data FROM version_history WHERE fleet = ? ORDER BY ord", (fleet,))
            return [_blob(r[0]) for r in c.fetchall()]

    def last_good_row(self, fleet: str) -> bytes | None:
        value = self._one("SELECT data FROM last_good WHERE fleet = ?", fleet)
        return None if value is None else _blob(value)

    def newest_good_row(self, fleet: str, leaving: str) -> bytes | None:
        value = self._one(
            "SELECT data FROM version_history WHERE fleet = ? AND good = 1 AND version <> ?"
            " ORDER BY completed_seq DESC, ord DESC LIMIT 1", fleet, leaving,
        )
        return None if value is None else _blob(value)

    def fleet_state_row(self, fleet: str) -> bytes | None:
        value = self._one("SELECT data FROM fleet_state WHERE fleet = ?", fleet)
        return None if value is None else _blob(value)

    def dump(self) -> dict[str, list[tuple[object, ...]]]:
        keys = {"fleets": "fleet", "version_history": "fleet, version", "last_good": "fleet",
                "fleet_state": "fleet"}
        result: dict[str, list[tuple[object, ...]]] = {}
        with self._cursor(commit=False) as c:
            for table, key in keys.items():
                c.execute(f"SELECT * FROM {table} ORDER BY {key}")
                result[table] = [tuple(row) for row in c.fetchall()]
        return result

    def close(self) -> None:
        self.datastore.close()


def open_sqlite_views(path: str | Path) -> SQLiteLedgerViews:
    """Open (creating if need be) the views file at `path`."""
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
    }
    try:
        factory = InfrastructureFactory[SQLiteLedgerViews].construct(env=env)
        return factory.tracking_recorder(SQLiteLedgerViews)
    except ConnectionUnavailableError as exc:
        raise storage_fault(exc, f"projection file {path}", "use", path=Path(path)) from None
    except (PersistenceError, sqlite3.Error, OSError) as exc:
        raise _classify(exc, str(path)) from None
