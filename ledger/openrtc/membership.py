"""Signed membership checked against the ledger: a leftover worker of a rolled-back version is refused.

OpenRTC's `MembershipVerifier` checks a worker's HMAC-signed
`(version, worker_id, timestamp)` against an expected version: the "active
deployment manifest". Here that manifest is the ledger's current version of
the fleet, read from the projections at every check, so the moment a rollback
(or a deploy) is recorded, workers of any other version are refused. A fleet
with no current version refuses everyone (fail closed; OpenRTC itself would skip
the version check).

OpenRTC only raises `MembershipError`; it records nothing. Each refusal is
emitted here as `worker.rejected` through an OpenRTC audit log whose sink is a
`LedgerAuditSink`, so it is signed into the ledger, or spooled if the ledger
cannot be written just then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from openrtc.core.membership import MembershipError, MembershipVerifier

from ledger.errors import UnknownFleetError
from ledger.gate import StateSource

__all__ = ["AuditEmitter", "LedgerMembership", "MembershipError"]


class AuditEmitter(Protocol):
    """What is needed of `openrtc.core.audit.AuditLog` (for example `pool.audit_log`)."""

    def emit(self, event_type: str, *, actor: str = ..., target: str = ..., result: str = ...,
             version: str | None = ..., **fields: Any) -> Any: ...


class LedgerMembership:
    """Admits a worker only if its signed membership names the fleet's current version in the ledger."""

    def __init__(self, states: StateSource, fleet: str, *, secrets: Sequence[str], audit: AuditEmitter,
                 max_age_seconds: float = 300.0, clock: Callable[[], float] = time.time,
                 actor: str = "membership"):
        if not secrets:
            raise ValueError("LedgerMembership needs at least one membership secret")
        self.states, self.fleet, self.audit, self.actor = states, fleet, audit, actor
        self.secrets = list(secrets)
        self.max_age_seconds, self.clock = max_age_seconds, clock
        self._verifier: tuple[str, MembershipVerifier] | None = None

    def expected_version(self) -> tuple[str | None, int]:
        """The fleet's current version in the ledger, and the head seq it was read at."""
        try:
            state = self.states.fleet_state(self.fleet)
        except UnknownFleetError:
            return None, 0
        return state.current, state.head_seq

    def verifier(self, version: str) -> MembershipVerifier:
        """OpenRTC's verifier with `version` as its manifest (rebuilt only when the version changes)."""
        if self._verifier is None or self._verifier[0] != version:
            self._verifier = (version, MembershipVerifier(
                secrets=self.secrets, expected_version=version, max_age_seconds=self.max_age_seconds,
                clock=self.clock))
        return self._verifier[1]

    def check(self, *, token: str, version: str, worker_id: str, timestamp: float) -> None:
        """Return if the worker may take traffic; else record `worker.rejected`, raise `MembershipError`."""
        expected, head = self.expected_version()
        try:
            if expected is None:
                raise MembershipError(f"the ledger names no current version for fleet {self.fleet}")
            self.verifier(expected).verify(token=token, version=version, worker_id=worker_id,
                                           timestamp=timestamp)
        except MembershipError as exc:
            self._record(worker_id, version, str(exc), expected, head)
            raise

    def admit(self, *, token: str, version: str, worker_id: str, timestamp: float) -> bool:
        """`check` as a yes or no (a refusal is still recorded)."""
        try:
            self.check(token=token, version=version, worker_id=worker_id, timestamp=timestamp)
        except MembershipError:
            return False
        return True

    def _record(self, worker_id: str, version: str, reason: str, expected: str | None, head: int) -> None:
        self.audit.emit("worker.rejected", actor=self.actor, target=worker_id, result="rejected",
                        version=version, worker_id=worker_id,
                        reason=f"{reason} (ledger fleet {self.fleet} at seq {head})",
                        expected_version=expected, ledger_head_seq=head)
