"""Record bodies built from the event vocabulary, so no caller spells a body by hand.

`record` builds the body of any event type in `ledger.events.EVENT_TYPES`
and refuses, as a programming error, a field that type does not declare or
a required field left out: a builder cannot write what the vocabulary lacks.
The named builders below are the common bodies. Facts (`worker_*`) go to
`Ledger.append`; decision bodies (`deploy`, `complete`, `verdict`) are what
`ledger append` and `FleetService.submit_record` take and turn into a command
for the gate. Every body is still validated like any other record when it is
appended: these are conveniences, not a second set of rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from ledger.events import CORE_REQUIRED, EVENT_TYPES

#: Fields any event type may carry besides its own (`version` and `reason` are typed for all).
_COMMON = frozenset({*CORE_REQUIRED, "version", "reason"})


@cache
def _declared(event: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The fields `event` may carry, and those it must."""
    try:
        event_type = EVENT_TYPES[event]
    except KeyError:
        raise ValueError(f"no event type {event!r} in the vocabulary") from None
    return _COMMON | event_type.required.keys() | event_type.optional.keys(), tuple(event_type.required)


def record(event: str, actor: str, target: str, *, result: str = "success",
           extra: Mapping[str, Any] | None = None, partial: bool = False, **fields: Any) -> dict[str, Any]:
    """The body of an `event` record; fields given as None are left out.

    `extra` holds fields the vocabulary leaves open (a caller's own, or an
    outside source's), passed through as given: the schema checks their values
    when the body is appended. The ledger's own fields go in `fields` and must
    be declared by the event type. `partial` leaves missing required fields to
    that schema check, for bodies mapped from outside data that may lack them.
    """
    allowed, required = _declared(event)
    unknown = sorted(fields.keys() - allowed)
    if unknown:
        raise ValueError(f"{event} declares no field {', '.join(map(repr, unknown))}")
    body: dict[str, Any] = {**(extra or {}), "event": event, "actor": actor, "target": target,
                            "result": result}
    body.update((k, v) for k, v in fields.items() if v is not None)
    missing = [name for name in required if name not in body]
    if missing and not partial:
        raise ValueError(f"{event} needs field {', '.join(map(repr, missing))}")
    return body


def _body(event: str, actor: str, target: str, reason: str | None, **fields: Any) -> dict[str, Any]:
    return record(event, actor, target, reason=reason or None, **fields)


def deploy(version: str, actor: str, reason: str | None = None,
           from_version: str | None = None) -> dict[str, Any]:
    return _body("deployment.started", actor, "fleet", reason, version=version,
                 from_version=from_version)


def complete(version: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    return _body("deployment.completed", actor, "fleet", reason, version=version)


def worker_start(worker: str, version: str, actor: str, reason: str | None = None,
                 pid: int | None = None) -> dict[str, Any]:
    return _body("worker.started", actor, worker, reason, worker_id=worker, version=version,
                 pid=pid)


def worker_sessions(worker: str, version: str, active_sessions: int, actor: str, *,
                    ok: int | None = None, error: int | None = None,
                    dropped: int | None = None) -> dict[str, Any]:
    """A session report; `ok`, `error`, `dropped` are the worker's cumulative outcome counts."""
    return _body("worker.sessions", actor, worker, None, worker_id=worker, version=version,
                 active_sessions=active_sessions, sessions_ok=ok, sessions_error=error,
                 sessions_dropped=dropped)


def worker_drain(worker: str, version: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    return _body("deployment.drain_started", actor, worker, reason, worker_id=worker,
                 version=version)


def worker_exit(worker: str, version: str, active_sessions: int, actor: str,
                reason: str | None = None, exit_code: int | None = None, *,
                ok: int | None = None, error: int | None = None,
                dropped: int | None = None) -> dict[str, Any]:
    return _body("worker.exited", actor, worker, reason, worker_id=worker, version=version,
                 active_sessions=active_sessions, exit_code=exit_code, sessions_ok=ok,
                 sessions_error=error, sessions_dropped=dropped)


def verdict(event: str, version: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    """`version.verified`, `version.marked_bad` or `version.cleared`."""
    return _body(event, actor, "fleet", reason, version=version)
