"""The vocabulary: every event type, its fields, and its JSON Schema.

Names follow OpenRTC's audit vocabulary (flat records with `event`, `actor`,
`target`, `result`, `version` and extra fields) and extend it where the ledger
needs more. The schemas built here are the public contract: `schemas/` holds
them as files (written by `python -m ledger.schemas`, held equal by a test), and
every append is validated against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

import jsonschema_rs

from ledger.encoding import MAX_SAFE_INTEGER
from ledger.errors import RecordError
from ledger.names import (
    ACTOR_PATTERN,
    FLEET_PATTERN,
    VERSION_PATTERN,
    WORKER_PATTERN,
    shown,
)
from ledger.names import check_fleet_name as check_fleet_name  # callers validate fleets here

SCHEMA_BASE = "https://deploy-ledger.invalid/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: Fields the ledger sets when it seals a record; a caller may not supply them.
CHAIN_FIELDS = ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")

#: Core fields of every record (OpenRTC's flat audit shape).
CORE_REQUIRED = ("event", "actor", "target", "result")

RESULTS = ("success", "failure", "rejected", "pending")


class EventKind(StrEnum):
    """Who may write an event type, which decides the path it takes into a chain.

    Facts report what happened (a worker started, a pool said something) and
    are checked for form only. Decisions change what the fleet is or should be,
    and refusals record a decision that a check refused: both are written only
    by the gate (`ledger.gate`), after validation against the fleet's state.
    Internal events are the key chain's own.
    """

    FACT = "fact"
    DECISION = "decision"
    REFUSAL = "refusal"
    INTERNAL = "internal"
    #: A signed command waiting for approvals, and each approval of it: written by the gate,
    #: changing no state until the approvals are there and the command is decided.
    REQUEST = "request"


class Check(StrEnum):
    """The named checks a decision can fail; a refusal record names exactly one."""

    NO_CURRENT_VERSION = "no_current_version"
    NO_LAST_GOOD = "no_last_good"
    TARGET_UNKNOWN = "target_unknown"
    TARGET_NOT_GOOD = "target_not_good"
    TARGET_IS_CURRENT = "target_is_current"
    FROM_VERSION_MISMATCH = "from_version_mismatch"
    ROLLOUT_IN_FLIGHT = "rollout_in_flight"
    NO_MOVE_IN_FLIGHT = "no_move_in_flight"
    NOT_THE_MOVE = "not_the_move"
    FLEET_NOT_CLEAN = "fleet_not_clean"
    VERSION_UNKNOWN = "version_unknown"
    NOT_BAD = "not_bad"
    SELF_APPROVAL = "self_approval"
    REPORTER_UNBOUND = "reporter_unbound"
    APPROVAL_REPEATED = "approval_repeated"
    # Who asks (enforced mode, `ledger.authority`), in the order the gate checks them.
    ACTOR_UNSIGNED = "actor_unsigned"
    ENVELOPE_MISMATCH = "envelope_mismatch"
    ACTOR_KEY_UNKNOWN = "actor_key_unknown"
    ACTOR_SIGNATURE = "actor_signature"
    ACTOR_KEY_REVOKED = "actor_key_revoked"
    NONCE_REUSED = "nonce_reused"
    ENVELOPE_EXPIRED = "envelope_expired"
    ROLE_DENIED = "role_denied"
    APPROVAL_MISSING = "approval_missing"
    # Policy changes (`ledger.policy_decide`).
    ACTOR_EXISTS = "actor_exists"
    ACTOR_UNKNOWN = "actor_unknown"
    POLICY_ENFORCED = "policy_enforced"


_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256}
#: Identifiers, with the same patterns the Python side matches with `fullmatch`.
_VERSION: dict[str, Any] = {"type": "string", "pattern": VERSION_PATTERN}
_WORKER_ID: dict[str, Any] = {"type": "string", "pattern": WORKER_PATTERN}
_ACTOR: dict[str, Any] = {"type": "string", "pattern": ACTOR_PATTERN}
#: Identifier fields by name: wherever an event type has one, its schema is this one, so
#: a version, worker id or actor means the same in every event, present and future.
IDENTIFIER_FIELDS: dict[str, dict[str, Any]] = {
    "actor": _ACTOR,
    "version": _VERSION,
    "from_version": _VERSION,
    "worker_id": _WORKER_ID,
    "source_worker": _WORKER_ID,
    "superseded_by": _VERSION,
}
_REASON: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 4096}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}
_HEX64: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_KID: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
#: 128 random bits in hex, never all zeros (that identity belongs to no ledger).
_LEDGER_ID: dict[str, Any] = {"type": "string", "pattern": "^(?!0{32}$)[0-9a-f]{32}$"}
_PUBLIC_KEY: dict[str, Any] = {"type": "string", "pattern": "^ed25519:[A-Za-z0-9+/]{43}=$"}


@dataclass(frozen=True)
class EventType:
    """One event type: its name, why it exists, and its typed fields."""

    name: str
    description: str
    required: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    optional: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kind: EventKind = EventKind.FACT

    @property
    def internal(self) -> bool:
        """Written only by the ledger itself (key management), never by `append`."""
        return self.kind is EventKind.INTERNAL

    @property
    def gated(self) -> bool:
        """Written only through the gate: decisions and the refusals of decisions."""
        return self.kind in (EventKind.DECISION, EventKind.REFUSAL, EventKind.REQUEST)


def _t(
    name: str,
    description: str,
    required: Mapping[str, Mapping[str, Any]] | None = None,
    optional: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    kind: EventKind = EventKind.FACT,
) -> EventType:
    return EventType(name, description, required or {}, optional or {}, kind)


_WORKER = {"worker_id": _TEXT, "version": _TEXT}
_WORKER_IDS: dict[str, Any] = {"type": "array", "items": _WORKER_ID, "maxItems": 1000}
#: A driven move names its plan in its own record, so an executor can resume it.
_PLAN = {"start_workers": _WORKER_IDS, "drain_workers": _WORKER_IDS, "drain_timeout_s": _COUNT}
_OPERATION = {"operation_id": _TEXT}
_SOURCE = {"source": _TEXT, "source_instance": _TEXT, "source_digest": _HEX64}
#: A decision requested by an outside system (a pool's `deployment.rolled_back`)
#: links to the event that asked for it.
_REQUESTED = {
    "source": _TEXT, "source_instance": _TEXT, "source_digest": _HEX64, "source_seq": _COUNT,
    "source_worker": _TEXT, "source_timestamp": _TEXT, "source_event": _TEXT,
    "source_result": _TEXT,
}
_CHECK: dict[str, Any] = {"enum": [c.value for c in Check]}
#: Cumulative counts of a worker's ended sessions by outcome, since it started: a report
#: restates its totals (never a delta), so a lost or repeated report corrupts nothing.
_OUTCOMES = {"sessions_ok": _COUNT, "sessions_error": _COUNT, "sessions_dropped": _COUNT}
_SIGNED_FIELDS: dict[str, Any] = {
    "actor_verified": {"type": "boolean"},
    "envelope": {"type": "object"},
    "actor_kid": _KID,
    "actor_sig": {"type": "string", "pattern": "^[A-Za-z0-9+/]{86}==$"},
    "policy_seq": _COUNT,
    "approvals": {"type": "array", "maxItems": 64},
    "request_seq": _COUNT,
}
#: Fields the gate adds to a signed command's record; no caller may supply them.
ATTESTATION_FIELDS = frozenset(_SIGNED_FIELDS)
#: Fields of every gated record: its idempotency key, and in enforced mode who signed it.
_GATED = {"idempotency_key": _TEXT, **_SIGNED_FIELDS}
_ROLE: dict[str, Any] = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"}
_ACTION_NAMES: dict[str, Any] = {"type": "array", "items": _TEXT, "maxItems": 32, "uniqueItems": True}

_D = EventKind.DECISION

EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        _t(
            "deployment.started",
            "A version starts rolling out to the fleet (it takes new calls).",
            {"version": _TEXT},
            {"from_version": _TEXT, "reason": _REASON, "supersedes_seq": _COUNT, **_PLAN,
             **_OPERATION, **_GATED},
            kind=_D,
        ),
        _t(
            "deployment.completed",
            "The deploy in flight finished: every worker runs the version and the old one drained.",
            {"version": _TEXT},
            {"reason": _REASON, "dropped_calls": _COUNT, "move_seq": _COUNT,
             "operator_confirmed": {"type": "boolean"}, "evidence": _REASON, **_OPERATION, **_GATED},
            kind=_D,
        ),
        _t(
            "deployment.failed",
            "The deploy in flight could not confirm a clean fleet; `reason` says why.",
            {"version": _TEXT, "reason": _REASON},
            {"from_version": _TEXT, "move_seq": _COUNT, **_OPERATION, **_GATED},
            kind=_D,
        ),
        _t(
            "move.superseded",
            "The deploy or rollback in flight was replaced by a new deploy (`deploy --supersede`), "
            "recorded just before it.",
            {"version": _TEXT, "move_seq": _COUNT, "superseded_by": _TEXT},
            {"from_version": _TEXT, "reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "deployment.drain_started",
            "A worker (or the whole version) stops taking calls; in-flight calls run on.",
            {"version": _TEXT},
            {"worker_id": _TEXT, "reason": _REASON, **_OPERATION},
        ),
        _t(
            "deployment.drain_stuck",
            "A draining worker outlasted its drain timeout and was left running.",
            {**_WORKER, "active_sessions": _COUNT},
            {"reason": _REASON, "timeout_s": _COUNT, **_OPERATION},
        ),
        _t(
            "deployment.rolled_back",
            "The fleet returns to `version`, leaving `from_version`.",
            {"version": _TEXT, "from_version": _TEXT, "reason": _REASON},
            {
                "rollback_id": _TEXT,
                "forced": {"type": "boolean"},
                "good_evidence_seq": _COUNT,
                "external": {"type": "boolean"},
                **_PLAN,
                **_GATED,
                **_REQUESTED,
            },
            kind=_D,
        ),
        _t(
            "rollback.rejected",
            "A well-formed rollback command that a check refused; the fleet is untouched.",
            {"check": _CHECK, "reason": _REASON},
            {
                "version": _TEXT,
                "from_version": _TEXT,
                "detail": _REASON,
                **_GATED,
                **_REQUESTED,
            },
            kind=EventKind.REFUSAL,
        ),
        _t(
            "command.rejected",
            "A well-formed decision (deploy, completion, failure, verdict) that a check refused; "
            "`command` names the record it would have been. The fleet is untouched.",
            {"command": _TEXT, "check": _CHECK, "detail": _REASON},
            {"version": _TEXT, "from_version": _TEXT, "reason": _REASON, **_GATED},
            kind=EventKind.REFUSAL,
        ),
        _t(
            "rollback.completed",
            "A rollback finished: every live worker runs `version`, none of `from_version` remain "
            "(or an operator confirmed it, with `evidence`).",
            {"version": _TEXT, "from_version": _TEXT},
            {"rollback_id": _TEXT, "dropped_calls": _COUNT, "live_workers": _COUNT,
             "move_seq": _COUNT, "operator_confirmed": {"type": "boolean"}, "evidence": _REASON,
             "reason": _REASON, **_OPERATION, **_GATED},
            kind=_D,
        ),
        _t(
            "rollback.failed",
            "A rollback could not confirm a clean fleet; `reason` says why.",
            {"version": _TEXT, "from_version": _TEXT, "reason": _REASON},
            {"rollback_id": _TEXT, "move_seq": _COUNT, **_OPERATION, **_GATED},
            kind=_D,
        ),
        _t(
            "worker.started",
            "A worker process of a version is up and taking calls.",
            _WORKER,
            {"pid": _COUNT, "reason": _REASON},
        ),
        _t(
            "worker.sessions",
            "A worker reports how many calls it holds now, and (optionally) how many of the "
            "calls it ended since it started went well, errored or were dropped.",
            {**_WORKER, "active_sessions": _COUNT},
            {**_OUTCOMES},
        ),
        _t(
            "worker.exited",
            "A worker exited; `active_sessions` > 0 at exit means dropped calls.",
            {**_WORKER, "active_sessions": _COUNT},
            {"exit_code": {"type": "integer"}, "reason": _REASON, **_OPERATION, **_OUTCOMES},
        ),
        _t(
            "worker.rejected",
            "A worker was refused membership (for example: wrong version after a rollback).",
            {**_WORKER, "reason": _REASON},
        ),
        _t(
            "version.verified",
            "An explicit verdict that a version is healthy.",
            {"version": _TEXT},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "version.marked_bad",
            "An explicit verdict that a version must not be returned to.",
            {"version": _TEXT, "reason": _REASON},
            {**_GATED},
            kind=_D,
        ),
        _t(
            "version.cleared",
            "A deliberate, recorded clearing of a bad verdict or a rollback-from.",
            {"version": _TEXT, "reason": _REASON},
            {**_GATED},
            kind=_D,
        ),
        _t(
            "analysis.rule_set",
            "The fleet's rollback rule: when the watcher (`ledger watch`) may roll back on evidence. "
            "Rates in basis points; it replaces the rule before it.",
            {"window_s": _COUNT, "min_sessions": _COUNT, "confidence_bp": _COUNT,
             "min_increase_bp": _COUNT, "consecutive": _COUNT},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "analysis.passed",
            "The move at `move_seq` completed and its version's session outcomes were no worse "
            "than the last-good version's under the fleet's rule; `analysis` holds the evidence.",
            {"version": _TEXT, "move_seq": _COUNT},
            {"reason": _REASON, "analysis": {"type": "object"}},
        ),
        _t(
            "audit.gap",
            "An external audit source skipped sequence numbers: the events between were lost "
            "before they reached the ledger.",
            {**_SOURCE, "first_missing_seq": _COUNT, "last_missing_seq": _COUNT, "missing": _COUNT},
            {"worker_id": _TEXT, "source_worker": _TEXT, "reason": _REASON},
        ),
        _t(
            "audit.external",
            "An external audit event kept verbatim that the ledger does not act on (a type it "
            "does not trust from that source, or one that does not fit its schema); `reason` says why.",
            {**_SOURCE, "source_event": _TEXT, "source_seq": _COUNT, "reason": _REASON},
            {"worker_id": _TEXT, "source_worker": _TEXT, "source_timestamp": _TEXT, "source_result": _TEXT,
             "source_reason": _REASON},
        ),
        _t(
            "command.pending",
            "A signed command that needs approvals by other actors before the gate decides it; "
            "`ledger approve <seq>` approves it.",
            {"command": _TEXT, "check": _CHECK, "detail": _REASON},
            {"version": _TEXT, "from_version": _TEXT, "reason": _REASON, **_GATED},
            kind=EventKind.REQUEST,
        ),
        _t(
            "command.approved",
            "An actor's signed approval of the pending command at `request_seq`.",
            {"request_seq": _COUNT},
            {"reason": _REASON, **_GATED},
            kind=EventKind.REQUEST,
        ),
        _t(
            "actor.added",
            "Policy chain: an actor is registered with their Ed25519 public keys and roles.",
            {"name": _ACTOR, "keys": {"type": "array", "items": _PUBLIC_KEY, "minItems": 1,
                                      "maxItems": 16},
             "roles": {"type": "array", "items": _ROLE, "maxItems": 16, "uniqueItems": True}},
            {"reason": _REASON, "workers": {"type": "array", "items": _TEXT, "maxItems": 64}, **_GATED},
            kind=_D,
        ),
        _t(
            "actor.revoked",
            "Policy chain: an actor may no longer sign commands (their earlier ones stand).",
            {"name": _ACTOR},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "actor.key_revoked",
            "Policy chain: one of an actor's keys may no longer sign commands.",
            {"name": _ACTOR, "key_id": _KID},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "role.granted",
            "Policy chain: a role allows these actions on fleets matching these patterns "
            "(it replaces the role's earlier grant).",
            {"role": _ROLE, "actions": _ACTION_NAMES, "fleets": {"type": "array", "items": _TEXT,
                                                                 "maxItems": 64}},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "policy.enabled",
            "Policy chain: from here on every decision must be signed by an actor the policy "
            "allows; `persons` distinct actors (requester included) for `approval_actions`.",
            {"persons": {"type": "integer", "minimum": 1, "maximum": 16},
             "approval_actions": _ACTION_NAMES},
            {"reason": _REASON, **_GATED},
            kind=_D,
        ),
        _t(
            "ledger.initialized",
            "Genesis of the key chain: the ledger's first signing key.",
            {"public_key": _PUBLIC_KEY, "new_kid": _KID, "ledger_id": _LEDGER_ID},
            kind=EventKind.INTERNAL,
        ),
        _t(
            "key.rotated",
            "Signed by the retiring key; introduces the key that signs from now on.",
            {"public_key": _PUBLIC_KEY, "new_kid": _KID},
            {"reason": _REASON},
            kind=EventKind.INTERNAL,
        ),
    )
}


INTERNAL_EVENTS = frozenset(name for name, t in EVENT_TYPES.items() if t.internal)
#: Event types only the gate writes: decisions and refusals.
GATED_EVENTS = frozenset(name for name, t in EVENT_TYPES.items() if t.gated)
#: Decisions a fleet's state changes by (refusals change only counters).
DECISION_EVENTS = frozenset(name for name, t in EVENT_TYPES.items() if t.kind is EventKind.DECISION)

#: Where each decision is made, for the message that turns a raw append of one away.
GATE_COMMANDS = {
    "deployment.started": "`ledger deploy` (Python: FleetService.submit(fleet, Deploy(...)))",
    "deployment.completed": "`ledger complete` (Python: FleetService.submit(fleet, Complete(...)))",
    "deployment.failed": "`ledger fail` (Python: FleetService.submit(fleet, Fail(...)))",
    "deployment.rolled_back": "`ledger rollback` (Python: FleetService.submit(fleet, Rollback(...)))",
    "rollback.completed": "`ledger complete` (Python: FleetService.submit(fleet, Complete(...)))",
    "rollback.failed": "`ledger fail` (Python: FleetService.submit(fleet, Fail(...)))",
    "version.verified": "`ledger mark verified` (Python: FleetService.submit(fleet, Judge(...)))",
    "version.marked_bad": "`ledger mark bad` (Python: FleetService.submit(fleet, Judge(...)))",
    "version.cleared": "`ledger mark cleared` (Python: FleetService.submit(fleet, Judge(...)))",
    "move.superseded": "`ledger deploy --supersede`",
    "analysis.rule_set": "`ledger rule set` (Python: FleetService.submit(fleet, SetRule(...)))",
    "actor.added": "`ledger actors add` (Python: FleetService.submit_policy(AddActor(...)))",
    "actor.revoked": "`ledger actors revoke` (Python: FleetService.submit_policy(RevokeActor(...)))",
    "actor.key_revoked": "`ledger actors revoke --key` (Python: FleetService.submit_policy(RevokeKey(...)))",
    "role.granted": "`ledger policy grant` (Python: FleetService.submit_policy(GrantRole(...)))",
    "policy.enabled": "`ledger policy enable` (Python: FleetService.submit_policy(EnablePolicy(...)))",
    "command.pending": "the gate when a command needs approvals",
    "command.approved": "`ledger approve` (Python: FleetService.approve(...))",
    "rollback.rejected": "the gate when it refuses a rollback",
    "command.rejected": "the gate when it refuses a command",
}


def value_schema() -> dict[str, Any]:
    """Schema of an extra field's value: JSON without floats or huge integers."""
    return {
        "anyOf": [
            {"type": ["string", "boolean", "null"]},
            {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            {"type": "array", "items": {"$ref": "#/$defs/value"}},
            {
                "type": "object",
                "propertyNames": {"pattern": "^[ -~]*$"},
                "additionalProperties": {"$ref": "#/$defs/value"},
            },
        ]
    }


def _core_properties() -> dict[str, Any]:
    return {
        "actor": _ACTOR,
        "target": _TEXT,
        "result": {"enum": list(RESULTS)},
        "version": _VERSION,
        "reason": _REASON,
    }


def _chain_properties() -> dict[str, Any]:
    return {
        "seq": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER},
        "prev": _HEX64,
        "hash": _HEX64,
        "kid": _KID,
        "sig": {"type": "string", "pattern": "^[A-Za-z0-9+/]{86}==$"},
        "fleet": {"type": "string", "pattern": f"^@keys$|^@policy$|{FLEET_PATTERN}"},
        "timestamp": {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$",
        },
    }


