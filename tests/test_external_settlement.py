"""How a rollback the platform carries out is settled: `external_settlement`, a pure function of
the fleet's state and the time, which the driver and the OpenRTC sink submit through the gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.decide import Complete, Fail, Meta, external_settlement
from ledger.model import MoveKind
from ledger.rules import fold
from tests.fleet_cases import A, exited, released, rollback, start
from tests.test_rules import records

STARTED = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)  # the rollback's record is seq 6


def state_after(*extra: Any, external: bool = True, timeout: int | None = 60) -> Any:
    moved = {**rollback("v1", "v2")}
    if external:
        moved["external"] = True
    if timeout is not None:
        moved["drain_timeout_s"] = timeout
    steps = [*released("v1", "v2"), (A, start("w9", "v2")), (A, moved), *((A, body) for body in extra)]
    return fold(A, records(steps, A))


def test_nothing_to_settle_without_an_external_rollback_in_flight() -> None:
    later = STARTED + timedelta(days=1)
    assert external_settlement(fold(A, records(released("v1"), A)), "watch", later) is None
    assert external_settlement(state_after(external=False), "watch", later) is None


def test_a_clean_fleet_completes_the_rollback() -> None:
    state = state_after(exited("w9", "v2"), start("w1", "v1"))
    assert external_settlement(state, "watch", STARTED) == Complete(
        "v1", Meta("watch", "fleet clean: every live worker runs the target"), MoveKind.ROLLBACK)


@pytest.mark.parametrize(("extra", "left"), [
    pytest.param((), "w9", id="bad-version-still-live"),
    pytest.param((exited("w9", "v2"),), "no live worker of v1 reported", id="no-worker-at-all"),
])
def test_an_unclean_fleet_fails_the_rollback_only_after_its_drain_timeout(extra: tuple[Any, ...],
                                                                          left: str) -> None:
    state = state_after(*extra)
    assert external_settlement(state, "watch", STARTED + timedelta(seconds=60)) is None
    assert external_settlement(state, "watch", STARTED + timedelta(seconds=61)) == Fail(
        "v1", Meta("watch", f"fleet not clean 60s after the rollback: {left}"), MoveKind.ROLLBACK)


def test_without_a_stated_timeout_the_default_applies() -> None:
    state = state_after(timeout=None)
    assert external_settlement(state, "watch", STARTED + timedelta(seconds=120)) is None
    failed = external_settlement(state, "watch", STARTED + timedelta(seconds=121))
    assert isinstance(failed, Fail) and failed.meta.reason == "fleet not clean 120s after the rollback: w9"
