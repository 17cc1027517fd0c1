"""The fleet projection: folds verified ledger records into the three read models.

One eventsourcing `Projection` feeds all three views (version history,
last-good, fleet state) from one `FleetHistory` per fleet, so they always agree
with each other and with the rules the rollback command uses. Records are
applied in batches: each batch is checked record by record, folded in memory,
and written as one transaction together with its tracking position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from ledger.chain import GENESIS_PREV
from ledger.errors import Fault, FaultCheck, VerificationError
from ledger.events import stored_schema_error
from ledger.rules import (
    FleetHistory,
    MalformedRecordError,
    fleet_view,
    last_good,
    version_view,
)
from ledger.store import FLEET_PREFIX, SealedRecord
from projections.integrity import checked_record
from projections.views import FleetUpdate, LedgerViews, VersionRow, ViewsDamagedError

_PREFIX_LENGTH = len(FLEET_PREFIX)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def load_state(views: LedgerViews, fleet: str) -> FleetHistory | None:
    """A fleet's rules state as the views last stored it (None for an unknown fleet)."""
    stored = views.rules_state(fleet)
    if stored is None:
        return None
    core, versions = stored
    try:
        data = orjson.loads(core)
        data["versions"] = [orjson.loads(v) for v in versions]
        return FleetHistory.from_dict(data)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise ViewsDamagedError(f"the stored state of fleet {fleet!r} is unreadable ({exc})") from None


def fleet_update(state: FleetHistory) -> FleetUpdate:
    """The rows a fleet's views need after its state changed."""
    rows = []
    for name in sorted(state.take_dirty()):
        view = version_view(state, name)
        completed = view["completed"]
        rows.append(VersionRow(name, view["order"], view["status"], view["good"],
                               completed["seq"] if completed is not None else 0, _json(view)))
    newest = last_good(state)
    target = last_good(state, leaving=state.current) if state.current is not None else newest
    flight = state.in_flight.to_dict() if state.in_flight is not None else None
    header = {"head_seq": state.head_seq, "head_timestamp": state.head_timestamp,
              "current": state.current, "in_flight": flight,
              "outside_decisions_not_acted_on": {"count": state.unacted, "seqs": list(state.unacted_seqs)}}
    return FleetUpdate(
        fleet=state.fleet,
        head_seq=state.head_seq,
        head_hash=state.head_hash or GENESIS_PREV,
        current=state.current,
        header=_json(header),
        rules_state=_json(state.core_dict()),
        last_good=_json({
            "head_seq": state.head_seq,
            "current": state.current,
            "last_good": newest.to_dict() if newest is not None else None,
            "rollback_target": target.to_dict() if target is not None else None,
        }),
        fleet_state=_json(fleet_view(state)),
        versions=rows,
    )


class FleetProjection(Projection[LedgerViews]):
    """Keeps the views of every fleet up to date, one checked record at a time."""

    name = "fleet_views"

    def __init__(self, view: LedgerViews):
        super().__init__(view)
        self._states: dict[str, FleetHistory] = {}
        #: the tracking position the in-memory states are consistent with
        self.position: int | None = None

    def forget(self) -> None:
        """Drop the in-memory states: the next batch reloads them from the views."""
        self._states.clear()
        self.position = None

    def follow(self, position: int) -> None:
        """Keep the in-memory states only if they are at the views' stored `position`."""
        if self.position != position:
            self._states.clear()
            self.position = position

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([domain_event], tracking)

    def process_batch(self, events: Sequence[SealedRecord], tracking: Tracking) -> int:
        """Check and fold `events` (in notification order), then write them with `tracking`.

        Records of other streams (the key chain) only move the tracking position.
        On any error nothing is written and the touched states are dropped.
        Returns how many fleet records were applied.
        """
        touched: dict[str, FleetHistory] = {}
        applied = 0
        try:
            for event in events:
                stream = event.originator_id
                if not stream.startswith(FLEET_PREFIX):
                    continue
                fleet = stream[_PREFIX_LENGTH:]
                state = touched.get(fleet)
                if state is None:
                    state = touched[fleet] = self._state(fleet)
                record = checked_record(fleet, event.originator_version, event.data,
                                        state.head_seq, state.head_hash)
                try:
                    state.apply(record)
                except MalformedRecordError as exc:
                    detail = stored_schema_error(record) or str(exc)
                    raise VerificationError(Fault(fleet, record["seq"], FaultCheck.SCHEMA, "a valid record",
                                                  "invalid record", detail)) from None
                applied += 1
            self.view.write([fleet_update(state) for state in touched.values()], tracking)
        except BaseException:
            for fleet in touched:
                self._states.pop(fleet, None)
            raise
        self.position = tracking.notification_id
        return applied

    def _state(self, fleet: str) -> FleetHistory:
        state = self._states.get(fleet)
        if state is None:
            state = load_state(self.view, fleet) or FleetHistory(fleet)
            self._states[fleet] = state
        return state
