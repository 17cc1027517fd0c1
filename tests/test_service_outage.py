"""503 when storage is unreachable: a private PostgreSQL server (`scripts/postgres-up` in a
temporary directory) stopped under a running service. (Not restarted here: on a shared
machine its free port may meanwhile belong to someone else's server.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ledger import Ledger
from ledger import commands as build
from tests.conftest import ROOT, Env
from tests.service_support import Server, make_tokens


def _pg(action: str, directory: Path) -> str:
    done = subprocess.run([str(ROOT / "scripts" / f"postgres-{action}"), str(directory)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_storage_down_is_503_with_a_json_reason(tmp_path: Path) -> None:
    assert shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")), \
        "no PostgreSQL server binaries: scripts/setup installs Debian's package (as root)"
    cluster = tmp_path / "pg"
    url = _pg("up", cluster)
    try:
        env = Env(tmp_path, url, tmp_path / "ledger.key", "postgres")
        with Ledger.init(env.db, env.key, actor="test") as lg:
            lg.append("prod", build.worker_start("w1", "v1", "platform"))
        server = Server(env, make_tokens(tmp_path)).start()
        try:
            _pg("down", cluster)
            ready = server.get("/readyz")
            assert ready.status == 503 and ready.json()["status"] == "unavailable"
            down = server.get("/fleets/prod/feed", server.tokens.read)
            assert down.status == 503 and set(down.json()) == {"error", "request_id"}
        finally:
            server.stop()
    finally:
        _pg("down", cluster)
