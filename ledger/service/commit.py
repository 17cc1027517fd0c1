"""Group commit: the worker reports of concurrent requests, stored in one transaction per fleet.

A durable commit (an fsync on SQLite, a WAL flush on PostgreSQL) costs far
more than sealing a record, and the chain takes one writer at a time anyway;
so one writer thread takes every report that is waiting when it comes round,
and stores each fleet's share in order in a single transaction. No timer
holds a report back: a report that arrives while a commit is under way simply
joins the next one, so a lone writer waits no longer than before and many
writers share their commits.

What each request is told stays exact. A request is answered only after the
transaction holding its records has committed (nothing acknowledged is ever
lost); its receipts are its own records' positions, in the order it sent
them; a transaction that fails fails every request in it, and none of their
records is stored. A request whose records the ledger refuses (a body that
does not pass its schema) is answered alone and leaves the others in its
group to commit.

Duplicates are found in what is stored, not in what a process remembers: a
report body carrying `source_instance` and `source_digest` (a mapped OpenRTC
event) is looked up in the fleet's records after the caller's `dedup_after`,
up to the head the writer read, and the group is then appended only at that
head (`expect_seq`). If any writer (this process, another server process,
a local sink) appended meanwhile, the insert is refused by the chain's unique
position and the group is checked again on the new head. So two server
processes given the same retried report store it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.api import CHUNK, Ledger, Receipt
from ledger.errors import HeadMovedError, RecordError, StorageError, UnknownFleetError
from ledger.openrtc.ledger_io import Identity, recorded_identities
from ledger.openrtc.mapping import identity

#: Most records a single report may carry: one report is one transaction.
MAX_REPORT_RECORDS = CHUNK
#: Times a group is checked again after another writer moved the head under it.
HEAD_RETRIES = 50


@dataclass(frozen=True)
class ReportResult:
    """What one report did: where each of its records landed, and how many were already there."""

    receipts: tuple[Receipt, ...]
    duplicates: int


@dataclass
class _Job:
    """One request's report, waiting for its group's commit."""

    fleet: str
    bodies: Sequence[dict[str, Any]]
    dedup_after: int
    done: Callable[[ReportResult | BaseException], None]
    keys: list[Identity | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [identity(body) for body in self.bodies]

    @property
    def keyed(self) -> bool:
        return any(key is not None for key in self.keys)


class GroupCommitter:
    """The writer thread for worker reports, with a ledger of its own."""

    def __init__(self, open_ledger: Callable[[], Ledger], max_records: int = CHUNK):
        self.max_records = max_records
        #: Called on the writer thread after each commit (the stream tail reads at once).
        self.on_commit: Callable[[], None] | None = None
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._ledger: Ledger | None = None
        self._open_error: BaseException | None = None
        self._ready = threading.Event()
        #: Transactions committed and the reports they carried (for the logs and tests).
        self.commits = 0
        self.reports = 0
        self._thread = threading.Thread(target=self._run, args=(open_ledger,), name="ledger-commit",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    async def submit(self, fleet: str, bodies: Sequence[dict[str, Any]], dedup_after: int) -> ReportResult:
        """Store one report; returns once its transaction has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ReportResult] = loop.create_future()

        def settle(outcome: ReportResult | BaseException) -> None:
            def set_on_loop() -> None:
                if future.done():  # the request went away unanswered; its records stand
                    return
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(set_on_loop)

        with self._cond:
            if self._stopping:
                raise StorageError("the server is shutting down: nothing was written; report again")
            self._pending.append(_Job(fleet, bodies, max(0, dedup_after), settle))
            self._cond.notify()
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self, open_ledger: Callable[[], Ledger]) -> None:
        try:
            self._ledger = open_ledger()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                group = self._take()
                if group is None:
                    return
                for fleet_jobs in _by_fleet(group).values():
                    self._commit_group(fleet_jobs)
        finally:
            with contextlib.suppress(Exception):
                self._ledger.close()

    def _take(self) -> list[_Job] | None:
        """Every waiting report that fits one transaction (at least one); None once stopped and empty."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            group = [self._pending.popleft()]
            total = len(group[0].bodies)
            while self._pending and total + len(self._pending[0].bodies) <= self.max_records:
                job = self._pending.popleft()
                total += len(job.bodies)
                group.append(job)
            return group

    def _commit_group(self, jobs: list[_Job]) -> None:
        """Commit the jobs together; if the ledger refuses a body, set that job aside and go on."""
        try:
            self._commit(jobs)
        except RecordError as exc:
            if len(jobs) == 1:
                jobs[0].done(exc)
                return
            for job in jobs:  # find who was refused: each job alone (rare; the others still commit)
                self._commit_group([job])
        except BaseException as exc:  # storage away, gave up: every request of the group hears it
            for job in jobs:
                job.done(exc)

    def _commit(self, jobs: list[_Job]) -> None:
        ledger = self._ledger
        assert ledger is not None
        fleet = jobs[0].fleet
        keyed = [job for job in jobs if job.keyed]
        for attempt in range(HEAD_RETRIES):
            head: int | None = None
            present: set[Identity] = set()
            if keyed:
                head = ledger.head(fleet).seq
                wanted = {key for job in keyed for key in job.keys if key is not None}
                after = min(job.dedup_after for job in keyed)
                with contextlib.suppress(UnknownFleetError):
                    present = recorded_identities(ledger, fleet, after, wanted)
            fresh: list[dict[str, Any]] = []
            counts: list[tuple[int, int]] = []  # (records written, duplicates) per job
            for job in jobs:
                written = duplicates = 0
                for body, key in zip(job.bodies, job.keys, strict=True):
                    if key is not None and key in present:
                        duplicates += 1
                        continue
                    if key is not None:
                        present.add(key)
                    fresh.append(body)
                    written += 1
                counts.append((written, duplicates))
            try:
                receipts = ledger.append_many(fleet, fresh, expect_seq=head) if fresh else []
            except HeadMovedError:
                time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
                continue  # another writer appended: check again on the new head
            self.commits += 1
            self.reports += len(jobs)
            if receipts and self.on_commit is not None:
                self.on_commit()
            start = 0
            for job, (written, duplicates) in zip(jobs, counts, strict=True):
                job.done(ReportResult(tuple(receipts[start:start + written]), duplicates))
                start += written
            return
        raise HeadMovedError(f"{fleet}: other writers kept moving the head; gave up after "
                             f"{HEAD_RETRIES} tries")


def _by_fleet(jobs: list[_Job]) -> dict[str, list[_Job]]:
    groups: dict[str, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.fleet, []).append(job)
    return groups

