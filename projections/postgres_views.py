"""The read models in PostgreSQL tables of their own, through eventsourcing's PostgreSQL recorder.

By default they live in the ledger's own database and schema, beside
`deployledger_events`, as the tables `deployledger_views_*` (meta, fleets,
version_history, last_good, fleet_state and the tracking table): the views of
one ledger are found wherever the ledger is, and one connection pool serves
both. Another name (`deployledger_<name>_*`) keeps a second set of views apart
in the same schema.

The semantics are `SQLiteLedgerViews`' exactly: every write holds the
generation row's lock, checks the generation and upserts the tracking row in
the same transaction as the view rows, so a record affects the views once, a
lost race is eventsourcing's `IntegrityError`, and a writer that read the
views before another process reset them can never mix its state into the new
ones. A damaged store cannot be deleted like a file: `recreate` drops and
recreates the tables in one transaction instead (DDL is transactional in
PostgreSQL, so other processes see the old tables or the new ones, never none).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from eventsourcing.persistence import (
    ConnectionUnavailableError,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from ledger.errors import InputError
from ledger.postgres_url import check_connection, postgres_env, redact
from ledger.store import storage_fault
from projections.views import FORMAT, FleetUpdate, LedgerViews, ViewsDamagedError, ViewsMeta

DEFAULT_NAME = "views"
TABLE_PREFIX = "deployledger_"
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,15}\Z")
TABLES = ("meta", "fleets", "version_history", "last_good", "fleet_state")
INDEXES = ("version_history_order", "version_history_good", "version_history_completed")
MIGRATION = "__migration__"  # eventsourcing's row in a single-row tracking table

#: SQLSTATEs of storage errors that rebuilding the views cures: a missing or
#: altered table or column (class 42, but not a lack of privilege), a value
#: that is not what was stored (class 22), corrupted data or index (XX001/2).
_NOT_DAMAGE_42 = {"42501"}  # insufficient_privilege: a rebuild cannot help


def tracking_table(name: str = DEFAULT_NAME) -> str:
    """The tracking table of the views called `name` (what eventsourcing's factory would name it)."""
    return f"{TABLE_PREFIX}{check_views_name(name)}_tracking"


def check_views_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InputError(f"views name {name!r} is invalid: use 1-16 lowercase letters, digits or '_', "
                         "starting with a letter")
    return name


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    raise ViewsDamagedError(f"holds a {type(value).__name__} where JSON was stored")


def _is_damage(exc: BaseException) -> bool:
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    state = getattr(cause, "sqlstate", None) or ""
    if state.startswith("42"):
        return state not in _NOT_DAMAGE_42
    return state.startswith("22") or state in ("XX001", "XX002")


class PostgresLedgerViews(PostgresTrackingRecorder, LedgerViews):
    """The three read models (and the rules' working state) as PostgreSQL tables.

    Constructed like any eventsourcing tracking recorder (a datastore and a
    tracking table name `<prefix>tracking`, which names the other tables
    `<prefix>meta`, ...), so eventsourcing's factory can build it too.
    """

    def __init__(self, datastore: PostgresDatastore, *,
                 tracking_table_name: str = tracking_table(), owns_datastore: bool = True,
                 label: str = "", **kwargs: Any):
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        self.prefix = tracking_table_name.removesuffix("tracking")
        self.schema = datastore.schema
        self.label = label or f"projection tables {self.prefix}* (schema {self.schema})"
        self.owns_datastore = owns_datastore
        self._generation = 0
        self._created = False
        #: whether the views' tables were there before `create_table` (None before it ran)
        self.existed: bool | None = None
        self.sql_create_statements.extend(self._view_statements())

    # -- names and statements ---------------------------------------------------------

    def _t(self, table: str) -> Composed:
        """A view table's qualified name."""
        return SQL("{}.{}").format(Identifier(self.schema), Identifier(self.prefix + table))

    @property
    def _tracking(self) -> Composed:
        return SQL("{}.{}").format(Identifier(self.schema), Identifier(self.tracking_table_name))

    def _view_statements(self) -> list[Composed]:
        text = SQL('text COLLATE "C"')  # bytewise order, as SQLite's and Python's
        return [
            SQL("CREATE TABLE IF NOT EXISTS {} (key {} PRIMARY KEY, value text NOT NULL)").format(
                self._t("meta"), text),
            SQL("CREATE TABLE IF NOT EXISTS {} (fleet {} PRIMARY KEY, head_seq bigint NOT NULL, "
                "head_hash text NOT NULL, current {}, header bytea NOT NULL, "
                "rules_state bytea NOT NULL)").format(self._t("fleets"), text, text),
            SQL("CREATE TABLE IF NOT EXISTS {} (fleet {} NOT NULL, version {} NOT NULL, "
                "ord bigint NOT NULL, status text NOT NULL, good smallint NOT NULL, "
                "completed_seq bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (fleet, version))"
                ).format(self._t("version_history"), text, text),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (fleet, ord)").format(
                Identifier(self.prefix + "version_history_order"), self._t("version_history")),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (fleet, good, completed_seq, ord)").format(
                Identifier(self.prefix + "version_history_good"), self._t("version_history")),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (fleet, completed_seq)").format(
                Identifier(self.prefix + "version_history_completed"), self._t("version_history")),
            SQL("CREATE TABLE IF NOT EXISTS {} (fleet {} PRIMARY KEY, data bytea NOT NULL)").format(
                self._t("last_good"), text),
            SQL("CREATE TABLE IF NOT EXISTS {} (fleet {} PRIMARY KEY, data bytea NOT NULL)").format(
                self._t("fleet_state"), text),
        ]

    def _relations(self) -> list[str]:
        return [*(self.prefix + t for t in TABLES), *(self.prefix + i for i in INDEXES),
                self.tracking_table_name]

    # -- transactions and errors ------------------------------------------------------

    def _error(self, exc: BaseException) -> Exception:
        if _is_damage(exc):
            return ViewsDamagedError(" ".join(str(exc).split()))
        return storage_fault(exc, self.label, "use", server=True)

    @contextmanager
    def _cursor(self, *, commit: bool) -> Iterator[psycopg.Cursor[DictRow]]:
        """A transaction whose storage errors say whether rebuilding would help."""
        try:
            with self.datastore.transaction(commit=commit) as cursor:
                yield cursor
        except (IntegrityError, ConnectionUnavailableError):
            raise
        except (PersistenceError, psycopg.Error) as exc:
            raise self._error(exc) from None

    def _one(self, statement: Composed, *params: object) -> Any:
        with self._cursor(commit=False) as c:
            row = c.execute(statement, params).fetchone()
        return None if row is None else next(iter(row.values()))

    def _lock_generation(self, c: psycopg.Cursor[DictRow]) -> int | None:
        """The stored generation, its row locked until the transaction ends (None if none)."""
        row = c.execute(SQL("SELECT value FROM {} WHERE key = 'generation' FOR UPDATE").format(
            self._t("meta"))).fetchone()
        if row is None:
            return None
        try:
            return int(row["value"])
        except ValueError:
            raise ViewsDamagedError(f"its generation is not a number ({row['value']!r})") from None

    # -- tables -----------------------------------------------------------------------

    def create_table(self) -> None:
        """Create the tables unless they are all there (then no DDL, so no table lock, is taken)."""
        try:
            with self.datastore.transaction(commit=False) as c:
                rows = c.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = ANY(%s)",
                    (self.schema, self._relations())).fetchall()
        except (InterfaceError, OperationalError, ConnectionUnavailableError) as exc:
            raise storage_fault(exc, self.label, "use", server=True) from None
        found = {row["relname"] for row in rows}
        self.existed = self.prefix + "meta" in found
        if found == set(self._relations()):
            self._created = True
            return
        for attempt in range(3):
            try:
                super().create_table()
                self._created = True
                return
            except IntegrityError:
                # Another process created them at the same time (eventsourcing's migration
                # row, or PostgreSQL's catalog): the second attempt finds them made.
                if attempt == 2:
                    raise
            except (InterfaceError, OperationalError, ConnectionUnavailableError) as exc:
                raise storage_fault(exc, self.label, "use", server=True) from None
            except PersistenceError as exc:
                raise self._error(exc) from None

    def _create_table(self, curs: psycopg.Cursor[DictRow]) -> None:
        # Serialise creators (concurrent CREATE ... IF NOT EXISTS can collide in the catalog).
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{self.prefix}",))
        super()._create_table(curs)

    def recreate(self, ledger_id: str, application_name: str) -> None:
        """Drop every views table and create them empty, in one transaction; then as `reset`.

        The new generation is above the old one (or, when the old one cannot be
        read, above any counter: the time in milliseconds), so a process that
        read the old views can never write into the new ones.
        """
        with self._cursor(commit=True) as c:
            c.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{self.prefix}",))
            # Every table first, meta first (writers take meta's generation row first): a
            # writer or reader in progress finishes, and none starts until this commits.
            present = {row["relname"] for row in c.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname = ANY(%s)",
                (self.schema, [self.prefix + t for t in (*TABLES, "tracking")])).fetchall()}
            tables = [self.prefix + t for t in (*TABLES, "tracking") if self.prefix + t in present]
            if tables:
                c.execute(SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(SQL(", ").join(
                    SQL("{}.{}").format(Identifier(self.schema), Identifier(t)) for t in tables)))
            old: int | None = None
            try:
                with c.connection.transaction():  # a savepoint: the old meta may be unreadable
                    old = self._lock_generation(c)
            except (psycopg.Error, ViewsDamagedError):
                old = None
            for table in (*TABLES, "tracking"):
                c.execute(SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(
                    Identifier(self.schema), Identifier(self.prefix + table)))
            for statement in self.sql_create_statements:
                c.execute(statement)
            self._insert_tracking(c, Tracking(MIGRATION, 1))
            generation = old + 1 if old is not None else int(time.time() * 1000)
            self._write_meta(c, ledger_id, generation)
        self._generation = generation

    # -- meta and writing -------------------------------------------------------------

    def meta(self) -> ViewsMeta | None:
        with self._cursor(commit=False) as c:
            values = {row["key"]: row["value"] for row in
                      c.execute(SQL("SELECT key, value FROM {}").format(self._t("meta"))).fetchall()}
        if not values:
            return None
        try:
            meta = ViewsMeta(values["format"], values["ledger_id"], int(values["generation"]))
        except (KeyError, ValueError) as exc:
            raise ViewsDamagedError(f"its metadata is incomplete ({exc})") from None
        self._generation = meta.generation
        return meta

    def _write_meta(self, c: psycopg.Cursor[DictRow], ledger_id: str, generation: int) -> None:
        c.executemany(
            SQL("INSERT INTO {} (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value").format(self._t("meta")),
            [("format", FORMAT), ("ledger_id", ledger_id), ("generation", str(generation))],
        )

    def reset(self, ledger_id: str, application_name: str) -> None:
        with self._cursor(commit=True) as c:
            # The generation row's lock orders this reset with every write (see `write`).
            stored = self._lock_generation(c)
            if stored is None:  # new views: two first resets must still get two generations
                c.execute(SQL("INSERT INTO {} (key, value) VALUES ('generation', '0') "
                              "ON CONFLICT (key) DO NOTHING").format(self._t("meta")))
                stored = self._lock_generation(c)
            generation = (stored or 0) + 1
            for table in TABLES[1:]:
                c.execute(SQL("DELETE FROM {}").format(self._t(table)))
            c.execute(SQL("DELETE FROM {} WHERE application_name = %s").format(self._tracking),
                      (application_name,))
            self._write_meta(c, ledger_id, generation)
        self._generation = generation

    def write(self, updates: Sequence[FleetUpdate], tracking: Tracking) -> None:
        with self._cursor(commit=True) as c:
            # Lock the generation row first: a reset (which takes it too) cannot commit
            # between the check and this commit, and writers queue here, each then
            # seeing the tracking position its predecessor committed.
            if self._lock_generation(c) != self._generation:
                raise IntegrityError("the views were rebuilt by another process")
            self._insert_tracking(c, tracking)  # IntegrityError unless ahead of the stored position
            if not updates:
                return
            c.executemany(
                SQL("INSERT INTO {} (fleet, head_seq, head_hash, current, header, rules_state) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (fleet) DO UPDATE SET "
                    "head_seq = EXCLUDED.head_seq, head_hash = EXCLUDED.head_hash, "
                    "current = EXCLUDED.current, header = EXCLUDED.header, "
                    "rules_state = EXCLUDED.rules_state").format(self._t("fleets")),
                [(u.fleet, u.head_seq, u.head_hash, u.current, u.header, u.rules_state)
                 for u in updates])
            for table, column in (("last_good", "last_good"), ("fleet_state", "fleet_state")):
                c.executemany(
                    SQL("INSERT INTO {} (fleet, data) VALUES (%s, %s) "
                        "ON CONFLICT (fleet) DO UPDATE SET data = EXCLUDED.data").format(self._t(table)),
                    [(u.fleet, getattr(u, column)) for u in updates])
            rows = [(u.fleet, v.version, v.order, v.status, int(v.good), v.completed_seq, v.data)
                    for u in updates for v in u.versions]
            if rows:
                c.executemany(
                    SQL("INSERT INTO {} (fleet, version, ord, status, good, completed_seq, data) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (fleet, version) DO UPDATE "
                        "SET ord = EXCLUDED.ord, status = EXCLUDED.status, good = EXCLUDED.good, "
                        "completed_seq = EXCLUDED.completed_seq, data = EXCLUDED.data"
                        ).format(self._t("version_history")), rows)

    def max_tracking_id(self, application_name: str) -> int | None:
        if not self._created:  # create_table() probes for the tracking table this way
            return cast("int | None", super().max_tracking_id(application_name))
        try:
            return cast("int | None", super().max_tracking_id(application_name))
        except (InterfaceError, OperationalError, ConnectionUnavailableError) as exc:
            raise storage_fault(exc, self.label, "use", server=True) from None
        except (PersistenceError, psycopg.Error) as exc:
            raise self._error(exc) from None

    # -- reading ----------------------------------------------------------------------

    def fleet_names(self) -> list[str]:
        with self._cursor(commit=False) as c:
            rows = c.execute(SQL("SELECT fleet FROM {} ORDER BY fleet").format(self._t("fleets")))
            return [row["fleet"] for row in rows.fetchall()]

    def rules_state(self, fleet: str) -> tuple[bytes, list[bytes]] | None:
        with self._cursor(commit=False) as c:
            row = c.execute(SQL("SELECT rules_state FROM {} WHERE fleet = %s").format(self._t("fleets")),
                            (fleet,)).fetchone()
            if row is None:
                return None
            versions = c.execute(SQL("SELECT data FROM {} WHERE fleet = %s ORDER BY ord").format(
                self._t("version_history")), (fleet,)).fetchall()
            return _blob(row["rules_state"]), [_blob(r["data"]) for r in versions]

    def core_state(self, fleet: str) -> bytes | None:
        value = self._one(SQL("SELECT rules_state FROM {} WHERE fleet = %s").format(self._t("fleets")),
                          fleet)
        return None if value is None else _blob(value)

    def version_rows(self, fleet: str, names: Sequence[str], completed_after: int) -> list[bytes]:
        with self._cursor(commit=False) as c:
            # Two indexed lookups, not one OR: the cost stays with the rows asked for.
            rows = c.execute(SQL("SELECT data, ord FROM {0} WHERE fleet = %s AND version = ANY(%s) "
                                 "UNION SELECT data, ord FROM {0} WHERE fleet = %s AND completed_seq > %s "
                                 "ORDER BY ord").format(self._t("version_history")),
                             (fleet, list(names), fleet, completed_after)).fetchall()
            return [_blob(r["data"]) for r in rows]

    def header(self, fleet: str) -> bytes | None:
        value = self._one(SQL("SELECT header FROM {} WHERE fleet = %s").format(self._t("fleets")), fleet)
        return None if value is None else _blob(value)

    def history_rows(self, fleet: str) -> list[bytes]:
        with self._cursor(commit=False) as c:
            rows = c.execute(SQL("SELECT data FROM {} WHERE fleet = %s ORDER BY ord").format(
                self._t("version_history")), (fleet,)).fetchall()
            return [_blob(r["data"]) for r in rows]

    def last_good_row(self, fleet: str) -> bytes | None:
        value = self._one(SQL("SELECT data FROM {} WHERE fleet = %s").format(self._t("last_good")), fleet)
        return None if value is None else _blob(value)

    def newest_good_row(self, fleet: str, leaving: str) -> bytes | None:
        value = self._one(
            SQL("SELECT data FROM {} WHERE fleet = %s AND good = 1 AND version <> %s "
                "ORDER BY completed_seq DESC, ord DESC LIMIT 1").format(self._t("version_history")),
            fleet, leaving)
        return None if value is None else _blob(value)

    def fleet_state_row(self, fleet: str) -> bytes | None:
        value = self._one(SQL("SELECT data FROM {} WHERE fleet = %s").format(self._t("fleet_state")), fleet)
        return None if value is None else _blob(value)

    def dump(self) -> dict[str, list[tuple[object, ...]]]:
        """Rows as SQLite's views give them (same columns, types and order), so the two compare."""
        keys = {"fleets": "fleet", "version_history": "fleet, version", "last_good": "fleet",
                "fleet_state": "fleet"}
        result: dict[str, list[tuple[object, ...]]] = {}
        with self._cursor(commit=False) as c:
            for table, key in keys.items():
                rows = c.execute(SQL("SELECT * FROM {} ORDER BY {}").format(self._t(table), SQL(key)))
                result[table] = [tuple(_plain(v) for v in row.values()) for row in rows.fetchall()]
        return result

    def close(self) -> None:
        if self.owns_datastore:
            self.datastore.close()


