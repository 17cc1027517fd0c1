"""The fleet driver protocol: what the executor needs from any fleet of workers.

A driver does three things and nothing else: start a worker of a version, ask
a worker to drain, and say whether a worker is still alive. What the workers
do (their sessions, their exits) they report into the ledger themselves; the
executor reads that, so the ledger stays the system of record. Drivers:
`ledger.sim.local_driver` (simulated local worker processes), and
`ledger.openrtc.driver` (real OpenRTC pools); `ledger.drivers` picks one by
configuration.
"""

from __future__ import annotations

from typing import Protocol


class FleetDriver(Protocol):
    """What the executor needs from a fleet of workers."""

    def start_worker(self, worker_id: str, version: str) -> None:
        """Start one worker of `version`; a worker id already running is left alone."""

    def drain(self, worker_id: str) -> None:
        """Ask a worker to stop taking calls and exit once its calls end. Never kills."""

    def is_alive(self, worker_id: str) -> bool:
        """Whether the worker's process is still running."""
