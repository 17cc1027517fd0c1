"""The PostgreSQL waiter: LISTEN on the channel eventsourcing NOTIFYs on every insert.

Kept apart from `projections.follow` so that psycopg is imported only when a
ledger lives on PostgreSQL (`ledger_waiter` imports this module then).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, suppress
from threading import Event
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg.sql import SQL, Identifier

from ledger.store import Store
from projections.follow import LedgerWaiter

#: How long one blocking step lasts: the longest a `stop` event waits to be seen.
SLICE_S = 0.1


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
