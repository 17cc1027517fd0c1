"""`LedgerAuditSink`: the ledger as the `audit_sink` of an OpenRTC `AgentPool`.

    sink = LedgerAuditSink("ledger.db", "ledger.key", "prod", source="pool-a")
    pool = AgentPool(agent=MyAgent, deployment_version="v2", audit_sink=sink)
    ...
    sink.close()

OpenRTC calls its sink synchronously on the thread that emitted (the asyncio
loop for `begin_drain()`), and swallows whatever the sink raises. So the call
does only a non-blocking hand-off to a bounded in-memory queue and never
raises; a writer thread maps each event (`ledger.openrtc.mapping`) and appends
it, signed, to the ledger.

When the ledger cannot be written (locked, unreachable, disk full, read-only)
the writer puts the records into a durable local spool (`ledger.openrtc.spool`,
fsync per write) and flushes it later, in order: while anything is spooled, new
records are spooled behind it, so the ledger receives them in arrival order.
A flush first looks up which spooled records the ledger already holds (by
`(source_instance, source_digest)`), so a crash in the middle of a flush never
doubles a record. A later sink for the same fleet and source (after a
restart) flushes what an earlier one left.

What can still be lost, and how it shows: events in the in-memory hand-off at
a hard crash (it is drained within one ledger write or one fsync, and on
`close()`/interpreter exit); and events that arrive while the queue is full
because both the ledger and the spool are failing: those are counted, and an
`audit.gap` record naming their OpenRTC `seq` numbers is written once possible.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ledger.actors import ActorSigner
from ledger.api import Ledger
from ledger.decide import external_settlement
from ledger.errors import LedgerError, RecordError
from ledger.events import check_fleet_name
from ledger.gate import FleetService
from ledger.openrtc.ledger_io import Identity, open_ledger, recorded_identities, write_in_order
from ledger.openrtc.mapping import (
    REQUESTABLE_EVENTS,
    TRUSTED_EVENTS,
    AuditEventLike,
    Source,
    SourceEvent,
    gap_record,
    identity,
    is_request,
    to_record,
)
from ledger.openrtc.spool import Spool, SpoolEntry, spool_name
from ledger.signing import PARALLEL_MIN
from projections.runner import Projections

#: Records per ledger transaction: below `ledger.signing.PARALLEL_MIN`, so the
#: writer thread never starts a signing process pool inside an application.
BATCH = min(200, PARALLEL_MIN - 1)
DEFAULT_QUEUE = 10_000
#: While a rollback the platform carries out is in flight, look at the fleet this often.
WATCH_S = 0.5

_log = logging.getLogger("ledger.openrtc")


def instance_id() -> str:
    """This process instance: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