def _plain(value: object) -> object:
    return value.tobytes() if isinstance(value, memoryview) else value


def open_postgres_views(url: str, name: str = DEFAULT_NAME, *,
                        datastore: PostgresDatastore | None = None,
                        create: bool = True) -> PostgresLedgerViews:
    """Open (creating if need be) the views called `name` in the database and schema of `url`.

    With `datastore` (the ledger's own, when the views share its database and
    schema) its connection pool is used and left open on `close`; otherwise
    the views get a small pool of their own. `create=False` leaves the tables
    alone (for `recreate`, when opening them failed).
    """
    table = tracking_table(name)
    label = f"projection tables {table.removesuffix('tracking')}* in {redact(url)}"
    owns = datastore is None
    if datastore is None:
        check_connection(url)
        env = {**postgres_env(url), "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"}
        try:
            factory: Any = InfrastructureFactory.construct(env=env)
        except (PersistenceError, OSError) as exc:
            raise storage_fault(exc, label, "use", server=True) from None
        datastore = factory.datastore
        assert isinstance(datastore, PostgresDatastore)
    views = PostgresLedgerViews(datastore, tracking_table_name=table, owns_datastore=owns, label=label)
    try:
        if create:
            views.create_table()
        else:
            views.existed = True
            views._created = True
    except BaseException:
        views.close()
        raise
    return views
