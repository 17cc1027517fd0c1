"""Talking to the service from elsewhere: a small HTTP client, a stream follower,
the remote audit sink and the remote pool driver.

Pools on other hosts cannot open the ledger's database; they reach the
ledger through the service. HTTP with the standard library only (urllib,
http.client), so a pool host needs no web framework:

- `ServiceClient`: JSON requests with a bearer token; errors as `ServiceError`.
  In an enforced ledger it signs commands, approvals and reports with the
  actor's own key (`signed_command`, `approve`, `signed_report`): the server
  checks the signature and never holds the key.
- `follow_stream`: the live stream as records, resuming with `Last-Event-ID`
  after any disconnect (a server restart included), so a follower sees every
  record exactly once.
- `RemoteAuditSink`: `LedgerAuditSink` with the service in place of the
  database. Same guarantees, by the same code: the pool's call is a
  non-blocking hand-off; the local sink's writer loop posts batches to
  `POST /fleets/{fleet}/reports` (only where records go is overridden); when
  the service is down or failing the records go to the same durable spool
  (`ledger.openrtc.spool`) and are flushed in order later; the service drops
  any record whose `(source_instance, source_digest)` the fleet already
  holds, so a post whose answer was lost and is retried from the spool, or
  sent to another server process, adds nothing twice.
- `StreamDrainer`: takes drain orders from the stream: for each
  `deployment.drain_started` naming a worker its driver runs, it calls
  `driver.drain(worker_id)`.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ledger.actors import ActorSigner
from ledger.envelope import DEFAULT_EXPIRY_MINUTES
from ledger.errors import RecordError
from ledger.openrtc.ledger_io import Identity
from ledger.openrtc.sink import LedgerAuditSink, Stored
from ledger.openrtc.spool import SpoolEntry
from ledger.service.envelopes import sign_approval, sign_command, sign_report

_log = logging.getLogger("ledger.service.client")


class ServiceError(Exception):
    """The service answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class ServiceClient:
    """JSON over HTTP to one service, with one bearer token."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ledger_id: str | None = None

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        """Send a request; the decoded JSON answer. A refusal (409) is an answer, not an error."""
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read())
            if exc.code == 409:
                return Answer(409, payload)
            reason = payload.get("error", exc.reason) if isinstance(payload, dict) else str(exc.reason)
            raise ServiceError(exc.code, str(reason)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ServiceError(0, f"cannot reach {self.url}: {exc}") from None

    def command(self, fleet: str, body: dict[str, Any]) -> Answer:
        return self.request("POST", f"/fleets/{fleet}/commands", body)

    def report(self, fleet: str, bodies: Sequence[dict[str, Any]], dedup_after: int = 0) -> Answer:
        return self.request("POST", f"/fleets/{fleet}/reports?dedup_after={dedup_after}", list(bodies))

    def head(self, fleet: str) -> int:
        return int(self.request("GET", f"/fleets/{fleet}/history").body["head_seq"])

    # -- actor-signed requests: the client signs, the server never holds the key ---------------

    def ledger_id(self) -> str:
        """The identity every envelope names (read once, then kept: it never changes)."""
        if self._ledger_id is None:
            self._ledger_id = str(self.request("GET", "/ledger").body["ledger"])
        return self._ledger_id

    def signed_command(self, fleet: str, body: dict[str, Any], signer: ActorSigner, *,
                       minutes: int = DEFAULT_EXPIRY_MINUTES) -> Answer:
        """Post a `/commands` body signed by `signer` (its actor), as `ledger ... --actor-key` signs."""
        return self.command(fleet, sign_command(signer, self.ledger_id(), fleet, body, minutes=minutes))

    def signed_report(self, fleet: str, body: dict[str, Any], signer: ActorSigner, *,
                      minutes: int = DEFAULT_EXPIRY_MINUTES) -> Answer:
        """Post one worker fact signed by its reporter (bound to the fact's worker by the policy)."""
        return self.request("POST", f"/fleets/{fleet}/reports",
                            sign_report(signer, self.ledger_id(), fleet, body, minutes=minutes))

    def approve(self, fleet: str, request_seq: int, signer: ActorSigner, reason: str | None = None, *,
                minutes: int = DEFAULT_EXPIRY_MINUTES) -> Answer:
        """`ledger approve SEQ` over HTTP: sign an approval naming the pending request's seq and
        hash (read from the feed, so the approval cannot be moved to another request)."""
        page = self.request("GET", f"/fleets/{fleet}/feed?after={request_seq - 1}&limit=1").body
        if not isinstance(page, dict) or page.get("seq") != request_seq:
            raise ServiceError(404, f"fleet {fleet} has no record at seq {request_seq}")
        body = sign_approval(signer, self.ledger_id(), fleet, request_seq, str(page["hash"]), reason,
                             minutes=minutes)
        return self.request("POST", f"/fleets/{fleet}/approvals", body)


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return {"error": data[:200].decode("utf-8", "replace")}


# -- the live stream ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """One record from the stream: its seq (the SSE id) and its JSON."""

    seq: int
    record: dict[str, Any]


def read_events(response: http.client.HTTPResponse, *,
                comments: bool = False) -> Iterator[tuple[str | None, bytes]]:
    """(id, data) of each Server-Sent Event until the connection ends; with `comments`,
    also `(None, b"")` for each comment line (the server's keep-alives), so a caller
    gets a chance to stop while the stream is idle."""
    event_id: str | None = None
    data: list[bytes] = []
    while True:
        line = response.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield event_id, b"\n".join(data)
            event_id, data = None, []
        elif line.startswith(b":"):
            if comments:
                yield None, b""
        elif line.startswith(b"id:"):
            event_id = line[3:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))


