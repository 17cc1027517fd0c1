"""A reporter's signed worker facts, as the fleet's drivers and the OpenRTC sink write them.

In an enforced ledger a fact about a worker may be signed by an actor with the
`reporter` role bound to that worker's id (`actors add --role reporter --worker
PATTERN`); the gate (`FleetService.report`) checks the signature and the binding,
and a fact for a worker outside the binding is refused and recorded as such,
never appended as proven. The writers that report on workers (the local
driver's worker processes, the executor, the OpenRTC sink and importer) take a
reporter here and then sign every worker fact they write, in the reporter's
name: the record's `actor` is the reporter who vouches for it. Without one they
append facts unsigned, as any writer may.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.actors import ActorSigner, load_actor_signer
from ledger.api import Ledger
from ledger.errors import InputError
from ledger.gate import FleetService, Outcome
from ledger.rules import FleetHistory


@dataclass(frozen=True)
class ReporterKey:
    """A reporter by name and the path of its private key: what a worker process is handed
    (the path on its command line, never the key itself)."""

    name: str
    path: Path

    def load(self) -> ActorSigner:
        """The signer; `KeyFileError` (exit 2) if the file holds no usable private key."""
        return load_actor_signer(self.path, self.name)

    def argv(self) -> list[str]:
        return ["--reporter", self.name, "--reporter-key", str(self.path)]


def reporter_key(name: str | None, path: str | None) -> ReporterKey | None:
    """The reporter a configuration names: both a name and a key path, or neither."""
    if not path and not name:
        return None
    if not path:
        raise InputError(f"--reporter {name} needs the reporter's private key (--reporter-key or "
                         "LEDGER_REPORTER_KEY)")
    if not name:
        raise InputError("--reporter-key needs the reporter's actor name (--reporter or LEDGER_REPORTER)")
    return ReporterKey(name, Path(path))


class _NoFleetState:
    """The state source of a gate that only checks signed facts: facts read no fleet state."""

    def _none(self, fleet: str) -> FleetHistory:
        raise InputError(f"a reporter's gate decides no commands (fleet {fleet})")

    def fleet_state(self, fleet: str) -> FleetHistory:
        return self._none(fleet)

    def decision_state(self, fleet: str, target: str | None = None) -> FleetHistory:
        return self._none(fleet)

    def command_state(self, fleet: str, versions: Sequence[str]) -> FleetHistory:
        return self._none(fleet)


def fact_gate(ledger: Ledger) -> FleetService:
    """A gate over `ledger` for signed facts only (a worker process has no projections)."""
    return FleetService(ledger, _NoFleetState())


def report_fact(service: FleetService, fleet: str, body: Mapping[str, Any],
                reporter: ActorSigner) -> Outcome:
    """Write `body` signed by `reporter`, in its name; the gate records a refusal if it fails a check
    (`Outcome.check`), for instance `reporter_unbound` for a worker outside the reporter's binding."""
    return service.report(fleet, {**body, "actor": reporter.name}, signer=reporter)
