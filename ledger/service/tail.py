"""One follower per fleet, fanned out to every live stream of that fleet.

Fifty dashboards following a fleet must not mean fifty database readers
polling it: one thread waits for commits (LISTEN/NOTIFY on PostgreSQL,
polling on SQLite, `projections.follow.ledger_waiter`), reads each followed
fleet's new records once, and publishes them into a per-fleet buffer of
recent records on the event loop. A stream reads from that buffer; a stream
whose cursor is older than the buffer (a resume after a restart, a slow
client) reads the gap from the store first. Every read is by `seq`, so a
stream yields each record exactly once, in order, whatever the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from ledger.api import Ledger
from ledger.errors import UnknownFleetError
from ledger.store import stored_bytes
from projections.follow import ledger_waiter

#: Recent records kept per followed fleet.
BUFFER = 4096
#: Rows read per fleet per wake-up.
PAGE = 1000

_log = logging.getLogger("ledger.service")


@dataclass
class FleetTail:
    """A fleet's recent records, as the tail thread published them (event-loop side)."""

    fleet: str
    low: int  # the seq just before the first buffered record
    read_to: int  # the last seq the tail thread has read (tail-thread side)
    buffer: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=BUFFER))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def high(self) -> int:
        return self.buffer[-1][0] if self.buffer else self.low

    def publish(self, rows: list[tuple[int, bytes]]) -> None:
        for seq, data in rows:
            if seq == self.high + 1:
                self.buffer.append((seq, data))
        if self.buffer:
            self.low = self.buffer[0][0] - 1
        self.changed.set()
        self.changed = asyncio.Event()

    def since(self, after: int) -> list[tuple[int, bytes]] | None:
        """Buffered records after `after`; None if some of them are no longer buffered.

        The buffer holds consecutive seqs, so the records wanted are its last
        `high - after`: taken from the right end, the cost is what is returned,
        not the buffer's length (fifty caught-up streams wake on every commit).
        """
        if after < self.low:
            return None
        wanted = self.high - after
        if wanted <= 0:
            return []
        newest_first = list(itertools.islice(reversed(self.buffer), wanted))
        newest_first.reverse()
        return newest_first


class Tails:
    """The tail thread and the buffers it fills."""

    def __init__(self, ledger: Ledger, loop: asyncio.AbstractEventLoop):
        self.ledger = ledger
        self.loop = loop
        self._tails: dict[str, FleetTail] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-tail", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def poke(self) -> None:
        """This process has just committed records: read now rather than at the next poll
        (SQLite is polled; commits by other processes are still seen then)."""
        self._wake.set()

    def tail(self, fleet: str) -> FleetTail:
        """The fleet's tail, started at its current head the first time it is asked for.

        A fleet with no records is `UnknownFleetError` (the stream answers 404
        at once): a misspelt name must not look like a quiet fleet.
        """
        with self._lock:
            found = self._tails.get(fleet)
            if found is None:
                head = self.ledger.store.head_seq(fleet)
                if head is None:
                    raise UnknownFleetError(f"fleet {fleet!r} has no records")
                found = self._tails[fleet] = FleetTail(fleet, head, head)
            return found

    def _run(self) -> None:
        try:
            with ledger_waiter(self.ledger.store) as waiter:
                seen = waiter.head()
                while not self._stop.is_set():
                    self._wake.clear()  # before reading: a poke from now on means read again
                    with self._lock:
                        tails = list(self._tails.values())
                    for tail in tails:
                        self._read(tail)
                    seen = waiter.wait(seen, 1.0, self._wake)
        except Exception:
            _log.exception("the stream tail stopped; streams fall back to reading the store")

    def _read(self, tail: FleetTail) -> None:
        while True:
            rows = self.ledger.store.page(tail.fleet, tail.read_to, PAGE)
            if not rows:
                return
            batch = [(int(r.originator_version), stored_bytes(r.state)) for r in rows]
            tail.read_to = batch[-1][0]
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self.loop.call_soon_threadsafe(tail.publish, batch)
            if len(rows) < PAGE:
                return
