"""OpenRTC audit events as ledger records: one pure mapping for the sink and the importer.

An OpenRTC `AuditEvent` is read through its attributes, never through
`to_dict()`, whose extra fields are merged last and can overwrite `seq`,
`event` or `timestamp`. The extra fields (`AuditEvent.fields`) never reach the
top level of a record as truth: the few a worker-level event type declares
(`worker_id`, `active_sessions`, `reason`, ...) are promoted under their own
name; every other one, including a spoofed `seq`, `event`, `timestamp` or
`hash`, is kept verbatim under the nested object `source_fields`, where it
cannot collide with a core or chain field.

Every record keeps its source: `source` ("openrtc"), `source_worker` (the pool
or worker the events come from), `source_instance` (which process instance:
OpenRTC's `seq` restarts at 1 in every process), `source_seq`,
`source_timestamp` (OpenRTC's float epoch seconds as an RFC 3339 string: the
ledger stores no floats), `source_result` (OpenRTC's own word; its "ok" becomes
the ledger's "success") and `source_digest`, a SHA-256 over the event's
content. `(source_instance, source_digest)` identifies an event, so a flush
after a crash or a repeated import adds nothing twice.

Only worker-level facts are mapped onto the ledger's own event types
(`TRUSTED_EVENTS`): a pool reports about itself, it does not decide fleet
moves. Anything else (a fleet-level `deployment.completed` emitted by a pool, a
custom event, a drain of an untagged pool with no version) is recorded
faithfully as `audit.external`, which the projections and the executor ignore.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ledger.commands import record
from ledger.encoding import MAX_RECORD_BYTES, MAX_SAFE_INTEGER, canonical
from ledger.errors import LedgerError
from ledger.events import CHAIN_FIELDS, EVENT_TYPES, EventType, validate_input

SOURCE = "openrtc"

#: OpenRTC event types mapped onto the ledger's type of the same name: facts a
#: worker states about itself (or, for `worker.rejected`, about a worker it refused).
TRUSTED_EVENTS = frozenset({
    "deployment.drain_started",
    "deployment.drain_stuck",
    "worker.started",
    "worker.sessions",
    "worker.exited",
    "worker.rejected",
})

#: Decisions a pool may ask the ledger to take, when the operator allows that source to ask
#: (`may_request`): the ledger validates each through its gate and records its own decision.
REQUESTABLE_EVENTS = frozenset({"deployment.rolled_back"})

#: The ledger's word for each result word OpenRTC (or an application) uses.
#: An unknown word maps to "pending" (the outcome is not established); the
#: original is always kept in `source_result`.
RESULTS = {
    "ok": "success", "success": "success", "succeeded": "success", "done": "success",
    "error": "failure", "failed": "failure", "failure": "failure", "fail": "failure",
    "rejected": "rejected", "refused": "rejected", "denied": "rejected",
    "pending": "pending",
}

#: Names an extra field may never take at the top level of a record.
_CORE = frozenset({"event", "actor", "target", "result", "version", *CHAIN_FIELDS})
_TEXT_LIMIT = 256
_MAX_DEPTH = 8

class AuditEventLike(Protocol):
    """The attributes of `openrtc.core.audit.AuditEvent` the mapping reads."""

    @property
    def seq(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def event_type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


class SourceEventError(ValueError):
    """A line or object is not an OpenRTC audit event; the message says what is wrong."""


@dataclass(frozen=True)
class SourceEvent:
    """One OpenRTC audit event, its core values checked, with the digest of its content."""

    seq: int
    timestamp: float
    event_type: str
    actor: str
    target: str
    result: str
    version: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""

    @classmethod
    def from_audit_event(cls, event: AuditEventLike) -> SourceEvent:
        """From the object a pool hands its sink: attributes only."""
        fields = dict(event.fields) if event.fields else {}
        content = {
            "seq": event.seq, "timestamp": event.timestamp, "event_type": event.event_type,
            "actor": event.actor, "target": event.target, "result": event.result,
            "version": event.version, "fields": fields,
        }
        return cls._checked(content, fields, _digest("attributes", content))

    @classmethod
    def from_flat(cls, data: Mapping[str, Any]) -> SourceEvent:
        """From `to_dict()` output (an `audit {json}` log line): core keys plus extra keys.

        Here a spoofed extra field has already overwritten the real value when
        the line was written; the line is all there is, so it is taken as it reads.
        """
        if not isinstance(data, Mapping):
            raise SourceEventError("not a JSON object")
        for name in ("seq", "timestamp", "event"):
            if name not in data:
                raise SourceEventError(f"no '{name}' field: not an OpenRTC audit record")
        core = {"seq", "timestamp", "event", "actor", "target", "result", "version"}
        fields = {k: v for k, v in data.items() if k not in core}
        content = {
            "seq": data.get("seq"), "timestamp": data.get("timestamp"), "event_type": data.get("event"),
            "actor": data.get("actor", "system"), "target": data.get("target", ""),
            "result": data.get("result", "ok"), "version": data.get("version"), "fields": fields,
        }
        return cls._checked(content, fields, _digest("flat", dict(data)))

    @classmethod
    def _checked(cls, content: dict[str, Any], fields: dict[str, Any], digest: str) -> SourceEvent:
        seq = content["seq"]
        if type(seq) is not int or not 0 < seq <= MAX_SAFE_INTEGER:
            raise SourceEventError(f"'seq' must be a positive integer, not {seq!r:.60}")
        timestamp = content["timestamp"]
        if type(timestamp) not in (int, float) or not math.isfinite(timestamp):
            raise SourceEventError(f"'timestamp' must be epoch seconds, not {timestamp!r:.60}")
        event_type = content["event_type"]
        if not isinstance(event_type, str) or not event_type:
            raise SourceEventError(f"'event' must be a non-empty string, not {event_type!r:.60}")
        for name in ("actor", "target", "result"):
            if not isinstance(content[name], str):
                raise SourceEventError(f"'{name}' must be a string, not {content[name]!r:.60}")
        version = content["version"]
        if version is not None and not isinstance(version, str):
            raise SourceEventError(f"'version' must be a string or null, not {version!r:.60}")
        return cls(seq, float(timestamp), event_type,
                   content["actor"], content["target"], content["result"], version, fields, digest)


def _digest(kind: str, content: Any) -> str:
    """SHA-256 of the content as read, deterministic for equal content (floats by repr)."""
    text = json.dumps([kind, content], sort_keys=True, separators=(",", ":"), default=repr,
                      ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def rfc3339(seconds: float) -> str | None:
    """Epoch seconds as the ledger's timestamp format (microseconds, UTC), if representable."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return None


