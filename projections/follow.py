"""Waiting for new ledger records: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.

eventsourcing's PostgreSQL recorder sends `NOTIFY <events table>` inside the
transaction of every insert, so a notification arrives when records commit
(its own `subscribe()` wakes on it). A `LedgerWaiter` listens on that channel,
on one connection of the ledger's own pool, and answers one question: is
there a record with a notification id above `after` (and which is the
highest)? It compares with the ledger's highest notification id and never
counts ids, so a gap (an id that a rolled-back insert took, which PostgreSQL
sequences never hand out again) can never make it wait or stall.

Why not iterate eventsourcing's `PostgresSubscription` itself: it pulls every
row through its own threads into a bounded queue, one record at a time, and
its `next()` has no timeout. A follower that reads in large batches from its
own tracking position (the projections, the fleet driver, the feed) only
needs the wake-up, which this gives with the same channel and no extra reads.

The channel is the events table's name without its schema (eventsourcing's
choice), so ledgers in other schemas of the same database wake a waiter too:
harmless, it reads the head again and goes back to waiting.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import ExitStack, suppress
from threading import Event
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg.sql import SQL, Identifier

from ledger.store import Store, is_postgres

#: How long one blocking step lasts: the longest a `stop` event waits to be seen.
SLICE_S = 0.1
#: Poll interval of the SQLite waiter (no notifications there).
POLL_S = 0.05


class LedgerWaiter(ABC):
    """Blocks until the ledger holds records after a notification id."""

    def __init__(self, store: Store):
        self.store = store

    def head(self) -> int:
        """The ledger's highest notification id now."""
        return self.store.max_notification_id()  # its storage faults are one line already

    @abstractmethod
    def wait(self, after: int, timeout: float, stop: Event | None = None) -> int:
        """Wait until a record after notification id `after` is committed, at most `timeout`
        seconds (or until `stop` is set). Returns the highest notification id then:
        above `after` if and only if new records arrived."""

    def close(self) -> None:
        return None

    def __enter__(self) -> LedgerWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PollingWaiter(LedgerWaiter):
    """SQLite: read the head every `POLL_S` seconds (one indexed MAX; cheap)."""

    def wait(self, after: int, timeout: float, stop: Event | None = None) -> int:
        deadline = time.monotonic() + timeout
        while True:
            head = self.head()
            remaining = deadline - time.monotonic()
            if head > after or remaining <= 0 or (stop is not None and stop.is_set()):
                return head
            if stop is not None:
                stop.wait(min(POLL_S, remaining))
            else:
                time.sleep(min(POLL_S, remaining))


class ListenWaiter(LedgerWaiter):
    """PostgreSQL: LISTEN on eventsourcing's channel for the ledger's events table.

    The LISTEN is in place before the head is read, so a commit between the
    read and the wait still wakes the waiter. A lost connection (a server
    restart) is replaced at the next step; meanwhile it falls back to polling.
    """

    def __init__(self, store: Store):
        super().__init__(store)
        self.recorder: Any = store.recorder
        self.channel: str = self.recorder.channel_name
        self._stack: ExitStack | None = None
        self._conn: Any = None
        #: notifications received (for tests and diagnostics)
        self.notified = 0

    def _listen(self) -> Any:
        if self._conn is None:
            stack = ExitStack()
            try:
                conn = stack.enter_context(self.recorder.datastore.get_connection())
                conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
            except BaseException:
                stack.close()
                raise
            self._stack, self._conn = stack, conn
        return self._conn

    def _drop(self) -> None:
        stack, conn = self._stack, self._conn
        self._stack = self._conn = None
        if conn is not None:
            try:
                conn.execute("UNLISTEN *")  # the connection goes back to the pool
            except (psycopg.Error, PersistenceError):
                conn.close()  # broken: the pool discards it
        if stack is not None:
            with suppress(psycopg.Error, PersistenceError):
                stack.close()

    def wait(self, after: int, timeout: float, stop: Event | None = None) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = self._listen()
            except (psycopg.Error, PersistenceError):
                conn = None
            head = self.head()
            if head > after or self._done(deadline, stop):
                return head
            if conn is None:  # no connection to listen on: poll until one comes back
                time.sleep(min(SLICE_S, max(0.0, deadline - time.monotonic())))
                continue
            # The head is read again only when a notification arrives (or at the end).
            if not self._notified(conn, deadline, stop):
                return self.head()

    def _done(self, deadline: float, stop: Event | None) -> bool:
        return time.monotonic() >= deadline or (stop is not None and stop.is_set())

    def _notified(self, conn: Any, deadline: float, stop: Event | None) -> bool:
        """Wait for a notification in short steps (so `stop` is seen); False at the end."""
        while not self._done(deadline, stop):
            step = min(SLICE_S, deadline - time.monotonic())
            try:
                received = sum(1 for _ in conn.notifies(timeout=max(step, 0.0), stop_after=1))
            except (psycopg.Error, PersistenceError):
                self._drop()
                return True  # read the head again, and listen on a new connection
            if received:
                self.notified += received
                return True
        return False

    def close(self) -> None:
        self._drop()


def ledger_waiter(store: Store) -> LedgerWaiter:
    """The waiter for a ledger's backend: notifications on PostgreSQL, polling on SQLite."""
    return ListenWaiter(store) if is_postgres(store.db) else PollingWaiter(store)
