"""The domain rules of versions and fleets, as pure code over flat records.

One definition of "good" for everyone: the projections fold records through
these rules to build their read models, and the rollback command validates
against the same state, so the two can never disagree. No I/O here: a
`FleetHistory` applies one fleet's records one at a time (O(1) each), answers
the questions, and turns into a JSON-able dict and back so a projection can
persist it.

The rules:

- A version is *good* when a move of the whole fleet onto it completed
  (`deployment.completed`, or `rollback.completed` into it) and it carries no
  uncleared bad mark. Starting a deploy is never enough, and worker-level
  records never make a version good.
- Being rolled back from (`deployment.rolled_back` with `from_version`) or an
  explicit `version.marked_bad` makes a version bad until a deliberate
  `version.cleared`; re-deploying, completing or verifying it does not clear
  it. `version.verified` refines only: it adds evidence to a good version and
  never makes a version good or clears a bad one.
- The *last-good* version is the newest good version other than the one being
  left (a rollback leaves the current version; asked plainly, with nothing
  left, it may be the current version itself). "Newest" means the version
  whose latest completion is latest in the chain (the one that most recently
  ran the whole fleet), never simply the previous entry.
- A rollout is *in flight* from `deployment.started` (or
  `deployment.rolled_back`) until the fleet's move completes, fails, or is
  replaced by another deploy or rollback.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from ledger.events import DECISION_EVENTS, GATED_EVENTS
from ledger.model import Exit, Moment, Move, MoveKind, Settlement, Stamp

#: Statuses of a version in its fleet's history, in the order they are checked.
STATUSES: dict[str, str] = {
    "rolling_out": "the fleet is moving to it now (a deploy or rollback in flight)",
    "rolled_back": "the fleet was rolled back away from it; bad until cleared",
    "marked_bad": "an explicit bad verdict; bad until cleared",
    "live": "the fleet's current version; its rollout completed",
    "superseded": "completed earlier, since replaced by another version",
    "failed": "its rollout stopped without completing (`deployment.failed`); the fleet may be mixed",
    "abandoned": "started but never completed, and replaced",
}

#: At most this many exited workers are kept beside the live ones: those that exited
#: since the fleet's latest move (deploy or rollback) started, newest first.
RECENT_EXITS = 1000
#: At most this many seqs of outside decisions not acted on are listed (all are counted).
UNACTED_LISTED = 100

class MalformedRecordError(ValueError):
    """A record lacks a field the rules need (the schema would have refused it)."""

    def __init__(self, record: Mapping[str, Any], name: str):
        super().__init__(
            f"record seq {record.get('seq')!r} ({record.get('event')!r}) has no valid field {name!r}"
        )
        self.field = name


class RecordOrderError(ValueError):
    """Records must be applied once each, in chain order."""


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedRecordError(record, name)
    return value


def _count(record: Mapping[str, Any], name: str) -> int:
    value = record.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedRecordError(record, name)
    return value


def _stamp(record: Mapping[str, Any], **extra: Any) -> Stamp:
    """Who did it, when and why: the evidence kept from a record."""
    return Stamp(record["seq"], record.get("timestamp"), record.get("actor"), record.get("reason"), **extra)


def _moment(record: Mapping[str, Any]) -> Moment:
    return Moment(record["seq"], record.get("timestamp"))


class _Encodable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


_D = TypeVar("_D", Stamp, Moment, Exit)


def _encode(value: _Encodable | None) -> dict[str, Any] | None:
    return None if value is None else value.to_dict()


def _decoder(kind: type[_D], data: Mapping[str, Any]) -> Callable[[str], _D | None]:
    """Reads the field `name` of `data` as a `kind` (or None when it is null or absent)."""
    def read(name: str) -> _D | None:
        value = data.get(name)
        return None if value is None else kind.from_dict(value)
    return read


def _list_decoder(kind: type[_D], data: Mapping[str, Any]) -> Callable[[str], list[_D]]:
    def read(name: str) -> list[_D]:
        return [kind.from_dict(v) for v in data.get(name, ())]
    return read


# -- the parts of a fleet's state ---------------------------------------------------


@dataclass(slots=True)
class Version:
    """Everything the fleet's history says about one version."""

    name: str
    order: int
    started: Stamp | None = None
    starts: int = 0
    completed: Stamp | None = None
    completions: int = 0
    failed: Stamp | None = None
    drains: list[Stamp] = field(default_factory=list)
    worker_drains: int = 0
    verdicts: list[Stamp] = field(default_factory=list)
    verified: Stamp | None = None
    bad: Stamp | None = None
    restored: Stamp | None = None
    rolled_back_from: list[Stamp] = field(default_factory=list)
    rolled_back_to: list[Stamp] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return self.completed is not None and self.bad is None

    def evidence(self) -> Stamp | None:
        """The record that made this version good: its completion or its clearing."""
        if not self.good:
            return None
        assert self.completed is not None
        if self.restored is not None and self.restored.seq > self.completed.seq:
            return self.restored
        return self.completed

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.name,
            "order": self.order,
            "started": _encode(self.started),
            "starts": self.starts,
            "completed": _encode(self.completed),
            "completions": self.completions,
            "failed": _encode(self.failed),
            "drains": [s.to_dict() for s in self.drains],
            "worker_drains": self.worker_drains,
            "verdicts": [s.to_dict() for s in self.verdicts],
            "verified": _encode(self.verified),
            "bad": _encode(self.bad),
            "restored": _encode(self.restored),
            "rolled_back_from": [s.to_dict() for s in self.rolled_back_from],
            "rolled_back_to": [s.to_dict() for s in self.rolled_back_to],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Version:
        name, order = data.get("version"), data.get("order")
        if not isinstance(name, str) or not isinstance(order, int):
            raise ValueError(f"version entry needs a 'version' string and an 'order' int: {data!r:.200}")
        stamp = _decoder(Stamp, data)
        stamps = _list_decoder(Stamp, data)
        return cls(
            name, order, stamp("started"), int(data.get("starts", 0)), stamp("completed"),
            int(data.get("completions", 0)), stamp("failed"), stamps("drains"),
            int(data.get("worker_drains", 0)), stamps("verdicts"), stamp("verified"),
            stamp("bad"), stamp("restored"), stamps("rolled_back_from"), stamps("rolled_back_to"),
        )


