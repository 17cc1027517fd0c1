"""How many live streams a token holds, counted where every server process sees it.

A token's stream limit must hold however many server processes share the
ledger, and a process that is killed must not keep its streams counted for
ever. On PostgreSQL each open stream holds a lease: a row in the table
`ledger_stream_leases` (in the ledger's schema) with an expiry. A stream is
admitted under a transaction-scoped advisory lock on its token, so two
processes admitting the token's last stream at once cannot both get it:
expired leases of the token are deleted, the live ones counted, and a new one
inserted only below the limit. Each process renews all its leases every third
of the lease time on a thread of its own (writing back any that expired while
the database was away: their streams are still open), and deletes them when
a stream ends or the process stops; the leases of a process that was killed expire
after at most one lease time (`--stream-lease`, default 30 s), and then free
their token's slots.

SQLite is served by one process per ledger file, and counts in that
process's memory (`LocalLeases`): several processes on one SQLite ledger
would each apply the limit on their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any, Protocol

from ledger.postgres_url import postgres_env

_log = logging.getLogger("ledger.service")

TABLE = "ledger_stream_leases"


class Leases(Protocol):
    """A count of live streams per token, with a limit."""

    def acquire(self, token: str, limit: int) -> str | None:
        """A lease id for one more stream of `token`, or None if it holds `limit` already (blocking)."""

    def release(self, lease: str) -> None:
        """Give a stream's slot back (never blocks; may be called more than once)."""

    def close(self) -> None:
        """Give back every lease of this process."""


class LocalLeases:
    """The streams of this process only (SQLite: one server process per ledger)."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}
        self._count: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, token: str, limit: int) -> str | None:
        with self._lock:
            if self._count[token] >= limit:
                return None
            lease = uuid.uuid4().hex
            self._held[lease] = token
            self._count[token] += 1
            return lease

    def release(self, lease: str) -> None:
        with self._lock:
            token = self._held.pop(lease, None)
            if token is not None:
                self._count[token] -= 1

    def close(self) -> None:
        with self._lock:
            self._held.clear()
            self._count.clear()


class PostgresLeases:
    """Leases in a table every server process on this PostgreSQL ledger shares."""

    def __init__(self, db: str, schema: str, lease_s: float = 30.0):
        import psycopg

        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self.table = f'"{schema}"."{TABLE}"'
        env = postgres_env(db)
        self._params: dict[str, Any] = {
            "dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"],
            "user": env["POSTGRES_USER"], "password": env["POSTGRES_PASSWORD"],
            "connect_timeout": int(env["POSTGRES_CONNECT_TIMEOUT"])}
        self._psycopg = psycopg
        self._lock = threading.Lock()  # one connection, for admissions and the renewals
        self._connection: Any = None
        self._released: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._held: dict[str, str] = {}  # lease -> token, of this process's live streams
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        with self._lock:
            conn = self._connect()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{TABLE}",))
                conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (lease TEXT PRIMARY KEY, "
                             "token TEXT NOT NULL, holder TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL)")
                conn.execute(f'CREATE INDEX IF NOT EXISTS "{TABLE}_token" ON {self.table} (token)')
        self._thread = threading.Thread(target=self._run, name="ledger-leases", daemon=True)
        self._thread.start()

    def _connect(self) -> Any:
        if self._connection is None or self._connection.closed:
            self._connection = self._psycopg.connect(**self._params, autocommit=True)
        return self._connection

    def acquire(self, token: str, limit: int) -> str | None:
        lease = uuid.uuid4().hex
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{TABLE}:{token}",))
                    conn.execute(f"DELETE FROM {self.table} WHERE token = %s AND expires < now()", (token,))
                    held = conn.execute(f"SELECT count(*) FROM {self.table} WHERE token = %s",
                                        (token,)).fetchone()[0]
                    if held >= limit:
                        return None
                    conn.execute(f"INSERT INTO {self.table} VALUES "
                                 "(%s, %s, %s, now() + %s * interval '1 second')",
                                 (lease, token, self.holder, self.lease_s))
            except self._psycopg.Error:
                self._drop_connection()
                raise
        with self._held_lock:
            self._held[lease] = token
        return lease

    def release(self, lease: str) -> None:
        with self._held_lock:
            self._held.pop(lease, None)
        self._released.put(lease)

    def close(self) -> None:
        self._stop.set()
        self._released.put(None)
        self._thread.join(5)
        with self._lock, contextlib.suppress(Exception):
            self._connect().execute(f"DELETE FROM {self.table} WHERE holder = %s", (self.holder,))
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _renew(self, conn: Any) -> None:
        """Push the expiry of every live stream's lease on; a lease that expired meanwhile
        (the database was away, another process cleared it) is written back, since its
        stream is still open."""
        with self._held_lock:
            held = list(self._held.items())
        if not held:
            return
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.table} VALUES (%s, %s, %s, now() + %s * interval '1 second') "
                "ON CONFLICT (lease) DO UPDATE SET expires = EXCLUDED.expires",
                [(lease, token, self.holder, self.lease_s) for lease, token in held])

    def _run(self) -> None:
        """Delete released leases as they come; renew this process's leases every lease_s / 3."""
        renew_every = self.lease_s / 3
        next_renewal = 0.0
        failing = False
        while not self._stop.is_set():
            timeout = max(0.0, next_renewal - time.monotonic())
            released: list[str] = []
            with contextlib.suppress(queue.Empty):
                item = self._released.get(timeout=timeout)
                if item is not None:
                    released.append(item)
                while True:
                    item = self._released.get_nowait()
                    if item is not None:
                        released.append(item)
            try:
                with self._lock:
                    conn = self._connect()
                    if released:
                        conn.execute(f"DELETE FROM {self.table} WHERE lease = ANY(%s)", (released,))
                    if time.monotonic() >= next_renewal:
                        self._renew(conn)
                        next_renewal = time.monotonic() + renew_every
                if failing:
                    _log.info("stream leases: the database answers again")
                    failing = False
            except Exception as exc:  # the database is away: leases expire; retried next round
                if not failing:  # one line per outage, not one per second
                    _log.warning("stream leases: %s", (str(exc) or type(exc).__name__).splitlines()[0])
                failing = True
                for lease in released:
                    self._released.put(lease)
                with self._lock:
                    self._drop_connection()
                self._stop.wait(min(1.0, renew_every))
