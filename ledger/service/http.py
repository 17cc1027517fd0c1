"""The HTTP routes: reads, writes, the feed, live streams, the report.

Why Starlette on uvicorn: a small, mature ASGI toolkit with streaming
responses (Server-Sent Events need nothing more), no coupling to pydantic
(the ledger already validates records with its own JSON Schemas and builds
commands from plain dicts in `bodies`), and uvicorn brings graceful
shutdown, several worker processes and proxy-header handling. FastAPI would
add pydantic models that would duplicate the schemas in `schemas/` and
generated OpenAPI we would still have to correct by hand.

Every error is one JSON object `{"error": "...", "request_id": "..."}`:
400 malformed JSON, 422 a body the ledger refuses (nothing written; a
malformed actor envelope included), 404 no such fleet or no answer, 409 a
command, approval or signed report the gate refused (the refusal is
recorded: its check, detail, seq and hash come back), 401/403 tokens, 413
body size, 429 too many streams, 503 storage unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ledger.errors import (
    ConflictError,
    InputError,
    LedgerError,
    NotFoundError,
    StorageError,
    UnknownFleetError,
    VerificationError,
)
from ledger.events import check_fleet_name
from ledger.feed import FeedFilter, parse_time
from ledger.gate import Outcome, Refused
from ledger.service import report
from ledger.service.backend import Backend
from ledger.service.bodies import command_from_body
from ledger.service.cloudevents import CONTENT_TYPE as CE_TYPE
from ledger.service.cloudevents import to_cloudevent
from ledger.service.commit import MAX_REPORT_RECORDS
from ledger.service.config import ServiceConfig
from ledger.service.envelopes import SIGNED_FIELDS, approval_from_body, split_signed
from ledger.service.leases import Leases, LocalLeases, PostgresLeases
from ledger.service.middleware import REQUEST_ID, BodyTooLargeError, RequestMiddleware
from ledger.service.openapi import ROUTES, RouteSpec, document
from ledger.service.tail import FleetTail, Tails
from ledger.service.tokens import Role, Token, TokenStore

_log = logging.getLogger("ledger.service")
#: /readyz answers 503 when the ledger and views do not answer within this many seconds.
READY_S = 3.0
Handler = Callable[[Request], Awaitable[Response]]


class Problem(Exception):
    """An HTTP error with a one-line reason (and, for a refusal, its record)."""

    def __init__(self, status: int, reason: str, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.extra, self.headers = status, reason, extra or {}, headers


def problem_response(exc: Problem) -> JSONResponse:
    body = {"error": exc.reason, **exc.extra, "request_id": REQUEST_ID.get()}
    return JSONResponse(body, exc.status, headers=exc.headers)


def status_of(exc: LedgerError) -> int:
    if isinstance(exc, UnknownFleetError | NotFoundError):
        return 404
    if isinstance(exc, InputError):
        return 422
    if isinstance(exc, VerificationError):
        return 500
    if isinstance(exc, ConflictError | StorageError):
        return 503
    return 500


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


@dataclass
class Service:
    """What the handlers share in one server process."""

    config: ServiceConfig
    backend: Backend
    tokens: TokenStore | None
    tails: Tails | None = None
    leases: Leases | None = None

    # -- who is asking --------------------------------------------------------------------

    def authorize(self, request: Request, role: Role | None) -> Token | None:
        if role is None:
            return None
        if self.tokens is None:
            raise Problem(403, "this server has no tokens file: start it with --tokens FILE")
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Problem(401, "a bearer token is required (Authorization: Bearer TOKEN)",
                          headers={"WWW-Authenticate": 'Bearer realm="deploy-ledger"'})
        token = self.tokens.find(secret.strip())
        if token is None:
            raise Problem(401, "unknown token", headers={
                "WWW-Authenticate": 'Bearer realm="deploy-ledger", error="invalid_token"'})
        if role not in token.roles:
            raise Problem(403, f"token {token.name!r} may not {role.value} (its roles: "
                          f"{', '.join(sorted(r.value for r in token.roles))})")
        return token


def _fleet(request: Request) -> str:
    fleet = str(request.path_params["fleet"])
    try:
        return check_fleet_name(fleet)
    except InputError as exc:
        raise Problem(400, str(exc)) from None


def _int(request: Request, name: str, default: int, minimum: int = 0) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"query parameter {name!r} must be an integer, not {text!r}") from None
    if value < minimum:
        raise Problem(400, f"query parameter {name!r} must be at least {minimum}")
    return value


def _bool(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "").lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise Problem(400, f"query parameter {name!r} must be true or false")


def _filter(request: Request) -> FeedFilter:
    q = request.query_params
    try:
        return FeedFilter(event=q.get("event"), actor=q.get("actor"), version=q.get("version"),
                          since=parse_time(q["since"]) if q.get("since") else None,
                          until=parse_time(q["until"]) if q.get("until") else None)
    except InputError as exc:
        raise Problem(400, str(exc)) from None


def _wants_cloudevents(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt not in (None, "", "record", "cloudevents"):
        raise Problem(400, "format must be record or cloudevents")
    return fmt == "cloudevents" or CE_TYPE in request.headers.get("accept", "")


async def _json_body(request: Request) -> Any:
    try:
        data = await request.body()
    except BodyTooLargeError:
        raise Problem(413, "request body too large") from None
    if not data.strip():
        raise Problem(400, "the request needs a JSON body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not JSON: {exc}".splitlines()[0]) from None


def _receipt(r: Any) -> dict[str, Any]:
    return {"fleet": r.fleet, "seq": r.seq, "hash": r.hash}


def outcome_body(outcome: Outcome, what: str) -> tuple[int, dict[str, Any]]:
    """The status and body for what the gate did."""
    receipts = [_receipt(r) for r in outcome.receipts]
    decision = outcome.decision
    if isinstance(decision, Refused):
        last = outcome.receipt
        return 409, {"error": f"{what} refused ({decision.check.value}): {decision.detail}",
                     "refused": True, "check": decision.check.value, "detail": decision.detail,
                     "seq": last.seq, "hash": last.hash, "receipts": receipts,
                     "replayed": outcome.replayed, "pending": decision.record.get("result") == "pending"}
    status = 200 if outcome.replayed else 201
    body: dict[str, Any] = {"accepted": True, "replayed": outcome.replayed, "receipts": receipts,
                            "seq": outcome.receipt.seq, "hash": outcome.receipt.hash}
    plan = decision.plan
    if plan is not None:
        body["plan"] = {"version": plan.target, "from_version": plan.from_version,
                        "start_workers": list(plan.start_workers),
                        "drain_workers": list(plan.drain_workers)}
    return status, body


# -- the handlers ---------------------------------------------------------------------------


def handlers(svc: Service) -> dict[str, Handler]:
    backend = svc.backend

    async def healthz(request: Request) -> Response:
        return JSON({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            fleets = await asyncio.wait_for(backend.run(lambda app: app.views.fleets()), READY_S)
        except (LedgerError, TimeoutError, OSError) as exc:
            return JSON({"status": "unavailable", "error": str(exc).splitlines()[0] if str(exc) else
                         type(exc).__name__}, 503)
        return JSON({"status": "ready", "fleets": len(fleets)})

    async def openapi(request: Request) -> Response:
        return JSON(document(report.package_version()))

    async def fleets(request: Request) -> Response:
        return JSON({"fleets": await backend.run(lambda app: app.views.fleets())})

    async def history(request: Request) -> Response:
        fleet = _fleet(request)
        return JSON(await backend.run(lambda app: app.views.history(fleet)))

    async def last_good(request: Request) -> Response:
        fleet = _fleet(request)
        for_rollback = _bool(request, "for_rollback")
        leaving = request.query_params.get("leaving") or None
        answer = await backend.run(lambda app: app.views.last_good(fleet, leaving, for_rollback=for_rollback))
        if answer is None:
            other = f"other than {leaving} " if leaving else ("other than the current one "
                                                              if for_rollback else "")
            raise Problem(404, f"fleet {fleet} has no last-good version: no version {other}has "
                          "completed without being rolled back from or marked bad")
        return JSON({"fleet": fleet, **answer.to_dict()})

    async def fleet_state(request: Request) -> Response:
        fleet = _fleet(request)
        return JSON(await backend.run(lambda app: app.views.fleet(fleet)))

    async def checkpoint(request: Request) -> Response:
        fleet = _fleet(request)

        def note(app: Any) -> str:
            if fleet not in app.ledger.fleets():
                raise UnknownFleetError(f"fleet {fleet!r} has no records")
            return str(app.ledger.checkpoint(fleet))

        return PlainTextResponse(await backend.run(note))

    async def feed(request: Request) -> Response:
        fleet = _fleet(request)
        after = _int(request, "after", 0)
        limit = _int(request, "limit", svc.config.max_feed_limit, 1)
        if limit > svc.config.max_feed_limit:
            raise Problem(400, f"limit is at most {svc.config.max_feed_limit}")
        where, ce = _filter(request), _wants_cloudevents(request)
        page = await backend.feed_page(fleet, after, limit, where)
        lines = [to_cloudevent(d, backend.ledger_id) if ce else d for d in page]
        next_after = orjson.loads(page[-1])["seq"] if page else after
        return Response(b"".join(line + b"\n" for line in lines), media_type="application/x-ndjson",
                        headers={"X-Next-After": str(next_after)})

    async def stream(request: Request) -> Response:
        fleet = _fleet(request)
        token = svc.authorize(request, Role.READ)
        assert token is not None and svc.leases is not None and svc.tails is not None
        resume = request.headers.get("last-event-id")
        if resume is not None:
            try:
                after = int(resume)
            except ValueError:
                raise Problem(400, "Last-Event-ID must be a record's seq") from None
        else:
            after = _int(request, "after", 0)
        where, ce = _filter(request), _wants_cloudevents(request)
        tails = svc.tails
        tail = await backend.read(lambda _ledger: tails.tail(fleet))  # 404 at once for an unknown fleet
        leases, limit = svc.leases, svc.config.max_streams_per_token
        try:
            lease = await asyncio.get_running_loop().run_in_executor(None, leases.acquire, token.name, limit)
        except Exception as exc:
            _log.warning("cannot count the streams of token %r: %s", token.name, exc)
            raise Problem(503, "cannot count this token's streams now (the database is unreachable)",
                          headers={"Retry-After": "5"}) from None
        if lease is None:
            raise Problem(429, f"token {token.name!r} already holds {limit} streams",
                          headers={"Retry-After": "5"})
        slot = StreamSlot(leases, lease)
        body = _events(svc, request, slot, fleet, after, where, ce, tail)
        weakref.finalize(body, slot.release)  # a stream dropped before its first byte frees its slot too
        return StreamingResponse(body,
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def commands(request: Request) -> Response:
        fleet = _fleet(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object")
        plain, signed = split_signed(body)
        parsed = command_from_body(fleet, plain)
        return decided(await backend.submit(fleet, parsed, signed), parsed.name)

    async def approvals(request: Request) -> Response:
        fleet = _fleet(request)
        approval = approval_from_body(await _json_body(request))
        return decided(await backend.approve(fleet, approval), "approval")

    async def ledger_identity(request: Request) -> Response:
        return JSON(await backend.identity())

    def decided(outcome: Outcome, what: str) -> Response:
        status, answer = outcome_body(outcome, what)
        if svc.tails is not None:
            svc.tails.poke()  # the decision (or its refusal) reaches this process's streams at once
        answer["request_id"] = REQUEST_ID.get()
        return JSON(answer, status)

    async def reports(request: Request) -> Response:
        fleet = _fleet(request)
        body = await _json_body(request)
        bodies = body if isinstance(body, list) else [body]
        if not bodies or not all(isinstance(b, dict) for b in bodies):
            raise Problem(400, "the body must be a record (a JSON object) or a non-empty array of them")
        if any(name in b for b in bodies for name in SIGNED_FIELDS):
            if len(bodies) != 1:
                raise Problem(422, "a signed report carries one record (each is checked and recorded "
                              "on its own): send signed records one per request")
            fact, signed = split_signed(bodies[0], "the record")
            assert signed is not None
            return decided(await backend.signed_report(fleet, fact, signed), "report")
        if len(bodies) > MAX_REPORT_RECORDS:
            raise Problem(400, f"a report holds at most {MAX_REPORT_RECORDS} records (one transaction); "
                          f"this one has {len(bodies)}: send them in several reports")
        result = await backend.report(fleet, bodies, _int(request, "dedup_after", 0))
        return JSON({"receipts": [_receipt(r) for r in result.receipts],
                     "duplicates": result.duplicates, "request_id": REQUEST_ID.get()}, 201)

    async def report_html(request: Request) -> Response:
        fleet = _fleet(request)
        data = await backend.run(lambda app: report.gather(app.ledger, app.views, fleet))
        page = report.render_html(data, csv_href=f"{fleet}.csv")  # relative: works behind a path prefix
        return Response(page, media_type="text/html; charset=utf-8")

    async def report_csv(request: Request) -> Response:
        fleet = _fleet(request)
        data = await backend.run(lambda app: report.gather(app.ledger, app.views, fleet))
        return Response(report.render_csv(data), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{fleet}-changes.csv"'})

    return {"healthz": healthz, "readyz": readyz, "openapi": openapi, "fleets": fleets,
            "history": history, "last_good": last_good, "fleet": fleet_state, "checkpoint": checkpoint,
            "feed": feed, "stream": stream, "commands": commands, "approvals": approvals,
            "reports": reports, "ledger": ledger_identity,
            "report": report_html, "report_csv": report_csv}


class StreamSlot:
    """One of a token's live streams, counted until released (exactly once)."""

    def __init__(self, leases: Leases, lease: str):
        self.leases, self.lease, self.held = leases, lease, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.leases.release(self.lease)


