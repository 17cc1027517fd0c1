"""Which fleet driver carries recorded moves out, chosen by configuration.

- `local`: simulated worker processes on this machine (`ledger.sim`), for the
  demo and for trying the ledger out; its settings (call arrival, length,
  failure rate per version) come from the driver config file.
- `openrtc`: real OpenRTC `AgentPool`s run in this process, built by the
  application's own pool factory (`{"pool_factory": "package.module:function"}`
  in the driver config file); each pool reports through its own ledger sink.
- `none`: the platform moves the workers itself; the ledger records the
  decision and watches the fleet's reports to settle it.

A driver's module is imported only when it is chosen, so production commands
never load the simulator or livekit unless told to.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ledger.errors import InputError
from ledger.fleet import FleetDriver
from ledger.reporter import ReporterKey


class DriverKind(StrEnum):
    LOCAL = "local"
    OPENRTC = "openrtc"
    NONE = "none"


@dataclass(frozen=True)
class DriverSettings:
    """The driver the configuration names, and its settings file's content."""

    kind: DriverKind = DriverKind.LOCAL
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, kind: str, config_file: str | None) -> DriverSettings:
        try:
            chosen = DriverKind(kind)
        except ValueError:
            raise InputError(f"--driver takes local, openrtc or none, not {kind!r}") from None
        options: dict[str, Any] = {}
        if config_file:
            try:
                loaded = json.loads(Path(config_file).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read the driver config {config_file}: {exc}") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"the driver config {config_file} is not JSON: {exc}") from None
            if not isinstance(loaded, dict):
                raise InputError(f"the driver config {config_file} must hold a JSON object")
            options = loaded
        return cls(chosen, options)


def open_driver(settings: DriverSettings, *, db: str, key: str, fleet: str,
                rundir: Path | None, reporter: ReporterKey | None = None) -> FleetDriver | None:
    """The driver `settings` names, ready to start and drain workers; None for `none`.

    With a `reporter`, the workers it starts (local) or the sinks of its pools
    (openrtc) sign the worker facts they write (`ledger.reporter`).
    """
    if settings.kind is DriverKind.NONE:
        return None
    if settings.kind is DriverKind.LOCAL:
        from ledger.sim.local_driver import LocalProcessDriver, WorkerSettings, default_rundir

        return LocalProcessDriver(db, key, fleet, rundir or default_rundir(db, key),
                                  WorkerSettings.from_options(settings.options), reporter=reporter)
    from ledger.openrtc.driver import OpenRTCPoolDriver
    from ledger.openrtc.sink import LedgerAuditSink

    factory = _pool_factory(settings.options.get("pool_factory"))
    signer = reporter.load() if reporter is not None else None
    return OpenRTCPoolDriver(factory, sink_for=lambda worker_id: LedgerAuditSink(
        db, key, fleet, source=worker_id, reporter=signer))


def _pool_factory(spec: object) -> Any:
    """`package.module:function` -> the function, which builds a pool: (worker_id, version, sink)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise InputError('--driver openrtc needs {"pool_factory": "package.module:function"} in '
                         "--driver-config")
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot load the pool factory {spec}: {exc}") from None
    if not callable(factory):
        raise InputError(f"the pool factory {spec} is not callable")
    return factory
