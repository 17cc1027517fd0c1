"""Builders for the common record bodies, so callers need not spell every field.

Facts (`worker_*`) go to `Ledger.append`; decision bodies (`deploy`,
`complete`, `verdict`) are what `ledger append` and
`FleetService.submit_record` take and turn into a command for the gate. Every
body is validated like any other record: these are conveniences, not a
second set of rules.
"""

from __future__ import annotations

from typing import Any


def _body(event: str, actor: str, target: str, reason: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "actor": actor, "target": target, "result": "success"}
    body.update({k: v for k, v in fields.items() if v is not None})
    if reason:
        body["reason"] = reason
    return body


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
