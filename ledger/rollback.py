"""The rollback decision: where to return to, which checks must pass, and the plan.

`plan_rollback` is pure: given a fleet's state (the rules' `FleetHistory`,
consistent at a known head) and a request, it returns either a plan or a
refusal naming the check that failed. The gate (`ledger.gate`) reads the
state at the head, calls it through `ledger.decide`, and records the result
only if the head has not moved since. A malformed request is refused before
anything is read or written; a well-formed request that a check refuses is
recorded as `rollback.rejected`, because auditors count refused attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.commands import record
from ledger.errors import InputError
from ledger.events import Check
from ledger.model import MoveKind
from ledger.rules import Candidate, FleetHistory, candidates, is_good, last_good

DEFAULT_DRAIN_TIMEOUT_S = 120


@dataclass(frozen=True)
class RollbackRequest:
    fleet: str
    actor: str
    reason: str
    to_version: str | None = None
    from_version: str | None = None
    idempotency_key: str | None = None
    force_bad_target: bool = False
    workers: int | None = None
    drain_timeout_s: int = DEFAULT_DRAIN_TIMEOUT_S

    def check_well_formed(self) -> None:
        """Malformed requests never reach the ledger: one line, exit 2."""
        if not self.actor.strip():
            raise InputError("rollback needs --actor (who is rolling back)")
        if not self.reason.strip():
            raise InputError("rollback needs --reason (why; it is recorded)")
        if self.to_version is not None and not self.to_version.strip():
            raise InputError("--to must name a version")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, not {self.workers}")
        if self.drain_timeout_s < 1:
            raise InputError(f"--drain-timeout must be at least 1 second, not {self.drain_timeout_s}")


@dataclass(frozen=True)
class RollbackPlan:
    """What an accepted rollback will do, decided at `head_seq`."""

    fleet: str
    target: str
    from_version: str
    good_evidence_seq: int | None
    forced: bool
    head_seq: int
    rollback_id: str
    start_workers: list[str]
    drain_workers: list[str]
    drain_timeout_s: int
    candidates: list[Candidate] = field(default_factory=list)

    def record(self, request: RollbackRequest) -> dict[str, Any]:
        return record(
            "deployment.rolled_back", request.actor, "fleet", version=self.target,
            from_version=self.from_version, reason=request.reason, rollback_id=self.rollback_id,
            forced=self.forced, start_workers=self.start_workers, drain_workers=self.drain_workers,
            drain_timeout_s=self.drain_timeout_s, good_evidence_seq=self.good_evidence_seq,
            idempotency_key=request.idempotency_key or None,
        )

    def describe(self) -> list[str]:
        lines = [
            f"rollback plan for fleet {self.fleet} at seq {self.head_seq}:",
            f"  leave {self.from_version}, return to {self.target}"
            + (f" (good since seq {self.good_evidence_seq})" if self.good_evidence_seq else "")
            + (" [forced: target is not good]" if self.forced else ""),
        ]
        for candidate in self.candidates:
            if candidate.skipped:
                lines.append(f"  skipped {candidate.version}: {candidate.skipped}")
        lines.append(f"  start workers: {', '.join(self.start_workers)}")
        lines.append(f"  drain workers: {', '.join(self.drain_workers) or '(none live)'}")
        lines.append(f"  drain timeout: {self.drain_timeout_s}s")
        return lines


@dataclass(frozen=True)
class Refusal:
    """A well-formed request that a check refused."""

    check: Check
    reason: str
    target: str | None = None
    from_version: str | None = None


def plan_rollback(state: FleetHistory, request: RollbackRequest) -> RollbackPlan | Refusal:
    """Decide a rollback against a fleet's state: a plan, or the check that refuses it."""
    current = state.current
    if current is None:
        return Refusal(Check.NO_CURRENT_VERSION, f"fleet {state.fleet} has no version to roll back from")
    target = request.to_version
    if target is None:
        best = last_good(state, leaving=current)
        if best is None:
            return Refusal(Check.NO_LAST_GOOD, f"no good version other than {current} to return to",
                           None, current)
        target = best.version
    if target not in state.versions:
        return Refusal(Check.TARGET_UNKNOWN, f"version {target} never appears in fleet {state.fleet}",
                       target, current)
    forced = False
    if not is_good(state, target):
        why = next((c.skipped for c in candidates(state, current) if c.version == target), None)
        if not request.force_bad_target:
            return Refusal(Check.TARGET_NOT_GOOD, f"{target} is not good: {why}", target, current)
        forced = True
    if target == current:
        return Refusal(Check.TARGET_IS_CURRENT, f"the fleet already runs {target}", target, current)
    if request.from_version is not None and request.from_version != current:
        return Refusal(Check.FROM_VERSION_MISMATCH,
                       f"the fleet runs {current}, not {request.from_version}", target, current)
    flight = state.in_flight
    if flight is not None and (flight.kind is MoveKind.ROLLBACK or flight.version != current):
        return Refusal(Check.ROLLOUT_IN_FLIGHT,
                       f"a {flight.kind.value} to {flight.version} is in flight since seq {flight.seq}",
                       target, current)
    evidence = state.versions[target].evidence()
    rollback_id = f"rb{state.head_seq + 1}"
    live_bad = sorted(w.worker_id for w in state.workers.values() if w.version != target)
    from_workers = sum(1 for w in state.workers.values() if w.version == current)
    count = request.workers or max(1, from_workers)
    return RollbackPlan(
        fleet=state.fleet, target=target, from_version=current,
        good_evidence_seq=evidence.seq if evidence else None, forced=forced,
        head_seq=state.head_seq, rollback_id=rollback_id,
        start_workers=[f"{target}-{rollback_id}-{i}" for i in range(1, count + 1)],
        drain_workers=live_bad, drain_timeout_s=request.drain_timeout_s,
        candidates=candidates(state, current),
    )


def decision_from_record(record: dict[str, Any]) -> RollbackPlan | Refusal:
    """Rebuild the decision a recorded rollback or rejection states."""
    if record["event"] == "rollback.rejected":
        return Refusal(Check(record["check"]), record.get("detail", record["reason"]),
                       record.get("version"), record.get("from_version"))
    return RollbackPlan(
        fleet=record["fleet"], target=record["version"], from_version=record["from_version"],
        good_evidence_seq=record.get("good_evidence_seq"), forced=bool(record.get("forced")),
        head_seq=record["seq"] - 1, rollback_id=record.get("rollback_id", f"rb{record['seq']}"),
        start_workers=list(record.get("start_workers", [])),
        drain_workers=list(record.get("drain_workers", [])),
        drain_timeout_s=int(record.get("drain_timeout_s", DEFAULT_DRAIN_TIMEOUT_S)),
    )
