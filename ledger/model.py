"""Typed values of the fleet model that more than one layer reads: moves and the
evidence kept from records (stamps).

The fold (`ledger.rules`), the decisions (`ledger.decide`), the executor
(`ledger.drive`) and the read models all ask "which move is in flight?" and
"which record made this version good?"; they read attributes, never string
keys, and each type's one codec (`to_dict`/`from_dict`) is the JSON the read
models store and print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T", bound="_Codec")


_FIELD_NAMES: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _field_names(kind: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A dataclass's field names, in order and as a set (looked up once per class: the
    codec runs for every stamp a view stores or loads)."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        ordered = tuple(f.name for f in fields(kind))
        names = _FIELD_NAMES[kind] = (ordered, frozenset(ordered))
    return names


class _Codec:
    """One JSON codec for the stamps: the fields that are set, in declaration order.

    `ALWAYS` fields are written even when None; every other field only when set,
    so a stamp's JSON holds exactly what its record said.
    """

    ALWAYS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        always = self.ALWAYS
        data: dict[str, Any] = {}
        for name in _field_names(type(self))[0]:
            value = getattr(self, name)
            if value is not None or name in always:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
        names = _field_names(cls)[1]
        if not isinstance(data.get("seq"), int) or not names.issuperset(data):
            raise ValueError(f"{cls.__name__} needs an int 'seq' and only {sorted(names)}: "
                             f"{dict(data)!r:.200}")
        return cls._decode(data)

    @classmethod
    def _decode(cls: type[_T], data: Mapping[str, Any]) -> _T:
        # Views load many stamps per question: fill the instance directly (a frozen
        # dataclass's __init__ costs a guarded setattr per field); fields the JSON
        # leaves out read the class defaults, None.
        stamp = object.__new__(cls)
        stamp.__dict__.update(data)
        return stamp


class Settlement(StrEnum):
    """How a rollback ended, as written on both versions' entries."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Stamp(_Codec):
    """Who did it, when and why: the evidence the fold keeps from one record.

    `seq`, `timestamp` and `actor` are always there; the other fields only
    when the record (or the rule that kept it) gives them: `event` names the
    record where one version entry keeps several kinds, a rollback's stamps
    carry its target or source, its id and how it settled, a rejection its check.
    """

    ALWAYS: ClassVar[tuple[str, ...]] = ("seq", "timestamp", "actor")

    seq: int
    timestamp: str | None = None
    actor: str | None = None
    reason: str | None = None
    event: str | None = None
    check: str | None = None
    command: str | None = None
    version: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    outcome: Settlement | None = None
    rollback_id: str | None = None
    forced: bool | None = None
    good_evidence_seq: int | None = None
    outcome_seq: int | None = None
    outcome_timestamp: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = _Codec.to_dict(self)
        if self.outcome is not None:
            data["outcome"] = self.outcome.value  # plain JSON values, as the views store them
        return data

    @classmethod
    def _decode(cls, data: Mapping[str, Any]) -> Stamp:
        outcome = data.get("outcome")
        if outcome is None:
            return super()._decode(data)
        return super()._decode({**data, "outcome": Settlement(outcome)})


@dataclass(frozen=True)
class Moment(_Codec):
    """Where a worker's start or drain was recorded: the record's seq and time."""

    ALWAYS: ClassVar[tuple[str, ...]] = ("seq", "timestamp")

    seq: int
    timestamp: str | None = None


@dataclass(frozen=True)
class Exit(_Codec):
    """A worker's `worker.exited`: where, when, the calls it dropped, and its exit code if known."""

    ALWAYS: ClassVar[tuple[str, ...]] = ("seq", "timestamp", "dropped_sessions")

    seq: int
    timestamp: str | None = None
    dropped_sessions: int = 0
    exit_code: int | None = None


class MoveKind(StrEnum):
    """The two fleet moves: a deploy forward, or a rollback to a good version."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Move:
    """A deploy or rollback in flight: what started it (`seq`), where it goes, from where.

    `external` marks a rollback that the platform carries out while the
    ledger only watches (one a pool requested); `drain_timeout_s` is how long
    the ledger waits for the fleet to show it done before recording it failed.
    """

    kind: MoveKind
    version: str
    from_version: str | None
    seq: int
    timestamp: str | None = None
    actor: str | None = None
    external: bool = False
    drain_timeout_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "version": self.version,
                                "from_version": self.from_version, "seq": self.seq,
                                "timestamp": self.timestamp, "actor": self.actor}
        if self.external:
            data.update(external=True, drain_timeout_s=self.drain_timeout_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Move:
        try:
            kind, version, seq = MoveKind(data["kind"]), data["version"], data["seq"]
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"a move needs 'kind', 'version' and 'seq': {dict(data)!r:.200}") from exc
        if not isinstance(version, str) or not isinstance(seq, int):
            raise ValueError(f"a move needs a 'version' string and a 'seq' int: {dict(data)!r:.200}")
        timeout = data.get("drain_timeout_s")
        return cls(kind, version, data.get("from_version"), seq, data.get("timestamp"), data.get("actor"),
                   bool(data.get("external")), int(timeout) if timeout is not None else None)

    def describe(self) -> str:
        return f"a {self.kind.value} to {self.version} (seq {self.seq})"
