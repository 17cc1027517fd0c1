"""Remote pools through the service: real `openrtc[livekit]` pools in another process report
with `RemoteAuditSink` and drain on the service's stream; the sink spools while the
service is down and flushes in order, and the service adds no record twice."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openrtc.core.audit import AuditLog

from ledger import commands as build
from ledger.service.client import RemoteAuditSink
from tests.conftest import ROOT, Env
from tests.service_support import Server, make_tokens

FLEET = "prod"
CHAIN = ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    srv = Server(env, make_tokens(env.dir)).start()
    for body in ({"command": "deploy", "version": "v1", "actor": "ci"},
                 {"command": "complete", "version": "v1", "actor": "ci", "confirm": "smoke test"}):
        assert srv.command(FLEET, body).status == 201
    yield srv
    srv.stop()


def feed(server: Server) -> list[dict[str, Any]]:
    return server.get(f"/fleets/{FLEET}/feed", server.tokens.read).lines()


def wait_for(server: Server, found: Any, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = feed(server)
        if found(records):
            return records
        time.sleep(0.1)
    raise AssertionError(feed(server))


def identities(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["source_instance"], r["source_digest"]) for r in records if "source_digest" in r]


def test_a_remote_pool_reports_and_drains_through_the_service(server: Server, env: Env) -> None:
    assert server.command(FLEET, {"command": "deploy", "version": "v2", "actor": "ci"}).status == 201
    pool = subprocess.Popen(
        [sys.executable, "-m", "tests.service_pool_process", server.url, server.tokens.both, FLEET,
         str(env.dir / "spool"), "w-v2", "v2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert pool.stdout is not None
        assert pool.stdout.readline().strip() == b"started", pool.stderr.read() if pool.stderr else b""
        wait_for(server, lambda rs: any(r["event"] == "worker.started" and r.get("worker_id") == "w-v2"
                                        for r in rs))
        assert server.command(FLEET, {"command": "complete", "version": "v2", "actor": "ci"}).status == 201
        rollback = server.command(FLEET, {"command": "rollback", "actor": "on-call",
                                          "reason": "v2 drops calls"})
        assert rollback.status == 201 and rollback.json()["plan"]["drain_workers"] == ["w-v2"]
        # the drain order, recorded by whoever carries the rollback out; the pool host acts on it
        order = server.call("POST", f"/fleets/{FLEET}/reports", server.tokens.write,
                            build.worker_drain("w-v2", "v2", "fleet-driver"))
        assert order.status == 201
        out, err = pool.communicate(timeout=120)
        assert pool.returncode == 0 and out.strip() == b"exited", err.decode()[-3000:]
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    records = feed(server)
    pools = [r for r in records if r.get("source") == "openrtc"]
    assert pools[0]["event"] == "worker.started"
    assert any(r["event"] == "deployment.drain_started" for r in pools)  # the pool's own drain event
    exited = [r for r in pools if r["event"] == "worker.exited"]
    assert len(exited) == 1 and exited[0]["worker_id"] == "w-v2" and exited[0]["active_sessions"] == 0
    assert len(identities(records)) == len(set(identities(records)))
    assert [p["source_seq"] for p in pools] == sorted(p["source_seq"] for p in pools)
    fleet = server.get(f"/fleets/{FLEET}/fleet", server.tokens.read).json()
    assert not any(w["worker_id"] == "w-v2" for w in fleet["workers"])
    done = server.command(FLEET, {"command": "complete", "version": "v1", "actor": "on-call",
                                  "confirm": "v1 pools started by the platform"})
    assert done.status == 201, done.body


def test_the_remote_sink_spools_while_the_service_is_down_and_adds_nothing_twice(
        server: Server, env: Env) -> None:
    sink = RemoteAuditSink(server.url, server.tokens.write, FLEET, source="pool-a",
                           spool_dir=env.dir / "spool", retry_s=(0.1, 0.3), timeout=2)
    log = AuditLog(sink=sink)
    log.emit("worker.started", target="pool-a", version="v1", worker_id="pool-a")
    assert sink.flush(10)
    server.stop()
    started = time.monotonic()
    for n in range(1, 6):
        log.emit("worker.sessions", target="pool-a", version="v1", worker_id="pool-a", active_sessions=n)
    assert time.monotonic() - started < 0.5  # the pool never waits for the service
    deadline = time.monotonic() + 10
    while sink.stats["spooled"] < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.stats["spooled"] == 5 and sink.pending
    server.start()
    assert sink.flush(20) and not sink.pending
    assert sink.close(10)
    records = feed(server)
    sessions = [r["active_sessions"] for r in records if r["event"] == "worker.sessions"]
    assert sessions == [1, 2, 3, 4, 5]  # in order, once each
    # a retried post (its answer lost) adds nothing: the service checks the identities
    mapped = [{k: v for k, v in r.items() if k not in CHAIN} for r in records if "source_digest" in r]
    again = server.call("POST", f"/fleets/{FLEET}/reports?dedup_after=0", server.tokens.write, mapped)
    assert again.status == 201 and again.json() == {**again.json(), "receipts": [], "duplicates": 6}
    assert len(feed(server)) == len(records)