@dataclass(slots=True)
class Worker:
    """One worker process as the fleet's records describe it."""

    worker_id: str
    version: str
    draining: bool = False
    stuck: bool = False
    active_sessions: int = 0
    started: Moment | None = None
    drain_started: Moment | None = None
    exited: Exit | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "version": self.version,
            "draining": self.draining,
            "stuck": self.stuck,
            "active_sessions": self.active_sessions,
            "started": _encode(self.started),
            "drain_started": _encode(self.drain_started),
            "exited": _encode(self.exited),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Worker:
        worker_id, version = data.get("worker_id"), data.get("version")
        if not isinstance(worker_id, str) or not isinstance(version, str):
            raise ValueError(f"worker entry needs 'worker_id' and 'version' strings: {data!r:.200}")
        moment = _decoder(Moment, data)
        return cls(
            worker_id, version, bool(data.get("draining")), bool(data.get("stuck")),
            int(data.get("active_sessions", 0)), moment("started"), moment("drain_started"),
            _decoder(Exit, data)("exited"),
        )


@dataclass(frozen=True)
class LastGood:
    """The answer to "where do we roll back to?", with the evidence for it."""

    version: str
    evidence_seq: int
    evidence_event: str
    completed_seq: int
    verified_seq: int | None
    leaving: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "evidence_seq": self.evidence_seq,
            "evidence_event": self.evidence_event,
            "completed_seq": self.completed_seq,
            "verified_seq": self.verified_seq,
            "leaving": self.leaving,
        }

    @classmethod
    def of(cls, entry: Version, leaving: str | None) -> LastGood:
        """The answer naming `entry`, which must be good."""
        evidence = entry.evidence()
        if evidence is None or entry.completed is None:
            raise ValueError(f"version {entry.name!r} is not good")
        return cls(
            entry.name,
            evidence.seq,
            evidence.event or "deployment.completed",
            entry.completed.seq,
            entry.verified.seq if entry.verified is not None else None,
            leaving,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LastGood:
        return cls(data["version"], data["evidence_seq"], data["evidence_event"],
                   data["completed_seq"], data.get("verified_seq"), data.get("leaving"))


@dataclass(frozen=True)
class Candidate:
    """A version considered for last-good, and why it was skipped (if it was)."""

    version: str
    good: bool
    skipped: str | None
    evidence_seq: int | None


# -- the fleet's state --------------------------------------------------------------


class FleetHistory:
    """One fleet's state, folded from its records in chain order.

    `versions` are in order of first appearance; `workers` are the live ones;
    `recent_exits` the workers that exited since the latest move started
    (newest first): bounded by the fleet's size, not by its history. `head_seq`/`head_hash` say which
    record the state is consistent with.
    """

    __slots__ = (
        "_dirty", "command_rejections", "current", "dropped_sessions", "fleet", "head_hash", "head_seq",
        "head_timestamp", "idempotency", "in_flight", "last_rejection", "recent_exits", "rejections",
        "unacted", "unacted_seqs", "versions", "workers", "workers_rejected",
    )

    def __init__(self, fleet: str):
        self.fleet = fleet
        self.head_seq = 0
        self.head_hash: str | None = None
        self.head_timestamp: str | None = None
        self.versions: dict[str, Version] = {}
        self.current: str | None = None
        self.in_flight: Move | None = None
        self.workers: dict[str, Worker] = {}
        self.recent_exits: deque[Worker] = deque(maxlen=RECENT_EXITS)
        self.rejections = 0
        self.command_rejections = 0
        self.last_rejection: Stamp | None = None
        self.workers_rejected = 0
        self.dropped_sessions = 0
        #: Decisions an outside system reported that the ledger kept but did not act on.
        self.unacted = 0
        self.unacted_seqs: deque[int] = deque(maxlen=UNACTED_LISTED)
        #: idempotency key -> seq of the first gate-written record that carried it
        self.idempotency: dict[str, int] = {}
        self._dirty: set[str] = set()

    # -- applying records ------------------------------------------------------------

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold the next record of this fleet's chain into the state."""
        seq = record.get("seq")
        if seq != self.head_seq + 1:
            raise RecordOrderError(
                f"fleet {self.fleet}: expected seq {self.head_seq + 1}, got {seq!r}"
            )
        handler = _HANDLERS.get(str(record.get("event")))
        if handler is not None:
            handler(self, record)
        key = record.get("idempotency_key")
        # Only the gate's own records claim a key: a fact carrying one claims nothing.
        if isinstance(key, str) and key not in self.idempotency and record.get("event") in GATED_EVENTS:
            self.idempotency[key] = seq
        self.head_seq = seq
        self.head_hash = record.get("hash")
        self.head_timestamp = record.get("timestamp")

    def apply_all(self, records: Iterable[Mapping[str, Any]]) -> FleetHistory:
        for record in records:
            self.apply(record)
        return self

    def take_dirty(self) -> set[str]:
        """Names of versions whose entry (or status) changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return {name for name in dirty if name in self.versions}

    def _version(self, name: str) -> Version:
        version = self.versions.get(name)
        if version is None:
            version = self.versions[name] = Version(name, len(self.versions))
        self._dirty.add(name)
        return version

    def _set_current(self, name: str | None) -> None:
        if name != self.current:
            if self.current is not None:
                self._dirty.add(self.current)
            if name is not None:
                self._dirty.add(name)
            self.current = name

    def _set_in_flight(self, flight: Move | None) -> None:
        old = self.in_flight
        if old is not None:
            self._dirty.add(old.version)
            if old.kind is MoveKind.ROLLBACK and (flight is None or flight.seq != old.seq):
                self._settle_rollback(old.version, old.from_version, old.seq, Settlement.SUPERSEDED, None)
        if flight is not None:
            self._dirty.add(flight.version)
        self.in_flight = flight

    def _settle_rollback(self, target: str, source: str | None, seq: int, outcome: Settlement,
                         stamp: Stamp | None) -> None:
        """Write a rollback's outcome on both versions' entries (pending ones only)."""
        for name, entries in ((target, "rolled_back_to"), (source, "rolled_back_from")):
            version = self.versions.get(name) if name is not None else None
            if version is None:
                continue
            items: list[Stamp] = getattr(version, entries)
            for index in range(len(items) - 1, -1, -1):
                entry = items[index]
                if entry.seq == seq and entry.outcome is Settlement.PENDING:
                    settled = replace(entry, outcome=outcome)
                    if stamp is not None:
                        settled = replace(settled, outcome_seq=stamp.seq, outcome_timestamp=stamp.timestamp)
                    items[index] = settled
                    self._dirty.add(version.name)
                    break

    def _worker(self, worker_id: str, version: str) -> Worker:
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = Worker(worker_id, version)
        elif worker.version != version:
            worker.version = version
        return worker

    # -- per event type --------------------------------------------------------------

    def _deployment_started(self, r: Mapping[str, Any]) -> None:
        name = _text(r, "version")
        source = r.get("from_version")
        stamp = _stamp(r, from_version=source)
        version = self._version(name)
        version.started = stamp
        version.starts += 1
        self._set_in_flight(Move(MoveKind.DEPLOY, name, source or self.current, r["seq"],
                                 r.get("timestamp"), r.get("actor")))
        self._set_current(name)
        self.recent_exits.clear()

    def _completed(self, r: Mapping[str, Any], name: str) -> None:
        version = self._version(name)
        version.completed = _stamp(r, event=r["event"])
        version.completions += 1
        flight = self.in_flight
        if flight is not None and flight.kind is MoveKind.ROLLBACK and flight.version == name:
            self._settle_rollback(name, flight.from_version, flight.seq, Settlement.COMPLETED,
                                  version.completed)
            self.in_flight = None
            self._dirty.add(name)
        else:
            self._set_in_flight(None)
        self._set_current(name)

    def _deployment_completed(self, r: Mapping[str, Any]) -> None:
        self._completed(r, _text(r, "version"))

    def _deployment_failed(self, r: Mapping[str, Any]) -> None:
        name = _text(r, "version")
        self._version(name).failed = _stamp(r, from_version=r.get("from_version"))
        flight = self.in_flight
        if flight is not None and flight.kind is MoveKind.DEPLOY and flight.version == name:
            self.in_flight = None
        # `current` stays: the fleet was moving to this version, and rolling back
        # from it (to the last-good version) is how the operator recovers.

    def _drain_started(self, r: Mapping[str, Any]) -> None:
        name = _text(r, "version")
        worker_id = r.get("worker_id")
        if worker_id is None:
            version = self.versions.get(name)
            if version is not None:
                version.drains.append(_stamp(r))
                self._dirty.add(name)
            moment = _moment(r)
            for worker in self.workers.values():
                if worker.version == name and not worker.draining:
                    worker.draining = True
                    worker.drain_started = moment
            return
        if not isinstance(worker_id, str) or not worker_id:
            raise MalformedRecordError(r, "worker_id")
        worker = self._worker(worker_id, name)
        if not worker.draining:  # a repeated drain of one worker is one fact, counted once
            worker.draining = True
            worker.drain_started = _moment(r)
            version = self.versions.get(name)
            if version is not None:
                version.worker_drains += 1
                self._dirty.add(name)

    def _drain_stuck(self, r: Mapping[str, Any]) -> None:
        worker_id, name, sessions = _text(r, "worker_id"), _text(r, "version"), _count(r, "active_sessions")
        worker = self._worker(worker_id, name)
        worker.active_sessions = sessions
        worker.stuck = True
        if not worker.draining:
            worker.draining = True
            worker.drain_started = _moment(r)

    def _rolled_back(self, r: Mapping[str, Any]) -> None:
        target, source = _text(r, "version"), _text(r, "from_version")
        seq = r["seq"]
        extra = {k: r.get(k) for k in ("rollback_id", "forced", "good_evidence_seq")}
        leaving = self._version(source)
        leaving.rolled_back_from.append(_stamp(r, to_version=target, outcome=Settlement.PENDING, **extra))
        leaving.bad = _stamp(r, event="deployment.rolled_back")
        self._version(target).rolled_back_to.append(
            _stamp(r, from_version=source, outcome=Settlement.PENDING, **extra))
        external = bool(r.get("external"))  # the platform moves the workers; the ledger watches
        self._set_in_flight(Move(MoveKind.ROLLBACK, target, source, seq, r.get("timestamp"), r.get("actor"),
                                 external, r.get("drain_timeout_s") if external else None))
        self._set_current(target)
        self.recent_exits.clear()

    def _rollback_completed(self, r: Mapping[str, Any]) -> None:
        _text(r, "from_version")
        self._completed(r, _text(r, "version"))

    def _rollback_failed(self, r: Mapping[str, Any]) -> None:
        target = _text(r, "version")
        _text(r, "from_version")
        flight = self.in_flight
        if flight is None or flight.kind is not MoveKind.ROLLBACK or flight.version != target:
            return  # no such rollback in flight: nothing to settle
        source = flight.from_version
        self._settle_rollback(target, source, flight.seq, Settlement.FAILED, _stamp(r))
        self.in_flight = None
        self._dirty.add(target)
        # The fleet did not confirm leaving `source`: count it as still there, so a
        # retry validates exactly like the first attempt (and `source` stays bad).
        self._set_current(source)

    def _rollback_rejected(self, r: Mapping[str, Any]) -> None:
        self.rejections += 1
        self.last_rejection = _stamp(r, check=r.get("check"), version=r.get("version"),
                                     from_version=r.get("from_version"))

    def _command_rejected(self, r: Mapping[str, Any]) -> None:
        self.command_rejections += 1
        self.last_rejection = _stamp(r, check=r.get("check"), command=r.get("command"),
                                     version=r.get("version"), from_version=r.get("from_version"))

    def _superseded(self, r: Mapping[str, Any]) -> None:
        flight = self.in_flight
        if flight is not None and flight.seq == r.get("move_seq"):
            self._set_in_flight(None)  # a rollback replaced so is settled as "superseded"

    def _external(self, r: Mapping[str, Any]) -> None:
        if r.get("source_event") in DECISION_EVENTS:
            self.unacted += 1
            self.unacted_seqs.append(r["seq"])

    def _worker_started(self, r: Mapping[str, Any]) -> None:
        worker_id, name = _text(r, "worker_id"), _text(r, "version")
        self.workers[worker_id] = Worker(
            worker_id, name, started=_moment(r))

    def _worker_sessions(self, r: Mapping[str, Any]) -> None:
        worker_id, name, sessions = _text(r, "worker_id"), _text(r, "version"), _count(r, "active_sessions")
        self._worker(worker_id, name).active_sessions = sessions

    def _worker_exited(self, r: Mapping[str, Any]) -> None:
        worker_id, name, sessions = _text(r, "worker_id"), _text(r, "version"), _count(r, "active_sessions")
        worker = self.workers.pop(worker_id, None) or Worker(worker_id, name)
        worker.version = name
        worker.active_sessions = 0
        worker.exited = Exit(r["seq"], r.get("timestamp"), sessions, r.get("exit_code"))
        self.dropped_sessions += sessions
        self.recent_exits.appendleft(worker)

    def _worker_rejected(self, r: Mapping[str, Any]) -> None:
        _text(r, "worker_id")
        self.workers_rejected += 1

    def _verified(self, r: Mapping[str, Any]) -> None:
        version = self._version(_text(r, "version"))
        version.verified = _stamp(r)
        version.verdicts.append(_stamp(r, event="version.verified"))

    def _marked_bad(self, r: Mapping[str, Any]) -> None:
        version = self._version(_text(r, "version"))
        version.bad = _stamp(r, event="version.marked_bad")
        version.verdicts.append(_stamp(r, event="version.marked_bad"))

    def _cleared(self, r: Mapping[str, Any]) -> None:
        version = self._version(_text(r, "version"))
        if version.bad is not None:
            version.restored = _stamp(r, event="version.cleared")
            version.bad = None
        version.verdicts.append(_stamp(r, event="version.cleared"))

    # -- serialisation ---------------------------------------------------------------

    def core_dict(self) -> dict[str, Any]:
        """Everything but the version entries: small, bounded by the fleet's size."""
        return {
            "fleet": self.fleet,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "head_timestamp": self.head_timestamp,
            "current": self.current,
            "in_flight": self.in_flight.to_dict() if self.in_flight is not None else None,
            "workers": [w.to_dict() for w in self.workers.values()],
            "recent_exits": [w.to_dict() for w in self.recent_exits],
            "rejections": self.rejections,
            "command_rejections": self.command_rejections,
            "unacted": self.unacted,
            "unacted_seqs": list(self.unacted_seqs),
            "last_rejection": _encode(self.last_rejection),
            "workers_rejected": self.workers_rejected,
            "dropped_sessions": self.dropped_sessions,
            "idempotency": dict(self.idempotency),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.core_dict(), "versions": [v.to_dict() for v in self.versions.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetHistory:
        fleet = data.get("fleet")
        head_seq = data.get("head_seq")
        if not isinstance(fleet, str) or not isinstance(head_seq, int) or head_seq < 0:
            raise ValueError(f"fleet state needs 'fleet' and 'head_seq': {dict(data)!r:.200}")
        state = cls(fleet)
        state.head_seq = head_seq
        state.head_hash = data.get("head_hash")
        state.head_timestamp = data.get("head_timestamp")
        state.current = data.get("current")
        flight = data.get("in_flight")
        state.in_flight = Move.from_dict(flight) if flight is not None else None
        versions = sorted((Version.from_dict(v) for v in data.get("versions", ())), key=lambda v: v.order)
        state.versions = {v.name: v for v in versions}
        state.workers = {w.worker_id: w for w in map(Worker.from_dict, data.get("workers", ()))}
        state.recent_exits.extend(map(Worker.from_dict, data.get("recent_exits", ())))
        state.rejections = int(data.get("rejections", 0))
        state.command_rejections = int(data.get("command_rejections", 0))
        state.unacted = int(data.get("unacted", 0))
        state.unacted_seqs.extend(int(n) for n in data.get("unacted_seqs", ()))
        state.last_rejection = _decoder(Stamp, data)("last_rejection")
        state.workers_rejected = int(data.get("workers_rejected", 0))
        state.dropped_sessions = int(data.get("dropped_sessions", 0))
        state.idempotency = dict(data.get("idempotency", {}))
        return state


_HANDLERS: dict[str, Callable[[FleetHistory, Mapping[str, Any]], None]] = {
    "deployment.started": FleetHistory._deployment_started,
    "deployment.completed": FleetHistory._deployment_completed,
    "deployment.failed": FleetHistory._deployment_failed,
    "deployment.drain_started": FleetHistory._drain_started,
    "deployment.drain_stuck": FleetHistory._drain_stuck,
    "deployment.rolled_back": FleetHistory._rolled_back,
    "rollback.completed": FleetHistory._rollback_completed,
    "rollback.failed": FleetHistory._rollback_failed,
    "rollback.rejected": FleetHistory._rollback_rejected,
    "command.rejected": FleetHistory._command_rejected,
    "move.superseded": FleetHistory._superseded,
    "audit.external": FleetHistory._external,
    "worker.started": FleetHistory._worker_started,
    "worker.sessions": FleetHistory._worker_sessions,
    "worker.exited": FleetHistory._worker_exited,
    "worker.rejected": FleetHistory._worker_rejected,
    "version.verified": FleetHistory._verified,
    "version.marked_bad": FleetHistory._marked_bad,
    "version.cleared": FleetHistory._cleared,
}


# -- the questions ------------------------------------------------------------------


def fold(fleet: str, records: Iterable[Mapping[str, Any]]) -> FleetHistory:
    """The state after a fleet's records, applied in order from seq 1."""
    return FleetHistory(fleet).apply_all(records)


def is_good(state: FleetHistory, version: str) -> bool:
    """Completed as the fleet's version, and no uncleared rollback-from or bad verdict."""
    entry = state.versions.get(version)
    return entry is not None and entry.good


def rollout_in_flight(state: FleetHistory) -> Move | None:
    """The deploy or rollback in flight, or None."""
    return state.in_flight


def status(state: FleetHistory, version: str) -> str:
    """The version's status now: one of `STATUSES`."""
    entry = state.versions[version]
    flight = state.in_flight
    if flight is not None and flight.version == version:
        return "rolling_out"
    if entry.bad is not None:
        return "rolled_back" if entry.bad.event == "deployment.rolled_back" else "marked_bad"
    completed = entry.completed
    if entry.failed is not None and (completed is None or entry.failed.seq > completed.seq):
        return "failed"
    if completed is None:
        return "abandoned"
    return "live" if version == state.current else "superseded"


def _rank(entry: Version) -> tuple[int, int]:
    return (entry.completed.seq if entry.completed is not None else 0, entry.order)


def candidates(state: FleetHistory, leaving: str | None = None) -> list[Candidate]:
    """Every version, newest first, saying whether it could be last-good and if not why.

    The first candidate with `skipped is None` is the last-good version when
    leaving `leaving` (pass the current version to plan a rollback).
    """
    result = []
    for entry in sorted(state.versions.values(), key=_rank, reverse=True):
        if entry.completed is None:
            skipped: str | None = "never completed"
        elif entry.bad is not None:
            how = "rolled back from" if entry.bad.event == "deployment.rolled_back" else "marked bad"
            skipped = f"{how} at seq {entry.bad.seq}, not cleared"
        elif entry.name == leaving:
            skipped = "is the version being left"
        else:
            skipped = None
        evidence = entry.evidence()
        result.append(Candidate(entry.name, entry.good, skipped,
                                evidence.seq if evidence is not None else None))
    return result


def last_good(state: FleetHistory, leaving: str | None = None) -> LastGood | None:
    """The newest good version other than `leaving` (the version a rollback leaves).

    With no `leaving`, simply the newest good version: after v1 completed, the
    last-good version is v1. A rollback asks with `leaving=state.current`.
    """
    best: Version | None = None
    for entry in state.versions.values():
        if entry.good and entry.name != leaving and (best is None or _rank(entry) > _rank(best)):
            best = entry
    return None if best is None else LastGood.of(best, leaving)


def version_view(state: FleetHistory, version: str) -> dict[str, Any]:
    """A version's history entry as the read model shows it: facts, status, verdict."""
    entry = state.versions[version]
    view = entry.to_dict()
    view["status"] = status(state, version)
    view["good"] = entry.good
    evidence = entry.evidence()
    view["good_evidence_seq"] = evidence.seq if evidence is not None else None
    return view


def history(state: FleetHistory) -> list[dict[str, Any]]:
    """Every version in order of first appearance, with its status now."""
    return [version_view(state, name) for name in state.versions]


def fleet_summary(state: FleetHistory) -> dict[str, Any]:
    """Version distribution, draining workers, sessions on non-current versions, clean flag.

    `clean` is true only when the ledger knows at least one live worker and
    every one runs the current version and is not draining: with no worker
    known, the ledger cannot say the fleet is clean. `not_current` names the
    live workers of another version.
    """
    current = state.current
    live = state.workers.values()
    distribution = Counter(w.version for w in live)
    draining = sum(1 for w in live if w.draining)
    held = sum(w.active_sessions for w in live if w.version != current)
    clean = bool(state.workers) and all(w.version == current and not w.draining for w in live)
    return {
        "current": current,
        "live_workers": len(state.workers),
        "versions": dict(sorted(distribution.items())),
        "draining": draining,
        "not_current": sorted(w.worker_id for w in live if w.version != current),
        "sessions_on_non_current": held,
        "clean": clean,
        "in_flight": state.in_flight.to_dict() if state.in_flight is not None else None,
        "dropped_sessions": state.dropped_sessions,
        "workers_rejected": state.workers_rejected,
        "rollbacks_rejected": state.rejections,
        "commands_rejected": state.command_rejections,
        "outside_decisions_not_acted_on": state.unacted,
    }


def fleet_view(state: FleetHistory) -> dict[str, Any]:
    """The fleet state read model: live workers, the newest exits, and the summary."""
    return {
        "fleet": state.fleet,
        "head_seq": state.head_seq,
        "workers": [w.to_dict() for _, w in sorted(state.workers.items())],
        "recent_exits": [w.to_dict() for w in state.recent_exits],
        "summary": fleet_summary(state),
    }
