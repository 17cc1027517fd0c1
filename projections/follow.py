"""Waiting for new ledger records: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.

eventsourcing's PostgreSQL recorder sends `NOTIFY <events table>` inside the
transaction of every insert, so a notification arrives when records commit
(its own `subscribe()` wakes on it). The PostgreSQL waiter
(`projections.follow_postgres.ListenWaiter`) listens on that channel, on one
connection of the ledger's own pool, and answers one question: is
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
from threading import Event

from ledger.store import Store, is_postgres

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


def ledger_waiter(store: Store) -> LedgerWaiter:
    """The waiter for a ledger's backend: notifications on PostgreSQL, polling on SQLite.

    The PostgreSQL waiter is imported only for a PostgreSQL ledger, so a
    SQLite-only install never needs psycopg.
    """
    if is_postgres(store.db):
        from projections.follow_postgres import ListenWaiter

        return ListenWaiter(store)
    return PollingWaiter(store)