async def _events(svc: Service, request: Request, slot: StreamSlot, fleet: str, after: int, where: FeedFilter,
                  ce: bool, tail: FleetTail) -> AsyncIterator[bytes]:
    """The SSE body: records after `after`, exactly once each, in order, live."""
    backend = svc.backend
    plain = where == FeedFilter()
    last = after
    try:
        yield b"retry: 1000\n\n"
        while True:
            batch = tail.since(last)
            if batch is None:  # older than the buffer: read the gap from the store
                batch = await backend.records_after(fleet, last, 1000)
            if not batch:
                changed = tail.changed
                try:
                    await asyncio.wait_for(changed.wait(), svc.config.keepalive_s)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    # the tail thread may have stopped: look at the store ourselves
                    batch = await backend.records_after(fleet, last, 1000)
                    if not batch:
                        yield b": keepalive\n\n"
                        continue
                else:
                    continue
            out = []
            for seq, data in batch:
                if seq != last + 1:
                    break  # never skip: re-read from the store next round
                last = seq
                if not plain and not where.matches(orjson.loads(data)):
                    continue
                payload = to_cloudevent(data, backend.ledger_id) if ce else data
                # no `event:` line: every record is a plain "message", so EventSource's
                # onmessage sees them all; the type is in the data
                out.append(b"id: %d\ndata: %s\n\n" % (seq, payload))
            if out:
                yield b"".join(out)
    finally:
        slot.release()


