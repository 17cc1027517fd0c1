"""The read models' storage, behind one small interface.

The projection decides what the read models say; a `LedgerViews` only stores
them. It is an eventsourcing `TrackingRecorder`, so every write of the views
carries the position (notification id) of the last record it reflects, in the
same transaction: each record affects the views exactly once, and a runner can
resume or rebuild. Rows hold JSON bytes, so a backend only has to store and
return them: `SQLiteLedgerViews` (a file of its own) and `PostgresLedgerViews`
(tables in the ledger's PostgreSQL schema) give the same rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from eventsourcing.persistence import Tracking, TrackingRecorder

#: Bumped when the layout or meaning of the stored views changes: older files are rebuilt.
FORMAT = "deploy-ledger-views/2"


class ViewsDamagedError(Exception):
    """The views cannot be trusted or read (damaged, foreign, stale): rebuild them."""


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version's entry in the version history view."""

    version: str
    order: int
    status: str
    good: bool
    completed_seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FleetUpdate:
    """Everything one fleet's views need after a batch: written together."""

    fleet: str
    head_seq: int
    head_hash: str
    current: str | None
    header: bytes
    rules_state: bytes
    last_good: bytes
    fleet_state: bytes
    versions: Sequence[VersionRow]


@dataclass(frozen=True, slots=True)
class ViewsMeta:
    format: str
    ledger_id: str
    generation: int


class LedgerViews(TrackingRecorder, ABC):
    """Storage of the version history, last-good and fleet state views.

    `write` is the only writer of views: one transaction holding every update
    and the tracking record. It raises eventsourcing's `IntegrityError` when
    the tracking position is not ahead of the stored one, or when the views
    were reset since `meta()` was read (another process rebuilt them).
    """

    @abstractmethod
    def meta(self) -> ViewsMeta | None:
        """The stored format, ledger identity and generation (None for a new store)."""

    @abstractmethod
    def reset(self, ledger_id: str, application_name: str) -> None:
        """Delete every view row and the tracking position, in one transaction."""

    @abstractmethod
    def write(self, updates: Sequence[FleetUpdate], tracking: Tracking) -> None:
        """Store the updates and the tracking position atomically."""

    @abstractmethod
    def fleet_names(self) -> list[str]: ...

    @abstractmethod
    def rules_state(self, fleet: str) -> tuple[bytes, list[bytes]] | None:
        """The rules' working state of a fleet: its core and its version entries."""

    @abstractmethod
    def core_state(self, fleet: str) -> bytes | None:
        """The rules' working state of a fleet without its version entries."""

    @abstractmethod
    def version_rows(self, fleet: str, names: Sequence[str], completed_after: int) -> list[bytes]:
        """Version entries named, or completed after a seq, in order of first appearance."""

    @abstractmethod
    def header(self, fleet: str) -> bytes | None:
        """Head position, current version and rollout in flight of a fleet."""

    @abstractmethod
    def history_rows(self, fleet: str) -> list[bytes]:
        """Version entries in order of first appearance."""

    @abstractmethod
    def last_good_row(self, fleet: str) -> bytes | None:
        """The stored last-good answer (leaving the current version); None for an unknown fleet."""

    @abstractmethod
    def newest_good_row(self, fleet: str, leaving: str) -> bytes | None:
        """The version entry of the newest good version other than `leaving`."""

    @abstractmethod
    def fleet_state_row(self, fleet: str) -> bytes | None: ...

    @abstractmethod
    def dump(self) -> dict[str, list[tuple[object, ...]]]:
        """Every stored row of every view, in key order: for comparing two builds."""

    @abstractmethod
    def close(self) -> None: ...
