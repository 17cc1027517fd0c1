"""One function that opens the application: the ledger, its views and the gate, on one store.

Every entry point that decides anything (the CLI, a sink, a service) needs the
same three parts wired the same way: the `Ledger` (the chains), the
`Projections` (the fleet's state at the head, read by the gate), and the
`FleetService` (the gate itself). `open_app` opens them over one store and
`App.close` closes them together, so no caller wires them by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ledger.actors import ActorSigner
from ledger.api import Ledger
from ledger.gate import FleetService
from projections.runner import Projections


@dataclass
class App:
    """The ledger, its views and the gate, sharing one store."""

    ledger: Ledger
    views: Projections
    service: FleetService

    def close(self) -> None:
        try:
            self.views.close()
        finally:
            self.ledger.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_app(db: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None, *,
             projections: str | os.PathLike[str] | None = None,
             notice: Callable[[str], None] | None = None, signer: ActorSigner | None = None) -> App:
    """Open a writable ledger at `db` with signing key `key`, its views and its gate.

    `signer` signs this process's commands as its actor (needed once the policy is enforced).
    """
    ledger = Ledger.open(db, key)
    try:
        views = Projections.of(ledger, projections, notice=notice)
    except BaseException:
        ledger.close()
        raise
    return App(ledger, views, FleetService(ledger, views, signer))
