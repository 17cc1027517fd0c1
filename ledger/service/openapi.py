"""The OpenAPI 3.1 description of the service, written by hand from one route table.

`ROUTES` is the single list of what the service answers; `http.build_app`
mounts exactly these, and `/openapi.json` describes exactly these, so the
description cannot drift from the routes (a test checks both ways). Written
by hand rather than generated from type hints: the service has no pydantic
models to generate from, and the bodies are the CLI's options, documented
once in `bodies`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ledger.envelope import FIELDS as ENVELOPE_FIELDS
from ledger.service.bodies import FIELDS, REQUIRED
from ledger.service.tokens import Role


@dataclass(frozen=True)
class RouteSpec:
    """One route: how it is called, who may call it, and what it answers."""

    method: str
    path: str
    name: str
    summary: str
    role: Role | None  # None: no token needed
    statuses: tuple[int, ...]
    content: str = "application/json"
    query: tuple[str, ...] = ()


_READ = (200, 401, 403, 404)
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/healthz", "healthz", "The process is up", None, (200,)),
    RouteSpec("GET", "/readyz", "readyz", "The ledger and its views are reachable", None, (200, 503)),
    RouteSpec("GET", "/openapi.json", "openapi", "This description", None, (200,)),
    RouteSpec("GET", "/ledger", "ledger",
              "The ledger's identity (what an actor's envelope names) and whether actors must sign; "
              "no token, so a write-only client can sign", None, (200,)),
    RouteSpec("GET", "/fleets", "fleets", "Names of the fleets with records", Role.READ, (200, 401, 403)),
    RouteSpec("GET", "/fleets/{fleet}/history", "history",
              "Every version of the fleet, its status and evidence", Role.READ, _READ),
    RouteSpec("GET", "/fleets/{fleet}/last-good", "last_good",
              "The last-good version (404 with a reason when there is none)", Role.READ, _READ,
              query=("for_rollback", "leaving")),
    RouteSpec("GET", "/fleets/{fleet}/fleet", "fleet", "Workers, draining, clean or not", Role.READ, _READ),
    RouteSpec("GET", "/fleets/{fleet}/feed", "feed",
              "Records after a cursor, as JSON lines (CloudEvents with format=cloudevents)", Role.READ,
              (200, 400, 401, 403, 404), "application/x-ndjson",
              ("after", "limit", "event", "actor", "version", "since", "until", "format")),
    RouteSpec("GET", "/fleets/{fleet}/stream", "stream",
              "Records as Server-Sent Events, live; id = seq, Last-Event-ID resumes", Role.READ,
              (200, 400, 401, 403, 404, 429, 503), "text/event-stream",
              ("after", "event", "actor", "version", "format")),
    RouteSpec("GET", "/fleets/{fleet}/checkpoint", "checkpoint",
              "A signed checkpoint (C2SP signed note) of the fleet's chain", Role.READ, _READ, "text/plain"),
    RouteSpec("POST", "/fleets/{fleet}/commands", "commands",
              "A decision through the gate: deploy, complete, fail, rollback, mark", Role.WRITE,
              (200, 201, 400, 401, 403, 404, 409, 413, 422)),
    RouteSpec("POST", "/fleets/{fleet}/approvals", "approvals",
              "An actor's signed approval of a pending request; the last one needed decides it",
              Role.WRITE, (201, 400, 401, 403, 404, 409, 413, 422)),
    RouteSpec("POST", "/fleets/{fleet}/reports", "reports",
              "Worker facts (one record or a JSON array of up to 1000, stored in one transaction), "
              "or one fact signed by its reporter (checked by the gate); decisions refused", Role.WRITE,
              (201, 400, 401, 403, 409, 413, 422), query=("dedup_after",)),
    RouteSpec("GET", "/report/{fleet}.csv", "report_csv", "The change population as CSV", Role.READ,
              _READ, "text/csv"),
    RouteSpec("GET", "/report/{fleet}", "report", "The compliance report, one self-contained HTML page",
              Role.READ, _READ, "text/html"),
)

_REASONS = {200: "OK", 201: "Created (accepted; receipts)", 400: "Malformed request",
            401: "No or unknown bearer token", 403: "The token lacks the role",
            404: "No such fleet, or no answer", 409: "Refused by the gate (the refusal is recorded)",
            413: "Body too large", 422: "Well-formed JSON the ledger refuses", 429: "Too many streams",
            503: "Not ready, or the database is unreachable"}


#: The actor's signed command envelope, carried beside a request as the record will store it.
_SIGNED_PROPS: dict[str, Any] = {
    "envelope": {"type": "object", "required": list(ENVELOPE_FIELDS), "additionalProperties": False,
                 "properties": {name: {"type": "object"} if name == "args" else {"type": "string"}
                                for name in ENVELOPE_FIELDS},
                 "description": "What the actor signs: the context `deploy-ledger/command/v1\\0` then "
                                "these fields as canonical JSON (ledger.service.envelopes.sign_command)"},
    "actor_kid": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    "actor_sig": {"type": "string", "description": "base64 Ed25519 signature of the envelope"},
}


def _approval_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["request_seq", "actor"], "additionalProperties": False,
            "properties": {"request_seq": {"type": "integer", "minimum": 1},
                           "request_hash": {"type": "string"}, "actor": {"type": "string"},
                           "reason": {"type": "string"}, **_SIGNED_PROPS}}


def _command_schema() -> dict[str, Any]:
    variants = []
    for name, fields in FIELDS.items():
        props: dict[str, Any] = dict(_SIGNED_PROPS)
        for field, kind in fields.items():
            props[field] = {"type": {str: "string", bool: "boolean", int: "integer"}[kind]}
        props["command"] = {"const": name}
        variants.append({"type": "object", "title": name, "properties": props,
                         "required": ["command", *REQUIRED[name]], "additionalProperties": False})
    return {"oneOf": variants}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)]
        params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                   for q in route.query]
        if route.name == "stream":
            params.append({"name": "Last-Event-ID", "in": "header", "required": False,
                           "schema": {"type": "string"}})
        operation: dict[str, Any] = {
            "operationId": route.name, "summary": route.summary, "parameters": params,
            "responses": {str(s): {"description": _REASONS[s],
                                   "content": {route.content if s < 300 else "application/json": {}}}
                          for s in route.statuses},
        }
        if route.role is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-role"] = route.role.value
        if route.name == "commands":
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _command_schema()}}}
        if route.name == "approvals":
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _approval_schema()}}}
        if route.name == "reports":
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "deploy-ledger", "version": version,
                 "description": "The signed, hash-chained deploy ledger as a service."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