def open_leases(config: ServiceConfig, backend: Backend) -> Leases:
    """Stream leases every server process shares (PostgreSQL), or this process's count (SQLite)."""
    store = backend.reader.store
    if store.is_sqlite:
        return LocalLeases()
    return PostgresLeases(config.db, store.recorder.datastore.schema, config.stream_lease_s)


@dataclass
class _State:
    """What the lifespan opens, for the routes of one process."""

    svc: Service | None = None
    table: dict[str, Handler] | None = None


def build_app(config: ServiceConfig) -> Any:
    """The ASGI app for one server process (the middleware around Starlette)."""
    state = _State()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend = await asyncio.get_running_loop().run_in_executor(
            None, lambda: Backend(config, lambda message: _log.info("%s", message)))
        svc = state.svc = Service(config, backend, TokenStore(config.tokens) if config.tokens else None)
        state.table = handlers(svc)
        svc.tails = Tails(backend.reader, asyncio.get_running_loop())
        backend.committer.on_commit = svc.tails.poke
        svc.leases = await asyncio.get_running_loop().run_in_executor(None, open_leases, config, backend)
        _log.info("%s: serving ledger %s", config.name, backend.reader.store.label)
        try:
            yield
        finally:
            svc.tails.close()
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, svc.leases.close)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, backend.close), 10)

    def guarded(spec: RouteSpec) -> Handler:
        async def endpoint(request: Request) -> Response:
            svc, table = state.svc, state.table
            assert svc is not None and table is not None, "the lifespan has not run"
            try:
                if spec.name != "stream":  # the stream checks its token itself, to count it
                    svc.authorize(request, spec.role)
                return await table[spec.name](request)
            except Problem as exc:
                return problem_response(exc)
            except LedgerError as exc:
                return problem_response(Problem(status_of(exc), str(exc).splitlines()[0]))
        return endpoint

    routes = [Route(spec.path, guarded(spec), methods=[spec.method], name=spec.name) for spec in ROUTES]
    app = Starlette(routes=routes, lifespan=lifespan)
    return RequestMiddleware(app, config.max_body_bytes, config.name)


def app_from_env() -> Any:
    """uvicorn's factory in every worker process: the app from `LEDGER_SERVICE_CONFIG`."""
    return build_app(ServiceConfig.from_env())
