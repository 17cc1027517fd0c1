"""A follower's own position in a fleet's chain, kept in its own store.

The executor (and any other follower) records the last `seq` it has fully
handled, per fleet, in an eventsourcing tracking recorder of its own (a
SQLite file beside the ledger, or the ledger's PostgreSQL database). The
position only moves forward.
"""

from __future__ import annotations

import contextlib
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, IntegrityError, Tracking

from ledger.store import is_postgres, persistence_env


class Tracker:
    """Last handled seq per fleet for one named follower."""

    def __init__(self, db: str, follower: str):
        self.follower = follower
        env = persistence_env(db)
        if not is_postgres(db):
            env["SQLITE_DBNAME"] = f"{db}.{follower}.tracking.db"
        env["CREATE_TABLE"] = "y"
        self.factory: Any = InfrastructureFactory.construct(env)
        self.recorder: Any = self.factory.tracking_recorder()

    def _name(self, fleet: str) -> str:
        return f"{self.follower}:{fleet}"

    def position(self, fleet: str) -> int:
        return int(self.recorder.max_tracking_id(self._name(fleet)) or 0)

    def advance(self, fleet: str, seq: int) -> None:
        if seq <= self.position(fleet):
            return
        # another copy of this follower may get there first; positions only go forward
        with contextlib.suppress(IntegrityError):
            self.recorder.insert_tracking(Tracking(self._name(fleet), seq))

    def close(self) -> None:
        self.factory.close()