def event_schema(event_type: EventType, *, sealed: bool) -> dict[str, Any]:
    """JSON Schema of one event type: as a caller submits it, or as stored."""
    properties = {**_core_properties(), "event": {"const": event_type.name}}
    properties.update(event_type.optional)
    properties.update(event_type.required)
    properties.update({name: IDENTIFIER_FIELDS[name] for name in properties if name in IDENTIFIER_FIELDS})
    required = [*CORE_REQUIRED, *event_type.required]
    if sealed:
        properties.update(_chain_properties())
        required += list(CHAIN_FIELDS)
    suffix = "record" if sealed else "input"
    return {
        "$schema": DRAFT,
        "$id": f"{SCHEMA_BASE}{event_type.name}.{suffix}.json",
        "title": event_type.name,
        "description": event_type.description,
        "type": "object",
        "properties": properties,
        "required": sorted(set(required)),
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
        "additionalProperties": {"$ref": "#/$defs/value"},
        "$defs": {"value": value_schema()},
    }


def record_schema() -> dict[str, Any]:
    """Schema of any stored record, as the audit feed prints it."""
    return {
        "$schema": DRAFT,
        "$id": f"{SCHEMA_BASE}record.json",
        "title": "ledger record",
        "description": "One sealed record of a chain, as `ledger feed` prints it.",
        "type": "object",
        "properties": {
            **_core_properties(),
            **_chain_properties(),
            "event": {"enum": sorted(EVENT_TYPES)},
        },
        "required": sorted({*CORE_REQUIRED, *CHAIN_FIELDS}),
        "additionalProperties": {"$ref": "#/$defs/value"},
        "$defs": {"value": value_schema()},
    }


