"""A process that dies hard with events in its spool (run by tests/test_openrtc.py).

    python tests/openrtc_sink_crash.py DB KEY SPOOL_DIR COUNT

It holds the ledger's write lock from a second connection, emits COUNT events
through OpenRTC's real `AuditLog` into a `LedgerAuditSink`, waits until they
are all spooled, prints `spooled`, and exits with `os._exit`: no `close()`,
no atexit handler, exactly like a killed process.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time


def main() -> None:
    db, key, spool_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    from openrtc.core.audit import AuditLog

    from ledger.openrtc.sink import LedgerAuditSink

    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    sink = LedgerAuditSink(db, key, "prod", source="pool-crash", spool_dir=spool_dir,
                           lock_timeout_s=0.05, retry_s=(60.0, 60.0))
    log = AuditLog(sink=sink)
    for _ in range(count):
        log.emit("deployment.drain_started", target="worker", version="v1")
    deadline = time.monotonic() + 30
    while sink.stats["spooled"] < count and time.monotonic() < deadline:
        time.sleep(0.01)
    print("spooled" if sink.stats["spooled"] == count else f"only {sink.stats}", flush=True)
    os._exit(9)


if __name__ == "__main__":
    main()
