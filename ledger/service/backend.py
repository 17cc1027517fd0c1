"""The ledger, its views and the gate, owned by one thread of the server process.

`Projections` is for one thread, and the gate reads the views, so every
query and every decision runs on the single thread of `Backend.run`; an
async handler awaits it without blocking the event loop. Decisions are
serialised within a process anyway (the gate appends at the head it
decided on), and across processes the gate's head check does the rest.

Worker reports are facts: they need no view, so they skip that thread and go
to the group committer (`ledger.service.commit`), whose own writer stores
the reports of concurrent requests together, one transaction per fleet.

Feed pages and live streams only read stored records by position, which the
store allows from any thread; they use a second, read-only ledger on a small
pool of threads, so a long feed never delays a deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from ledger.api import Ledger
from ledger.app import App, open_app
from ledger.envelope import SignedEnvelope
from ledger.errors import RecordError, UnknownFleetError
from ledger.events import GATED_EVENTS
from ledger.feed import FeedFilter
from ledger.gate import Outcome
from ledger.service.bodies import CommandRequest
from ledger.service.commit import GroupCommitter, ReportResult
from ledger.service.config import ServiceConfig
from ledger.service.envelopes import ApprovalRequest
from ledger.store import stored_bytes

T = TypeVar("T")
#: Threads reading feed pages and stream catch-ups.
READ_THREADS = 4


class Backend:
    """Blocking ledger work for the async handlers, each kind on its own threads."""

    def __init__(self, config: ServiceConfig, notice: Callable[[str], None]):
        self.config = config
        self._owner = ThreadPoolExecutor(1, thread_name_prefix="ledger-app")
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ledger-read")
        self.app: App = self._owner.submit(
            lambda: open_app(config.db, config.key, projections=config.projections, notice=notice)
        ).result()
        self.reader = Ledger.open(config.db, config.key, writable=False)
        self.ledger_id = str(self.reader.key_history()[0]["new_kid"])
        self.committer = GroupCommitter(lambda: Ledger.open(config.db, config.key))

    def close(self, timeout: float = 5.0) -> None:
        """Close the app on its own thread; a thread stuck on unreachable storage (retrying
        for up to a minute) is left behind rather than holding the shutdown."""
        self._readers.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.committer.close(timeout)
        closing = self._owner.submit(self.app.close)
        with contextlib.suppress(Exception):
            closing.result(timeout)
        self._owner.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.reader.close()

    async def run(self, action: Callable[[App], T]) -> T:
        """Run `action(app)` on the app's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._owner, action, self.app)

    async def read(self, action: Callable[[Ledger], T]) -> T:
        """Run `action(reader)` on a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, action, self.reader)

    # -- the app's thread ------------------------------------------------------------------

    async def submit(self, fleet: str, request: CommandRequest, signed: SignedEnvelope | None = None
                     ) -> Outcome:
        """Decide a command through the gate, with the envelope its actor signed (if any)."""
        return await self.run(lambda app: app.service.submit(fleet, request.command, signed=signed))

    async def approve(self, fleet: str, approval: ApprovalRequest) -> Outcome:
        """Record an actor's signed approval of a pending request (the last one needed decides it)."""
        return await self.run(lambda app: app.service.approve(fleet, approval.request_seq, approval.meta,
                                                              signed=approval.signed))

    async def signed_report(self, fleet: str, body: dict[str, Any], signed: SignedEnvelope) -> Outcome:
        """A fact signed by its reporter: checked by the gate like a command, so it runs on the
        app's thread (and not in a group commit); accepted, or refused and recorded."""
        self._no_decision(fleet, [body])
        return await self.run(lambda app: app.service.report(fleet, body, signed=signed))

    async def identity(self) -> dict[str, Any]:
        """What a client signs against: the ledger's identity, and whether actors must sign."""
        def read(app: App) -> dict[str, Any]:
            policy = app.service.authority.policy()
            return {"ledger": app.ledger.ledger_id, "enforced": policy.enforced, "policy_seq": policy.seq}
        return await self.run(read)

    async def report(self, fleet: str, bodies: Sequence[dict[str, Any]], dedup_after: int) -> ReportResult:
        """Append worker facts in order, skipping those the fleet already holds.

        A body carrying `source_instance` and `source_digest` (an OpenRTC
        event, mapped) is written at most once: a sink that retries a post
        whose answer it never saw adds nothing. `dedup_after` is where the
        caller knows its records can start (its spool's scan position). The
        report is one transaction, shared with the reports of other requests
        waiting at the same time (`ledger.service.commit`).
        """
        self._no_decision(fleet, bodies)
        return await self.committer.submit(fleet, bodies, dedup_after)

    @staticmethod
    def _no_decision(fleet: str, bodies: Sequence[dict[str, Any]]) -> None:
        for number, body in enumerate(bodies, 1):
            if body.get("event") in GATED_EVENTS:
                where = f"record {number}" if len(bodies) > 1 else "record"
                raise RecordError(f"{where}: '{body.get('event')}' is a decision; "
                                  f"POST it to /fleets/{fleet}/commands")

    # -- reader threads --------------------------------------------------------------------

    async def feed_page(self, fleet: str, after: int, limit: int, where: FeedFilter) -> list[bytes]:
        """Up to `limit` matching records after `after`."""
        plain = where == FeedFilter()

        def page(ledger: Ledger) -> list[bytes]:
            if ledger.store.head_seq(fleet) is None:  # one indexed read, not a scan of every fleet
                raise UnknownFleetError(f"fleet {fleet!r} has no records")
            out: list[bytes] = []
            for data in ledger.raw_records(fleet, after):
                if plain or where.matches(orjson.loads(data)):
                    out.append(data)
                    if len(out) >= limit:
                        break
            return out

        return await self.read(page)

    async def records_after(self, fleet: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Stored records after `after` (at most `limit`), with their seq."""

        def page(ledger: Ledger) -> list[tuple[int, bytes]]:
            rows = ledger.store.page(fleet, after, limit)
            return [(int(row.originator_version), stored_bytes(row.state)) for row in rows]

        return await self.read(page)