class _Waiter:
    """A flush request travelling through the queue behind the events before it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False


_STOP = object()


@dataclass(frozen=True)
class Stored:
    """What one store of records did: the last position written, how many, how many were there."""

    last_seq: int | None
    written: int
    duplicates: int


class LedgerAuditSink:
    """An OpenRTC audit sink that writes every event into a fleet's chain of the ledger.

    `source` names the pool or worker (recorded as `source_worker`, and as the
    `worker_id` of its own worker facts); give each pool its own sink. The spool
    lives in `spool_dir` (default: `<ledger_db>.spool/`); put it on another
    filesystem than the ledger if a full disk is a concern.

    In an enforced ledger, give the sink a `reporter` (an actor with the reporter
    role bound to `source`) and it signs every fact it writes, in the reporter's
    name, one per transaction; a fact about a worker outside the reporter's
    binding is refused and recorded instead. The rollbacks a pool requests
    (`may_request`) are signed by `requester` (an actor whose role allows
    rollback, and complete and fail: it also settles them), in its name; without
    one an enforced ledger refuses them (recorded as unproven), never stores them
    as proven.
    """

    def __init__(self, ledger_db: str | os.PathLike[str], key: str | os.PathLike[str] | None,
                 fleet: str, *, source: str, spool_dir: str | os.PathLike[str] | None = None,
                 queue_size: int = DEFAULT_QUEUE, lock_timeout_s: float = 0.25,
                 retry_s: tuple[float, float] = (0.2, 5.0),
                 trusted_events: Iterable[str] = TRUSTED_EVENTS, instance: str | None = None,
                 may_request: Iterable[str] = (), watch_actor: str = "ledger-watch",
                 reporter: ActorSigner | None = None, requester: ActorSigner | None = None):
        check_fleet_name(fleet)
        requests = frozenset(may_request)
        if not requests <= REQUESTABLE_EVENTS:
            raise ValueError(f"may_request takes {sorted(REQUESTABLE_EVENTS)}, not {sorted(requests)}")
        if not source.strip():
            raise ValueError("source must name the pool or worker the events come from")
        db = os.fspath(ledger_db)
        if spool_dir is None:
            if db.startswith(("postgresql://", "postgres://")):
                raise ValueError("a PostgreSQL ledger needs an explicit spool_dir")
            spool_dir = f"{db}.spool"
        self.db, self.key, self.fleet = db, key, fleet
        self.source = Source(source, instance or instance_id())
        self.trusted = frozenset(trusted_events)
        self.may_request = requests
        self.watch_actor = watch_actor
        self.reporter, self.requester = reporter, requester
        self.lock_timeout_s = lock_timeout_s
        self.retry_min, self.retry_max = retry_s
        self.spool = Spool(spool_dir, spool_name(fleet, source))
        self.dead_letter_path = Path(spool_dir) / f"{spool_name(fleet, source)}.rejected"
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._received = itertools.count(1)
        self._lost: list[int] = []
        self._lost_lock = threading.Lock()
        self._closed = False
        self._ledger: Ledger | None = None
        self._service: FleetService | None = None
        self._views: Projections | None = None
        self._watching = False  # an external move is in flight: settle it when the fleet shows it
        self._known_head = 0
        self._backlog: list[dict[str, Any]] = []
        self._failures = 0
        self._next_try = 0.0
        self.stats: dict[str, int] = dict.fromkeys(
            ("written", "spooled", "flushed", "duplicates", "lost", "dead_letter", "after_close"), 0)
        self._thread = threading.Thread(target=self._run, name=f"ledger-sink-{source}", daemon=True)
        self._thread.start()
        atexit.register(self.close, 5.0)

    @property
    def instance(self) -> str:
        return self.source.instance

    # -- the pool's side: called on its thread, must be fast and must not raise -----------

    def __call__(self, event: AuditEventLike) -> None:
        try:
            next(self._received)
            if self._closed:
                self._after_close(event)
                return
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lost_lock:
                self._lost.append(int(event.seq))
        except Exception:  # the pool must never see the sink fail
            _log.exception("openrtc audit sink: cannot take an event")

    def _after_close(self, event: AuditEventLike) -> None:
        self.stats["after_close"] += 1
        _log.warning("openrtc audit event after the sink was closed (not in the ledger): %s",
                     _describe(event))

    # -- the caller's controls ------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything received so far to the ledger; True iff nothing is left waiting."""
        if self._closed or not self._thread.is_alive():
            return False
        waiter = _Waiter()
        try:
            self._queue.put(waiter, timeout=timeout)
        except queue.Full:
            return False
        return waiter.event.wait(timeout) and waiter.ok

    def close(self, timeout: float = 10.0) -> bool:
        """Flush what can be flushed, stop the writer; True iff the ledger holds every event.

        What the ledger could not take stays in the spool for the next sink.
        """
        if self._closed:
            return False
        ok = self.flush(timeout)
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        return ok and not self.spool.pending

    @property
    def pending(self) -> bool:
        """Whether spooled records still wait for the ledger."""
        return self.spool.pending or bool(self._backlog)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
            self._drain_late()
        finally:
            self._close_ledger()
            self.spool.close()

    def _drain_late(self) -> None:
        """Events that slipped in behind the stop request: delivered, not dropped."""
        late = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Waiter):
                item.event.set()
            elif item is not _STOP:
                late.append(item)
        bodies = self._gaps() + self._map(late)
        if bodies or self._backlog:
            self._deliver(bodies)

    def _step(self) -> bool:
        """Take what is queued, deliver it; False once asked to stop."""
        waiting = self.pending or bool(self._lost)
        timeout = max(0.0, self._next_try - time.monotonic()) if waiting else None
        if self._watching:
            timeout = min(timeout if timeout is not None else WATCH_S, WATCH_S)
        items: list[Any] = []
        if self._backlog:
            time.sleep(timeout or 0.0)  # take nothing more until the backlog is down
        else:
            with contextlib.suppress(queue.Empty):
                items.append(self._queue.get(timeout=timeout))
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        waiters = [item for item in items if isinstance(item, _Waiter)]
        stop = any(item is _STOP for item in items)
        events = [item for item in items if item is not _STOP and not isinstance(item, _Waiter)]
        bodies = self._gaps() + self._map(events)
        if bodies or self._backlog:
            self._deliver(bodies)
        if self.spool.pending and (waiters or stop or time.monotonic() >= self._next_try):
            self._flush_spool()
        if self._watching and not self.pending:
            self._settle()
        for waiter in waiters:
            waiter.ok = not self.pending and not self._lost
            waiter.event.set()
        return not stop

    def _map(self, events: Sequence[Any]) -> list[dict[str, Any]]:
        bodies = []
        for event in events:
            try:
                bodies.append(to_record(SourceEvent.from_audit_event(event), self.source, self.trusted,
                                        may_request=self.may_request))
            except Exception as exc:  # kept in the dead-letter file instead
                self._dead_letter(_describe(event), exc)
        return bodies

    def _gaps(self) -> list[dict[str, Any]]:
        """`audit.gap` records for events dropped because the hand-off was full."""
        with self._lost_lock:
            lost, self._lost = self._lost, []
        if not lost:
            return []
        self.stats["lost"] += len(lost)
        bodies = []
        for first, last in _ranges(sorted(set(lost))):
            reason = (f"the sink's in-memory hand-off was full (ledger and spool both failing or slow): "
                      f"OpenRTC seq {first}..{last} of instance {self.source.instance} were dropped")
            try:
                bodies.append(gap_record(self.source, first, last, actor="openrtc-sink", reason=reason))
            except Exception as exc:
                self._dead_letter({"lost_seq": [first, last]}, exc)
        _log.error("openrtc audit sink dropped %d event(s): hand-off full", len(lost))
        return bodies

    def _deliver(self, bodies: list[dict[str, Any]]) -> None:
        """Straight to the ledger when nothing waits before them; else behind the spool."""
        waiting, self._backlog = self._backlog + bodies, []
        if not self.spool.pending:
            waiting = self._write(waiting)
            if not waiting:
                return
        try:
            self.spool.append(waiting, scan_from=self._known_head)
        except OSError as exc:
            self._backlog = waiting  # kept in memory; the queue stops being read meanwhile
            self._failed(f"cannot write the spool {self.spool.path}: {exc}")
            return
        self.stats["spooled"] += len(waiting)

    # -- the write loop, shared with the remote sink (`ledger.service.client.RemoteAuditSink`),
    # which overrides only where records go: `_store`, `_already_stored`, `_refused_whole`.

    def _write(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store in transactions of `BATCH` records, in order; return the records not stored."""
        remaining = bodies
        try:
            while remaining:
                chunk = remaining[:BATCH]
                try:
                    stored = self._store(chunk, self._known_head)
                except RecordError as exc:  # a record refused for good: set it aside, go on
                    valid = self._valid_only(chunk)
                    if len(valid) == len(chunk):
                        self._refused_whole(chunk, exc)
                        valid = []
                    remaining = valid + remaining[BATCH:]
                    continue
                self._stored(chunk, stored)
                self.stats["written"] += len(chunk)
                remaining = remaining[BATCH:]
        except Exception as exc:  # any failure: spool, retry later
            self._failed(f"cannot write to {self.destination}: {exc}")
            return remaining
        self._succeeded()
        self._settle()
        return []

    def _flush_spool(self) -> None:
        """Move spooled records into the ledger, in order, each exactly once."""
        try:
            entries = self.spool.entries()
            if not entries:
                self.spool.reset_if_done(self._known_head)
                return
            present = self._already_stored(entries)
            for start in range(0, len(entries), BATCH):
                chunk = entries[start:start + BATCH]
                bodies = []
                for entry in chunk:
                    key = identity(entry.body)
                    if present is not None and key is not None:
                        if key in present:
                            self.stats["duplicates"] += 1
                            continue
                        present.add(key)
                    bodies.append(entry.body)
                bodies = self._valid_only(bodies)
                if bodies:
                    stored = self._store(bodies, self.spool.scan_from)
                    self._stored(bodies, stored)
                    self.stats["flushed"] += stored.written
                self.spool.acknowledge(chunk[-1].end)
            self.spool.reset_if_done(self._known_head)
        except Exception as exc:  # stays spooled; retried later
            self._failed(f"cannot flush the spool {self.spool.path} into {self.destination}: {exc}")
            return
        self._succeeded()
        _log.info("openrtc audit sink: spool flushed into fleet %s", self.fleet)

    def _stored(self, bodies: Sequence[dict[str, Any]], stored: Stored) -> None:
        if stored.last_seq is not None:
            self._known_head = max(self._known_head, stored.last_seq)
        self.stats["duplicates"] += stored.duplicates
        self._watching = self._watching or any(is_request(body) for body in bodies)

    # -- where records go: this sink's own ledger --------------------------------------------

    @property
    def destination(self) -> str:
        """Where records go, for the log."""
        return "the ledger"

    def _store(self, bodies: list[dict[str, Any]], dedup_after: int) -> Stored:
        """Store `bodies` in order, each request through the gate; `RecordError` if one is refused.

        (A local flush has already dropped what the ledger holds: `_already_stored`.)
        """
        ledger = self._open()
        receipts = write_in_order(ledger, self._gate(ledger), self.fleet, bodies, BATCH,
                                  reporter=self.reporter, requester=self.requester)
        return Stored(receipts[-1].seq if receipts else None, len(bodies), 0)

    def _already_stored(self, entries: Sequence[SpoolEntry]) -> set[Identity] | None:
        """The identities among `entries` the fleet already holds (None: the store checks itself)."""
        wanted = {key for key in (identity(e.body) for e in entries) if key is not None}
        return recorded_identities(self._open(), self.fleet, self.spool.scan_from, wanted)

    def _refused_whole(self, chunk: list[dict[str, Any]], error: RecordError) -> None:
        """Every record of a chunk passes on its own, yet the ledger refused it: try again later."""
        raise error

    def _valid_only(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop (into the dead-letter file) bodies the ledger would refuse forever."""
        valid = []
        for body in bodies:
            try:
                Ledger.validate(body, gated=is_request(body))
            except LedgerError as exc:
                self._dead_letter(body, exc)
                continue
            valid.append(body)
        return valid

    def _dead_letter(self, what: Any, error: Exception) -> None:
        self.stats["dead_letter"] += 1
        line = orjson.dumps({"error": str(error)[:2000], "event": what},
                            default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        try:
            with open(self.dead_letter_path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            _log.error("openrtc audit sink: cannot keep a refused event: %s", line[:2000])
        _log.error("openrtc audit sink: event refused (%s), kept in %s", error, self.dead_letter_path)

    # -- the ledger connection and retry pacing ------------------------------------------------

    def _open(self) -> Ledger:
        if self._ledger is None:
            ledger = open_ledger(self.db, self.key, self.lock_timeout_s)
            try:
                self._known_head = max(self._known_head, ledger.head(self.fleet).seq)
            except BaseException:
                ledger.close()
                raise
            self._ledger = ledger
        return self._ledger

    def _gate(self, ledger: Ledger) -> FleetService:
        """The gate over this sink's ledger, for the decisions its pool may request."""
        if self._service is None:
            self._views = Projections.of(ledger, notice=lambda message: _log.info("%s", message))
            self._service = FleetService(ledger, self._views)
        return self._service

    def _settle(self) -> None:
        """Settle a rollback the platform carries out once the fleet shows it done (or timed out).

        The ledger records `rollback.completed` when every live worker runs the
        target and none drains, or `rollback.failed` once the drain timeout has
        passed; both pass the gate like any other decision.
        """
        try:
            ledger = self._open()
            service = self._gate(ledger)
            state = service.states.fleet_state(self.fleet)
            actor = self.requester.name if self.requester is not None else self.watch_actor
            command = external_settlement(state, actor, datetime.now(UTC))
            self._watching = state.in_flight is not None and state.in_flight.external
            if command is not None:
                receipts = service.submit(self.fleet, command, signer=self.requester).receipts
                self._known_head = max(self._known_head, receipts[-1].seq)
                self._watching = False
        except Exception as exc:  # the next pass tries again
            _log.warning("openrtc audit sink: cannot settle the fleet's move yet: %s", exc)

    def _close_ledger(self) -> None:
        if self._views is not None:
            with contextlib.suppress(Exception):
                self._views.close()
            self._views, self._service = None, None
        if self._ledger is not None:
            with contextlib.suppress(Exception):
                self._ledger.close()
            self._ledger = None

    def _failed(self, why: str) -> None:
        if self._failures == 0:
            _log.warning("openrtc audit sink: %s; spooling to %s", why, self.spool.path)
        self._failures += 1
        delay = min(self.retry_max, self.retry_min * 2 ** min(self._failures - 1, 16))
        self._next_try = time.monotonic() + delay
        self._close_ledger()  # reopen next time: the failure may have broken the connection

    def _succeeded(self) -> None:
        self._failures = 0
        self._next_try = 0.0


def _ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges


def _describe(event: Any) -> dict[str, Any]:
    """An event's attributes for a log line or the dead-letter file (never `to_dict()`)."""
    names = ("seq", "timestamp", "event_type", "actor", "target", "result", "version", "fields")
    return {name: getattr(event, name, None) for name in names}