def follow_stream(url: str, token: str, fleet: str, *, after: int = 0, query: str = "",
                  stop: threading.Event | None = None, retry_s: float = 0.5,
                  read_timeout: float = 60.0) -> Iterator[StreamEvent]:
    """Every record after `after`, live, forever (until `stop`): reconnects on any error and
    resumes with `Last-Event-ID`, so nothing is missed or repeated across server restarts."""
    parts = urllib.parse.urlsplit(url)
    last = after
    while stop is None or not stop.is_set():
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                timeout=read_timeout)
        try:
            path = f"{parts.path.rstrip('/')}/fleets/{fleet}/stream" + (f"?{query}" if query else "")
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                                     "Last-Event-ID": str(last),
                                                     "Accept": "text/event-stream"})
            response = connection.getresponse()
            if response.status != 200:
                _log.warning("stream %s: HTTP %s", fleet, response.status)
                response.read()
            else:
                for event_id, data in read_events(response, comments=True):
                    if event_id is None:
                        if stop is not None and stop.is_set():
                            return
                        continue
                    seq = int(event_id)
                    if seq <= last:
                        continue
                    last = seq
                    yield StreamEvent(seq, orjson.loads(data))
                    if stop is not None and stop.is_set():
                        return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            _log.info("stream %s: %s; resuming after seq %d", fleet, exc, last)
        finally:
            connection.close()
        if stop is not None:
            stop.wait(retry_s)
        else:
            time.sleep(retry_s)


# -- the remote audit sink -----------------------------------------------------------------------


class RemoteAuditSink(LedgerAuditSink):
    """An OpenRTC audit sink that reports to the ledger service instead of its database.

    `spool_dir` is required (there is no database file to put it beside).
    Pool requests (`may_request`) are not taken remotely: a rollback is a
    command, sent to `/commands` by whoever decides it.
    """

    def __init__(self, url: str, token: str, fleet: str, *, source: str,
                 spool_dir: str | os.PathLike[str], timeout: float = 10.0, **options: Any):
        if options.get("may_request"):
            raise ValueError("a remote sink takes no may_request: send the command to /commands")
        self.client = ServiceClient(url, token, timeout)
        super().__init__(url, None, fleet, source=source, spool_dir=spool_dir, **options)

    @property
    def destination(self) -> str:
        return self.client.url

    def _store(self, bodies: list[dict[str, Any]], dedup_after: int) -> Stored:
        """Post one report; the service drops what the fleet already holds after `dedup_after`."""
        try:
            answer = self.client.report(self.fleet, bodies, dedup_after)
        except ServiceError as exc:
            if exc.status in (400, 422):  # refused for good
                raise RecordError(exc.reason) from None
            raise
        receipts = answer.body.get("receipts", [])
        return Stored(int(receipts[-1]["seq"]) if receipts else None, len(receipts),
                      int(answer.body.get("duplicates", 0)))

    def _already_stored(self, entries: Sequence[SpoolEntry]) -> set[Identity] | None:
        return None  # the service looks them up, in the transaction that stores the rest

    def _refused_whole(self, chunk: list[dict[str, Any]], error: RecordError) -> None:
        for body in chunk:  # valid here, refused there (another version's schema?): kept aside
            self._dead_letter(body, error)

    def _settle(self) -> None:
        return None  # no pool requests remotely: nothing to settle

    def _close_ledger(self) -> None:
        return None


# -- the remote pool driver ---------------------------------------------------------------------


class Drainable(Protocol):
    def drain(self, worker_id: str) -> None: ...

    def worker_ids(self) -> list[str]: ...


class StreamDrainer:
    """Drain orders from the service's stream, carried out by a local driver.

    The pool host runs its pools with a driver (`OpenRTCPoolDriver`); the
    decision to drain is taken and recorded elsewhere (`deployment.drain_started`
    naming the worker). This follows `/stream` from `after` (default: the
    fleet's head now, so old drains are not replayed) and drains each named
    worker it runs, once.
    """

    def __init__(self, url: str, token: str, fleet: str, driver: Drainable, *,
                 after: int | None = None, on_drain: Callable[[str, int], None] | None = None):
        self.url, self.token, self.fleet, self.driver = url, token, fleet, driver
        self.after = ServiceClient(url, token).head(fleet) if after is None else after
        self.on_drain = on_drain
        self.drained: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-drainer-{fleet}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in follow_stream(self.url, self.token, self.fleet, after=self.after,
                                   query="event=deployment.drain_started", stop=self._stop):
            worker = event.record.get("worker_id")
            if not isinstance(worker, str) or worker in self.drained:
                continue
            if worker in self.driver.worker_ids():
                self.drained[worker] = event.seq
                _log.info("drain order for %s at seq %d", worker, event.seq)
                self.driver.drain(worker)
                if self.on_drain is not None:
                    self.on_drain(worker, event.seq)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