@cache
def _validator(name: str, sealed: bool) -> Any:
    return jsonschema_rs.validator_for(event_schema(EVENT_TYPES[name], sealed=sealed))


def _first_error(validator: Any, record: Mapping[str, Any]) -> str:
    for error in validator.iter_errors(record):
        path = ".".join(str(p) for p in error.instance_path)
        return f"field '{path}': {error.message}" if path else error.message
    return "invalid record"


def validate_input(record: Mapping[str, Any], where: str = "record") -> EventType:
    """Check a caller's record before it is sealed; return its event type."""
    event = record.get("event")
    if not isinstance(event, str):
        raise RecordError(f"{where}: missing field 'event' (a string naming the event type)")
    event_type = EVENT_TYPES.get(event)
    if event_type is None:
        raise RecordError(f"{where}: unknown event type {shown(event)}")
    for name in CHAIN_FIELDS:
        if name in record:
            raise RecordError(f"{where}: field '{name}' is set by the ledger, not the caller")
    validator = _validator(event, False)
    if not validator.is_valid(record):
        raise RecordError(f"{where} ({event}): {_first_error(validator, record)}")
    return event_type


#: Chain fields whose patterns hold whenever a verifier's own checks of them pass: `hash`
#: equals the hash it computes, `prev` the hash before (or the genesis value), `kid` a key
#: id of the verified key chain, all lowercase hex of the right length.
LINK_CHECKED = ("hash", "prev", "kid")
#: The field a verifier that does not check a record's signature leaves alone, form and
#: all: `sig` is outside the hash, so its form proves nothing the signature check would not.
SIGNATURE_FIELD = "sig"


