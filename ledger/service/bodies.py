"""JSON request bodies as the gate's commands, built exactly as the CLI builds them.

`POST /fleets/{fleet}/commands` takes `{"command": "deploy", "version": "v2",
"actor": "ci", ...}`; the fields are the CLI's options with `-` as `_`
(`from_version`, `idempotency_key`, `supersede`, `confirm`, `to`,
`force_bad_target`, `drain_timeout`, `workers`, and `verdict` for `mark`).
An unknown field or a wrong type is refused here, before the gate, so a typo
never becomes a silently ignored option. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.decide import Command, Complete, Deploy, Fail, Judge, Meta, Rollback, Verdict, check_well_formed
from ledger.errors import InputError
from ledger.rollback import DEFAULT_DRAIN_TIMEOUT_S, RollbackRequest

_JSON_TYPE = {str: "string", bool: "boolean (true or false)", int: "integer"}
VERDICTS = {"verified": Verdict.VERIFIED, "bad": Verdict.BAD, "cleared": Verdict.CLEARED}

_COMMON = {"command": str, "actor": str, "reason": str, "idempotency_key": str}
FIELDS: dict[str, dict[str, type]] = {
    "deploy": {**_COMMON, "version": str, "from_version": str, "supersede": bool},
    "complete": {**_COMMON, "version": str, "confirm": str},
    "fail": {**_COMMON, "version": str},
    "mark": {**_COMMON, "verdict": str, "version": str},
    "rollback": {**_COMMON, "to": str, "from_version": str, "force_bad_target": bool,
                 "workers": int, "drain_timeout": int},
}
REQUIRED = {
    "deploy": ("version", "actor"),
    "complete": ("version", "actor"),
    "fail": ("version", "actor", "reason"),
    "mark": ("verdict", "version", "actor"),
    "rollback": ("actor", "reason"),
}


@dataclass(frozen=True)
class CommandRequest:
    """A parsed command body: what the CLI would call it, and the gate's command."""

    name: str
    command: Command


def _typed(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    allowed = FIELDS[name]
    values: dict[str, Any] = {}
    for field, value in body.items():
        kind = allowed.get(field)
        if kind is None:
            raise InputError(f"unknown field {field!r} for {name} (allowed: {', '.join(sorted(allowed))})")
        if value is None:
            continue
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"field {field!r} must be an integer")
        if kind is not int and not isinstance(value, kind):
            raise InputError(f"field {field!r} must be a {_JSON_TYPE[kind]}")
        values[field] = value
    for field in REQUIRED[name]:
        if field not in values:
            raise InputError(f"{name} needs {field!r}")
    return values


def command_from_body(fleet: str, body: object) -> CommandRequest:
    """The command a JSON body asks for; `InputError` (one line) when it is malformed."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    name = body.get("command")
    if name not in FIELDS:
        raise InputError(f"'command' must be one of {', '.join(sorted(FIELDS))}")
    v = _typed(body, str(name))
    meta = Meta(v["actor"], v.get("reason"), v.get("idempotency_key"))
    command: Command
    if name == "deploy":
        command = Deploy(v["version"], meta, from_version=v.get("from_version"),
                         supersede=bool(v.get("supersede", False)))
    elif name == "complete":
        command = Complete(v["version"], meta, evidence=v.get("confirm"))
    elif name == "fail":
        command = Fail(v["version"], meta)
    elif name == "mark":
        verdict = VERDICTS.get(v["verdict"])
        if verdict is None:
            raise InputError("'verdict' must be verified, bad or cleared")
        command = Judge(verdict, v["version"], meta)
    else:
        request = RollbackRequest(
            fleet=fleet, actor=v["actor"], reason=v["reason"], to_version=v.get("to"),
            from_version=v.get("from_version"), idempotency_key=v.get("idempotency_key"),
            force_bad_target=bool(v.get("force_bad_target", False)), workers=v.get("workers"),
            drain_timeout_s=v.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT_S))
        command = Rollback(request, meta)
    check_well_formed(command)
    return CommandRequest(str(name), command)