def clean_value(value: Any, depth: int = 0) -> Any:
    """A value the ledger can store: floats become their repr, odd objects their repr."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return repr(value)
    if depth >= _MAX_DEPTH:
        return repr(value)[:1024]
    if isinstance(value, list | tuple):
        return [clean_value(item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        return {clean_key(key): clean_value(item, depth + 1) for key, item in value.items()}
    return repr(value)[:1024]


def clean_key(key: Any) -> str:
    """A nested key in printable ASCII (the schema's rule), escaping any other character."""
    text = key if isinstance(key, str) else repr(key)
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch if ch.isascii() and ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def _text(value: str, fallback: str) -> str:
    value = value.strip()[:_TEXT_LIMIT] if value else ""
    return value or fallback


@dataclass(frozen=True)
class Source:
    """Where events come from: the pool or worker, and the process instance."""

    worker: str | None
    instance: str

    def fields(self) -> dict[str, Any]:
        found: dict[str, Any] = {"source": SOURCE, "source_instance": self.instance}
        if self.worker:
            found["source_worker"] = self.worker
        return found


def _source_fields(event: SourceEvent, source: Source) -> dict[str, Any]:
    fields = source.fields()
    fields["source_seq"] = event.seq
    stamp = rfc3339(event.timestamp)
    if stamp is not None:
        fields["source_timestamp"] = stamp
    fields["source_result"] = _text(event.result, "(empty)")
    fields["source_digest"] = event.digest
    return fields


def _declared(event_type: EventType) -> set[str]:
    return set(event_type.required) | set(event_type.optional) | {"reason"}


def to_record(event: SourceEvent, source: Source, trusted: Iterable[str] = TRUSTED_EVENTS,
              *, untrusted_reason: str | None = None,
              may_request: Iterable[str] = ()) -> dict[str, Any]:
    """The ledger record for one OpenRTC event: its own type if trusted and valid, a request
    for the gate if it is a decision this source may ask for, else `audit.external`.

    Raises `LedgerError` only if even `audit.external` is refused (it is not in
    the vocabulary yet): the caller keeps such an event in its dead-letter file.
    """
    if event.event_type in REQUESTABLE_EVENTS and event.event_type in frozenset(may_request):
        return request_record(event, source)
    event_type = EVENT_TYPES.get(event.event_type)
    if event.event_type not in trusted or event_type is None or event_type.internal:
        if event_type is not None and event_type.gated:
            reason = (f"'{event.event_type}' is a fleet decision this source is not allowed to request "
                      "(see may_request); kept, not acted on")
        elif event.event_type in TRUSTED_EVENTS and untrusted_reason:
            reason = untrusted_reason
        else:
            reason = (f"'{event.event_type}' is not a worker-level event the ledger takes from OpenRTC; "
                      "kept, not acted on")
        return external_record(event, source, reason)
    promoted = _declared(event_type) - _CORE
    declared: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in event.fields.items():
        if key in promoted:
            declared[key] = clean_value(value)
        else:
            rest[clean_key(key)] = clean_value(value)
    if "worker_id" in promoted and "worker_id" not in declared:
        subject = event.target if event.event_type == "worker.rejected" else None
        declared["worker_id"] = _text(subject or source.worker or "", source.instance)
    # The link to the source event, and its undeclared fields nested, are fields the
    # vocabulary leaves open; a required field the event lacks is the schema's to name.
    link = _source_fields(event, source)
    if rest:
        link["source_fields"] = rest
    try:
        body = record(event.event_type, _text(event.actor, "system"),
                      _text(event.target, source.worker or "worker"),
                      result=RESULTS.get(event.result.strip().lower(), "pending"), partial=True,
                      version=event.version, **declared)
        body.update({k: v for k, v in declared.items() if v is None})  # a null is the schema's to judge
        body.update(link)
        validate_input(body)
    except LedgerError as exc:
        return external_record(event, source, f"does not fit the ledger's '{event.event_type}': {exc}")
    return _bounded(body, event, source)


def request_record(event: SourceEvent, source: Source) -> dict[str, Any]:
    """A decision a pool asks for, shaped as the decision record, for the gate to decide.

    It carries the source link (`source_*`), so the ledger's own decision (or
    its refusal) names the event that asked, and a repeated delivery of the
    same event is recognised by its digest.
    """
    reason = event.fields.get("reason")
    from_version = event.fields.get("from_version")
    return record(
        event.event_type, _text(event.actor, "system"), "fleet", partial=True,
        reason=(reason.strip()[:4096] if isinstance(reason, str) and reason.strip()
                else f"requested by {source.worker or source.instance} (no reason given)"),
        idempotency_key=f"{SOURCE}/{event.digest}",
        version=event.version[:_TEXT_LIMIT] if event.version else None,
        from_version=from_version[:_TEXT_LIMIT] if isinstance(from_version, str) and from_version else None,
        **_source_fields(event, source), source_event=event.event_type,
    )


def is_request(body: Mapping[str, Any]) -> bool:
    """Whether a mapped body is a decision request for the gate rather than a fact."""
    return body.get("event") in REQUESTABLE_EVENTS


def external_record(event: SourceEvent, source: Source, reason: str) -> dict[str, Any]:
    """`audit.external`: the event kept verbatim (extra fields nested), acted on by no one.

    A decision reported by a source not allowed to ask for it is kept with
    `result: pending` (nothing was decided) and the submitter's own reason in
    `source_reason`, so a reviewer sees what was claimed and that it was not acted on.
    """
    decision = EVENT_TYPES.get(event.event_type)
    is_decision = decision is not None and decision.gated
    claimed = event.fields.get("reason")
    nested = {clean_key(k): clean_value(v) for k, v in event.fields.items()}
    body = record(
        "audit.external", _text(event.actor, "system"), _text(event.target, source.worker or "worker"),
        result="pending" if is_decision else RESULTS.get(event.result.strip().lower(), "pending"),
        extra={"source_fields": nested} if nested else None,  # kept verbatim, declared by no type
        source_event=_text(event.event_type, "(empty)"), reason=reason[:4096],
        source_reason=(claimed.strip()[:4096] if is_decision and isinstance(claimed, str)
                       and claimed.strip() else None),
        version=event.version[:_TEXT_LIMIT] if event.version else None,
        worker_id=source.worker or None, **_source_fields(event, source),
    )
    validate_input(body)
    return _bounded(body, event, source)


def _bounded(body: dict[str, Any], event: SourceEvent, source: Source) -> dict[str, Any]:
    """Keep a record under the size the ledger accepts: drop oversized extra fields, say so."""
    if len(canonical(body)) <= MAX_RECORD_BYTES // 2 or "source_fields" not in body:
        return body
    body["source_fields"] = {"dropped": "extra fields over the record size limit",
                             "count": len(event.fields)}
    return body


def gap_record(source: Source, first: int, last: int, *, actor: str, reason: str) -> dict[str, Any]:
    """`audit.gap`: OpenRTC seq numbers `first..last` of one process instance never arrived."""
    return record(
        "audit.gap", actor, source.worker or source.instance, result="failure", **source.fields(),
        first_missing_seq=first, last_missing_seq=last, missing=last - first + 1, reason=reason[:4096],
        source_digest=_digest("gap", [source.instance, first, last]), worker_id=source.worker or None,
    )


def identity(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(source_instance, source_digest) of a record this integration wrote, else None."""
    instance, digest = record.get("source_instance"), record.get("source_digest")
    if record.get("source") == SOURCE and isinstance(instance, str) and isinstance(digest, str):
        return instance, digest
    return None
