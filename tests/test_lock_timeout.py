"""A writer that must not hold up its caller opens the ledger with a short lock wait.

`Ledger.open(..., lock_timeout_s=...)` shortens how long a SQLite write waits
for another writer's lock, on the connections already open and on later ones,
so a blocked write fails as a storage fault in about that time, not in 30 s.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from ledger import Ledger, StorageError
from ledger import commands as build
from tests.conftest import Env


def test_a_short_lock_wait_gives_up_soon_and_the_ledger_works_once_the_lock_is_gone(sqlite_env: Env) -> None:
    with Ledger.open(sqlite_env.db, sqlite_env.key, lock_timeout_s=0.2) as ledger:
        ledger.append("prod", build.worker_start("w1", "v1", "platform"))  # a connection is open now
        holder = sqlite3.connect(sqlite_env.db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(StorageError, match="storage fault"):
                ledger.append("prod", build.worker_start("w2", "v1", "platform"))
            assert time.monotonic() - started < 10  # the default wait is 30 s
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        ledger.append("prod", build.worker_start("w3", "v1", "platform"))
        assert [r["worker_id"] for r in ledger.records("prod")] == ["w1", "w3"]


def test_the_ledger_says_where_it_lives_without_its_store(sqlite_env: Env) -> None:
    with Ledger.open(sqlite_env.db, sqlite_env.key) as ledger:
        assert (ledger.db, ledger.label) == (sqlite_env.db, sqlite_env.db)
        receipt = ledger.append("prod", build.worker_start("w1", "v1", "platform"))
        followed = ledger.follow("prod")
        assert next(followed) == next(ledger.raw_records("prod"))
        assert receipt.seq == 1
