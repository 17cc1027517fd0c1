"""The ledger as the audit backend and drain controller of OpenRTC `AgentPool`s.

- `LedgerAuditSink` (`sink`): `AgentPool(audit_sink=...)`; every audit event
  becomes a signed ledger record, spooled durably while the ledger is down.
- `import_files` (`importer`, CLI `ledger import-openrtc`): existing OpenRTC
  audit logs, imported once, with lost events recorded as `audit.gap`.
- `OpenRTCPoolDriver` (`driver`): a fleet driver whose workers are real pools,
  so a rollback recorded in the ledger drains them.
- `LedgerMembership` (`membership`): OpenRTC's signed membership checked
  against the ledger's current version; refusals recorded as `worker.rejected`.

Only `driver` and `membership` import `openrtc` (about a second: it loads
livekit); they are loaded on first use, so the `ledger` command and the sink
stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ledger.openrtc.importer import ImportReport, import_files
from ledger.openrtc.mapping import TRUSTED_EVENTS
from ledger.openrtc.sink import LedgerAuditSink

if TYPE_CHECKING:
    from ledger.openrtc.driver import OpenRTCPoolDriver
    from ledger.openrtc.membership import LedgerMembership

__all__ = [
    "TRUSTED_EVENTS",
    "ImportReport",
    "LedgerAuditSink",
    "LedgerMembership",
    "OpenRTCPoolDriver",
    "import_files",
]

_LAZY = {"OpenRTCPoolDriver": "ledger.openrtc.driver", "LedgerMembership": "ledger.openrtc.membership"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger.openrtc' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