@dataclass(frozen=True)
class StoredCheck:
    """A stored record's schema split for speed, accepting exactly what it accepts.

    `propertyNames` costs a pattern match per key, yet every name the schema lists
    matches the pattern: `fast` is the schema without it, and only names outside
    `known` are matched here. `linked` also leaves out the patterns of
    `LINK_CHECKED`, for a verifier that checks those fields itself, and `unsigned`
    the pattern of `SIGNATURE_FIELD` as well, for one that does not check this
    record's signature. When a part refuses, `full` (the whole schema) decides and
    names the error, so the split never changes an answer.
    """

    fast: Any
    linked: Any
    unsigned: Any
    full: Any
    known: frozenset[str]
    name: re.Pattern[str]  # propertyNames' pattern, for the names outside `known`

    def names_conform(self, record: Mapping[str, Any]) -> bool:
        """Every field name is one the schema lists, or matches its pattern for the others."""
        known = self.known
        return known.issuperset(record) or all(
            type(key) is str and self.name.fullmatch(key) for key in record if key not in known)

    def validator(self, *, linked: bool, signed: bool) -> Any:
        """The part that checks a record for a verifier doing (or not) those checks itself."""
        if not linked:
            return self.fast
        return self.linked if signed else self.unsigned


def _without_patterns(schema: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {**schema, "properties": {
        key: ({k: v for k, v in value.items() if k != "pattern"} if key in fields else value)
        for key, value in schema["properties"].items()}}


def _stored_check(name: str) -> StoredCheck:
    schema = event_schema(EVENT_TYPES[name], sealed=True)
    pattern = re.compile(schema["propertyNames"]["pattern"])
    known = frozenset(schema["properties"])
    assert all(pattern.fullmatch(key) for key in known), "a listed property breaks propertyNames"
    fast = {k: v for k, v in schema.items() if k != "propertyNames"}
    linked = _without_patterns(fast, LINK_CHECKED)
    unsigned = _without_patterns(fast, (*LINK_CHECKED, SIGNATURE_FIELD))
    return StoredCheck(jsonschema_rs.validator_for(fast), jsonschema_rs.validator_for(linked),
                       jsonschema_rs.validator_for(unsigned), _validator(name, True), known, pattern)


_STORED_CHECKS: dict[str, StoredCheck] = {}  # `_stored_check` by event type, made on first use


def stored_check(event: object) -> StoredCheck | None:
    """The split schema of a stored record of event type `event` (None for no event type)."""
    check = _STORED_CHECKS.get(event) if type(event) is str else None
    if check is None and isinstance(event, str) and event in EVENT_TYPES:
        check = _STORED_CHECKS[event] = _stored_check(event)
    return check


def stored_schema_error(record: Mapping[str, Any], *, linked: bool = False,
                        signed: bool = True) -> str | None:
    """Why a stored record breaks its schema, or None when it conforms.

    With `linked`, the patterns of `LINK_CHECKED` are not matched: for a caller
    that checks those fields' values itself and, before reporting a fault in one
    of them, asks again without `linked` (a malformed value is a schema fault).
    With `linked` and not `signed`, nor is the pattern of `SIGNATURE_FIELD`: for
    a caller that does not check this record's signature.
    """
    event = record.get("event")
    check = stored_check(event)
    if check is None:
        return f"unknown event type {event!r}"
    if check.validator(linked=linked, signed=signed).is_valid(record) and check.names_conform(record):
        return None
    if check.full.is_valid(record):  # pragma: no cover - the split accepts what the schema does
        return None
    return _first_error(check.full, record)
