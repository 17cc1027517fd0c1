"""The OpenRTC integration against the real `openrtc` package (no mocks of it).

Real `AgentPool`s run in-process without a LiveKit server
(`pool.server.run(unregistered=True)`), real `AuditLog`s emit, real
`MembershipVerifier`s verify; the ledger is a real SQLite file, made
unwritable by holding its write lock from another connection
(`BEGIN EXCLUSIVE`: file permissions do not stop root).

Tests that take `env` run on SQLite and on PostgreSQL; those that hold
SQLite's write lock take `sqlite_env`; PostgreSQL's "unreachable" is a URL
with a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from livekit.agents import Agent
from openrtc import AgentPool
from openrtc.core.audit import AuditLog
from openrtc.core.membership import MembershipError, sign_membership

from ledger import commands as build
from ledger.drive import Executor
from ledger.gate import Accepted, FleetService, Meta, Rollback
from ledger.model import Moment
from ledger.openrtc.driver import OpenRTCPoolDriver
from ledger.openrtc.importer import UNNAMED
from ledger.openrtc.membership import LedgerMembership
from ledger.openrtc.sink import LedgerAuditSink
from ledger.rollback import RollbackRequest
from ledger.tracking import Tracker
from projections.runner import Projections
from tests.conftest import CliResult, Env, run_cli, submit

FLEET = "prod"
CHAIN = ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")


class EchoAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="noop")


def records(env: Env) -> list[dict[str, Any]]:
    with env.open(writable=False) as lg:
        return list(lg.records(FLEET))


def verified_count(env: Env) -> int:
    with env.open(writable=False) as lg:
        return lg.verify(fleets=[FLEET]).chains[0].count


def make_sink(env: Env, source: str, **options: Any) -> LedgerAuditSink:
    return LedgerAuditSink(env.db, env.key, FLEET, source=source, spool_dir=env.dir / "spool", **options)


def run_pool(version: str, sink: Callable[[Any], None],
             body: Callable[[AgentPool], Awaitable[None]]) -> None:
    """Run a real pool in this thread's own event loop, do `body`, shut it down cleanly."""

    async def scenario() -> None:
        pool = AgentPool(agent=EchoAgent, deployment_version=version, audit_sink=sink, port=0,
                         enable_introspection=False)
        ready = asyncio.Event()
        pool.server.on("worker_started", lambda *_: ready.set())
        task = asyncio.create_task(pool.server.run(unregistered=True))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            await body(pool)
        finally:
            await pool.server.aclose()
            await asyncio.wait_for(task, 30)

    asyncio.run(scenario())


def spooled_bodies(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def seed_versions(env: Env) -> None:
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci"))
        submit(lg, FLEET, build.complete("v1", "ci"))


# -- the sink with a real pool ---------------------------------------------------------------------


def test_a_real_pools_drain_is_a_signed_record_with_its_source(env: Env) -> None:
    seed_versions(env)
    sink = make_sink(env, "pool-a")
    seen: dict[str, Any] = {}

    async def drain_twice(pool: AgentPool) -> None:
        pool.begin_drain()
        pool.begin_drain()  # OpenRTC emits a second event: recorded faithfully
        # a spoofed core field in the extra fields must not reach the ledger as truth
        pool.audit_log.emit("worker.sessions", version="v1", worker_id="pool-a", active_sessions=0,
                            seq=999, event="deployment.completed", timestamp=0.5, hash="0" * 64)
        snapshot = pool.runtime_snapshot()
        seen.update(version=snapshot.deployment_version, draining=snapshot.draining)

    before = time.time()
    run_pool("v1", sink, drain_twice)
    assert sink.close(30)
    assert seen == {"version": "v1", "draining": True}

    drains = [r for r in records(env) if r["event"] == "deployment.drain_started"]
    assert [r["source_seq"] for r in drains] == [1, 2]
    for record in drains:
        assert record["version"] == "v1" and record["worker_id"] == "pool-a"
        assert record["result"] == "success" and record["source_result"] == "ok"
        assert record["source"] == "openrtc" and record["source_worker"] == "pool-a"
        assert record["source_instance"] == sink.instance
        assert record["actor"] == "system" and record["target"] == "worker"
        assert len(record["sig"]) == 88 and record["kid"]
        stamp = time.mktime(time.strptime(record["source_timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert abs(stamp - time.timezone - before) < 60  # RFC 3339 UTC, not a float

    sessions = next(r for r in records(env) if r["event"] == "worker.sessions")
    assert sessions["source_seq"] == 3 and sessions["seq"] != 999
    assert sessions["source_fields"] == {"seq": 999, "event": "deployment.completed",
                                         "timestamp": "0.5", "hash": "0" * 64}
    assert verified_count(env) == 2 + 3

    with Projections.open(env.db) as views:  # two drain records, one fact
        state = views.state(FLEET)
        assert state.workers["pool-a"].draining
        assert state.workers["pool-a"].drain_started == Moment(drains[0]["seq"], drains[0]["timestamp"])
        assert state.versions["v1"].worker_drains == 1


def test_seq_restarting_in_a_new_process_is_recorded_and_counted_once(env: Env) -> None:
    seed_versions(env)
    first, second = make_sink(env, "pool-a"), None
    AuditLog(sink=first).emit("deployment.drain_started", target="worker", version="v1")
    assert first.close(10)
    second = make_sink(env, "pool-a")  # the pool's process restarted: a new AuditLog, seq 1 again
    AuditLog(sink=second).emit("deployment.drain_started", target="worker", version="v1")
    assert second.close(10)

    drains = [r for r in records(env) if r["event"] == "deployment.drain_started"]
    assert [r["source_seq"] for r in drains] == [1, 1]
    assert drains[0]["source_instance"] != drains[1]["source_instance"]
    with Projections.open(env.db) as views:
        assert views.state(FLEET).versions["v1"].worker_drains == 1


def test_a_locked_ledger_spools_then_flushes_in_order_nothing_lost_nothing_doubled(sqlite_env: Env) -> None:
    env = sqlite_env  # the write lock is SQLite's
    sink = make_sink(env, "pool-b", lock_timeout_s=0.05, retry_s=(30.0, 30.0))
    lock = sqlite3.connect(env.db, isolation_level=None)
    timings: list[float] = []
    flushed_while_locked: list[bool] = []

    async def emit_while_locked(pool: AgentPool) -> None:
        lock.execute("BEGIN EXCLUSIVE")
        for n in range(40):
            start = time.perf_counter()
            if n % 10 == 0:
                pool.begin_drain()
            else:
                pool.audit_log.emit("worker.sessions", version="v2", active_sessions=n)
            timings.append(time.perf_counter() - start)
        flushed_while_locked.append(sink.flush(2))
        lock.execute("ROLLBACK")
        # after the ledger is back but before any flush: queued behind the spool, not ahead
        pool.audit_log.emit("worker.sessions", version="v2", active_sessions=0)

    run_pool("v2", sink, emit_while_locked)
    lock.close()
    # the pool never waited for the locked ledger (waiting would cost >= 0.05 s per emit)
    assert sorted(timings)[len(timings) // 2] < 0.005 and sum(timings) < 0.5
    assert flushed_while_locked == [False]
    spool = env.dir / "spool" / "prod.pool-b.spool"
    assert sink.stats["spooled"] >= 40
    assert sink.flush(30)
    assert spool.stat().st_size == 0  # truncated only after the ledger acknowledged everything
    assert sink.close(10)

    got = records(env)
    assert [r["source_seq"] for r in got] == list(range(1, 42))  # all, once each, in order
    assert len({r["source_digest"] for r in got}) == 41
    assert sum(r["event"] == "deployment.drain_started" for r in got) == 4
    assert verified_count(env) == 41


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable(env: Env) -> str:
    """The same ledger as it looks while it is down: a file that is not there, a port nobody serves."""
    if env.backend == "sqlite":
        return str(env.dir / "unmounted" / "ledger.db")
    parts = urlsplit(env.db)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{free_port()}")))


def down_sink(env: Env, source: str) -> LedgerAuditSink:
    return LedgerAuditSink(unreachable(env), env.key, FLEET, source=source, spool_dir=env.dir / "spool",
                           retry_s=(30.0, 30.0))


def test_an_unreachable_ledger_spools_and_the_next_sink_flushes(env: Env) -> None:
    down = down_sink(env, "pool-u")
    log = AuditLog(sink=down)
    for _ in range(5):
        log.emit("deployment.drain_started", target="worker", version="v1")
    assert not down.close(5)
    assert len(spooled_bodies(env.dir / "spool" / "prod.pool-u.spool")) == 5
    up = make_sink(env, "pool-u")  # the ledger is back (the same spool)
    assert up.flush(20) and up.close(10)
    assert [r["source_seq"] for r in records(env)] == [1, 2, 3, 4, 5]
    assert verified_count(env) == 5


# -- crashes ------------------------------------------------------------------------------------------


def test_a_crash_between_commit_and_acknowledgement_adds_nothing_twice(sqlite_env: Env) -> None:
    env = sqlite_env  # the write lock is SQLite's
    sink = make_sink(env, "pool-c", lock_timeout_s=0.05, retry_s=(30.0, 30.0))
    lock = sqlite3.connect(env.db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    log = AuditLog(sink=sink)
    for _ in range(10):
        log.emit("deployment.drain_started", target="worker", version="v1")
    assert not sink.close(2)  # gone before any flush could succeed
    lock.execute("ROLLBACK")
    lock.close()
    spool = env.dir / "spool" / "prod.pool-c.spool"
    bodies = spooled_bodies(spool)
    assert len(bodies) == 10
    # The state a crash leaves when a flush committed its first records and died before
    # recording the acknowledgement: the ledger holds them, the spool still lists them.
    with env.open() as lg:
        lg.append_many(FLEET, bodies[:4])

    again = make_sink(env, "pool-c")  # the restarted process
    assert again.flush(10)
    assert again.stats["duplicates"] == 4 and again.stats["flushed"] == 6
    assert again.close(10)
    got = records(env)
    assert [r["source_seq"] for r in got] == list(range(1, 11))
    assert verified_count(env) == 10


def test_events_spooled_by_a_killed_process_are_flushed_by_the_next_one(sqlite_env: Env) -> None:
    env = sqlite_env  # the write lock is SQLite's
    helper = Path(__file__).with_name("openrtc_sink_crash.py")
    done = subprocess.run([sys.executable, str(helper), str(env.db), str(env.key),
                           str(env.dir / "spool"), "7"], capture_output=True, text=True, timeout=90)
    assert done.returncode == 9 and done.stdout.strip() == "spooled", done.stderr[-2000:]
    assert records(env) == []
    sink = make_sink(env, "pool-crash")
    assert sink.flush(10)
    assert sink.close(10)
    got = records(env)
    assert [r["source_seq"] for r in got] == list(range(1, 8))
    assert len({r["source_instance"] for r in got}) == 1 and got[0]["source_instance"] != sink.instance
    assert verified_count(env) == 7


def test_the_sink_never_raises_and_keeps_what_the_ledger_refuses(env: Env) -> None:
    sink = make_sink(env, "pool-d")
    sink(object())  # not an AuditEvent at all
    AuditLog(sink=sink).emit("deployment.drain_started", target="worker")  # an untagged pool: no version
    AuditLog(sink=sink).emit("deployment.completed", version="v9")  # a fleet decision from a pool
    assert sink.close(10)
    rejected = (env.dir / "spool" / "prod.pool-d.rejected").read_text().splitlines()
    assert len(rejected) == 1 and "has no attribute" in json.loads(rejected[0])["error"]
    kept = records(env)
    assert [r["event"] for r in kept] == ["audit.external", "audit.external"]
    assert kept[0]["source_event"] == "deployment.drain_started" and "version" in kept[0]["reason"]
    assert kept[1]["source_event"] == "deployment.completed" and kept[1]["version"] == "v9"
    with Projections.open(env.db) as views:  # kept, not acted on
        state = views.state(FLEET)
        assert state.current is None and state.workers == {} and state.versions == {}


# -- import ---------------------------------------------------------------------------------------------


def run_import(capsys: pytest.CaptureFixture[str], env: Env, *argv: str) -> CliResult:
    """`ledger import-openrtc` through the real CLI, in-process."""
    return run_cli(capsys, "import-openrtc", *argv, *env.args(), "--fleet", FLEET)


Emit = tuple[str, dict[str, Any]]


def write_audit_log(path: Path, processes: list[list[Emit]]) -> None:
    """Real `openrtc.audit` logger lines (OpenRTC's default sink) with a typical prefix."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    logger = logging.getLogger("openrtc.audit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for emits in processes:
            log = AuditLog()  # one per process: seq starts at 1
            for event_type, fields in emits:
                log.emit(event_type, **fields)
                logging.getLogger("openrtc").info("something else the application logs")
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)


def drop_lines(path: Path, *needles: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not any(n in line for n in needles)))


RUN_1: list[Emit] = [
    ("worker.started", {"target": "pool-a", "version": "v1"}),
    *[("worker.sessions", {"version": "v1", "active_sessions": n}) for n in (1, 2, 3)],
    ("deployment.drain_started", {"target": "worker", "version": "v1"}),
    ("worker.exited", {"version": "v1", "active_sessions": 0}),
]
RUN_2: list[Emit] = [
    ("worker.started", {"target": "pool-a", "version": "v1"}),
    ("deployment.drain_started", {"target": "worker", "version": "v1"}),
]


def test_import_records_events_and_gaps_and_a_reimport_adds_nothing(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    log = env.dir / "app.log"
    write_audit_log(log, [RUN_1, RUN_2])
    drop_lines(log, '"seq": 3,', '"seq": 4,')  # lost lines: seq 3 and 4 of the first process

    done = run_import(capsys, env, str(log), "--worker", "pool-a")
    assert done.code == 0, done.err
    assert "imported 6 record(s) and 1 gap record(s)" in done.out
    assert "seq 3..4 missing (2 event(s) lost)" in done.err
    got = records(env)
    assert [r["event"] for r in got] == [
        "worker.started", "worker.sessions", "audit.gap", "deployment.drain_started", "worker.exited",
        "worker.started", "deployment.drain_started"]
    gap = got[2]
    assert (gap["first_missing_seq"], gap["last_missing_seq"], gap["missing"]) == (3, 4, 2)
    assert gap["result"] == "failure" and gap["worker_id"] == "pool-a"
    assert gap["source_instance"] == got[0]["source_instance"] != got[5]["source_instance"]
    assert [r.get("source_seq") for r in got] == [1, 2, None, 5, 6, 1, 2]
    assert all(r["worker_id"] == "pool-a" for r in got)

    again = run_import(capsys, env, str(log), "--worker", "pool-a")
    assert again.code == 0, again.err
    assert "imported 0 record(s) and 0 gap record(s)" in again.out and "7 already in the ledger" in again.out
    assert len(records(env)) == 7
    assert verified_count(env) == 7


def test_a_bad_line_is_named_and_nothing_is_imported_unless_skip_bad(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    log = env.dir / "app.log"
    write_audit_log(log, [RUN_2])
    lines = log.read_text().splitlines(keepends=True)
    lines.insert(1, '2026-01-01 00:00:00,000 INFO [1] openrtc.audit: audit {"seq": 7, "timest\n')
    log.write_text("".join(lines))

    done = run_import(capsys, env, str(log), "--worker", "pool-a")
    assert done.code == 2
    assert f"{log} line 2: not valid JSON" in done.err and "nothing imported" in done.err
    assert records(env) == []

    done = run_import(capsys, env, str(log), "--worker", "pool-a", "--skip-bad")
    assert done.code == 0, done.err
    assert f"skipped bad line: {log} line 2" in done.err
    assert [r["event"] for r in records(env)] == ["worker.started", "deployment.drain_started"]


def test_import_of_json_lines_and_of_a_sink_spool_never_doubles(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    flat = env.dir / "audit.jsonl"
    with flat.open("w") as out:  # a custom sink that wrote OpenRTC's flat records
        log = AuditLog(sink=lambda event: out.write(json.dumps(event.to_dict()) + "\n"))
        log.emit("deployment.drain_started", target="worker", version="v1")
        log.emit("worker.rejected", target="w-9", result="rejected", version="v0", reason="old")
    done = run_import(capsys, env, str(flat))  # no --worker: kept, not acted on
    assert done.code == 0, done.err
    kept = records(env)
    assert [r["event"] for r in kept] == ["audit.external", "audit.external"]
    assert kept[0]["reason"] == UNNAMED and kept[1]["source_event"] == "worker.rejected"

    down = down_sink(env, "pool-e")
    log = AuditLog(sink=down)
    for _ in range(3):
        log.emit("deployment.drain_started", target="worker", version="v1")
    assert not down.close(5)
    spool = env.dir / "spool" / "prod.pool-e.spool"
    copy = env.dir / "copy-of-spool.jsonl"
    copy.write_bytes(spool.read_bytes())
    done = run_import(capsys, env, str(copy))  # someone imports the spool by hand...
    assert done.code == 0, done.err
    assert "3 sink record(s)" in done.out
    sink = make_sink(env, "pool-e")
    assert sink.flush(10) and sink.stats["duplicates"] == 3  # ...then a sink flushes it: no doubles
    assert sink.close(10)
    assert run_import(capsys, env, str(flat), str(copy)).out.count("imported 0 record(s)") == 1
    assert len(records(env)) == 5
    assert verified_count(env) == 5


# -- membership -----------------------------------------------------------------------------------------


def test_after_a_rollback_a_leftover_worker_is_refused_and_the_refusal_recorded(env: Env) -> None:
    with env.open() as lg:
        for version in ("v1", "v2"):
            submit(lg, FLEET, build.deploy(version, "ci"))
            submit(lg, FLEET, build.complete(version, "ci"))
    sink = make_sink(env, "membership")
    secrets = ["rotated-out", "s3cret"]
    now = time.time()
    with Projections.open(env.db) as views:
        gate = LedgerMembership(views, FLEET, secrets=secrets, audit=AuditLog(sink=sink))

        def token(version: str, worker: str) -> dict[str, Any]:
            signed = sign_membership(version=version, worker_id=worker, timestamp=now, secret="s3cret")
            return {"token": signed, "version": version, "worker_id": worker, "timestamp": now}

        gate.check(**token("v2", "w-old"))  # v2 is current: admitted
        with env.open() as lg, Projections.open(env.db) as planner:
            outcome = FleetService(lg, planner).submit(FLEET, Rollback(
                RollbackRequest(FLEET, "on-call", "v2 drops calls"), Meta("on-call", "v2 drops calls")))
        assert outcome.accepted
        assert gate.expected_version() == ("v1", 5)

        with pytest.raises(MembershipError, match="does not match the active deployment 'v1'"):
            gate.check(**token("v2", "w-old"))
        assert gate.admit(**token("v1", "w-new"))
        forged = token("v1", "w-forged") | {"token": "0" * 64}
        assert not gate.admit(**forged)
        assert sink.flush(10)

        rejected = [r for r in records(env) if r["event"] == "worker.rejected"]
        assert [(r["worker_id"], r["version"], r["result"]) for r in rejected] == [
            ("w-old", "v2", "rejected"), ("w-forged", "v1", "rejected")]
        assert "does not match the active deployment 'v1'" in rejected[0]["reason"]
        assert rejected[0]["source_fields"] == {"expected_version": "v1", "ledger_head_seq": 5}
        assert views.state(FLEET).workers_rejected == 2
    assert sink.close(10)
    assert verified_count(env) == 7


# -- the drain driver -------------------------------------------------------------------------------------


@pytest.fixture
def driver(env: Env) -> Iterator[OpenRTCPoolDriver]:
    def factory(worker_id: str, version: str, sink: LedgerAuditSink) -> AgentPool:
        return AgentPool(agent=EchoAgent, deployment_version=version, audit_sink=sink, port=0,
                         enable_introspection=False)

    driver = OpenRTCPoolDriver(factory, sink_for=lambda worker_id: make_sink(env, worker_id), poll_s=0.05)
    try:
        yield driver
    finally:
        driver.close()


def test_a_recorded_rollback_drains_a_real_pool(env: Env, driver: OpenRTCPoolDriver) -> None:
    seed_versions(env)
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v2", "ci", from_version="v1"))
    driver.start_worker("w-v2", "v2")
    assert driver.wait_started("w-v2", 60)
    deadline = time.monotonic() + 10
    while not any(r["event"] == "worker.started" for r in records(env)) and time.monotonic() < deadline:
        time.sleep(0.02)
    with env.open() as lg:
        submit(lg, FLEET, build.complete("v2", "ci"))

    with env.open() as lg, Projections.open(env.db) as views:
        outcome = FleetService(lg, views).submit(FLEET, Rollback(
            RollbackRequest(FLEET, "on-call", "v2 drops calls", drain_timeout_s=60),
            Meta("on-call", "v2 drops calls")))
        plan = outcome.decision.plan if isinstance(outcome.decision, Accepted) else None
        assert plan is not None and plan.drain_workers == ["w-v2"], (outcome, records(env))
        tracker = Tracker(str(env.db), "openrtc-test")
        try:
            result = Executor(FleetService(lg, views), driver, tracker, FLEET, poll_s=0.05).run_pending()
        finally:
            tracker.close()
        assert result == "completed", records(env)
        snapshot = driver.snapshot("w-v2")
        assert (snapshot.deployment_version, snapshot.draining, snapshot.active_sessions) == ("v2", True, 0)
        # its own worker.exited reached the ledger first; then the driver reports it gone
        assert driver.wait_exited("w-v2", 10) and not driver.is_alive("w-v2")
        (new_worker,) = plan.start_workers
        assert driver.is_alive(new_worker) and driver.snapshot(new_worker).deployment_version == "v1"
        fleet = views.fleet(FLEET)["summary"]
        assert fleet["clean"] and fleet["versions"] == {"v1": 1}
        assert views.state(FLEET).versions["v2"].worker_drains == 1

    drains = [r for r in records(env) if r["event"] == "deployment.drain_started"]
    assert [r["worker_id"] for r in drains] == ["w-v2", "w-v2"]  # the executor's, and the pool's own
    assert drains[0]["actor"] == "fleet-driver" and "source" not in drains[0]
    assert drains[1]["source"] == "openrtc" and drains[1]["source_worker"] == "w-v2"
    assert drains[1]["source_seq"] == 2  # after the pool's worker.started
    events = [r["event"] for r in records(env)]
    assert events[-1] == "rollback.completed"
    assert verified_count(env) == len(events)


# -- the benchmark ---------------------------------------------------------------------------------------


# -- the seed page's rollback, followed literally, with the ledger as the pools' sink ---------------


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_rollback_page_followed_literally_leaves_the_ledger_right(env: Env) -> None:
    """OpenRTC's "Rolling back a deploy", step by step, with real pools whose sink is the ledger
    and may request a rollback: the pool's `deployment.rolled_back` passes the gate, becomes the
    ledger's own decision linked to the event, and the ledger confirms the fleet clean itself."""

    def sink_for(worker_id: str) -> LedgerAuditSink:
        return make_sink(env, worker_id, may_request={"deployment.rolled_back"})

    def factory(worker_id: str, version: str, sink: LedgerAuditSink) -> AgentPool:
        return AgentPool(agent=EchoAgent, deployment_version=version, audit_sink=sink, port=0,
                         enable_introspection=False)

    driver = OpenRTCPoolDriver(factory, sink_for=sink_for, poll_s=0.05)
    try:
        # v1 was good; v2 replaced it and is live on one pool
        with env.open() as lg:
            submit(lg, FLEET, build.deploy("v1", "ci"), build.complete("v1", "ci"),
                   build.deploy("v2", "ci", from_version="v1"))
        driver.start_worker("w-v2", "v2")
        assert driver.wait_started("w-v2", 60)
        assert wait_for(lambda: any(r["event"] == "worker.started" for r in records(env)))
        with env.open() as lg:
            submit(lg, FLEET, build.complete("v2", "ci"))

        # 1. identify the last good version
        assert run_cli_last_good(env) == "v1"
        # 2. start the good version alongside the bad one
        driver.start_worker("w-v1", "v1")
        assert driver.wait_started("w-v1", 60)
        # 3. drain the bad version
        driver.drain("w-v2")
        assert driver.wait_exited("w-v2", 30)
        # 4. record the rollback, as the page says, through the pool's own audit log
        driver.pool("w-v1").audit_log.emit(
            "deployment.rolled_back", actor="on-call", target="fleet", version="v1",
            from_version="v2", reason="elevated session errors")
        # 5. the fleet is clean: the ledger records the completion itself
        assert wait_for(lambda: any(r["event"] == "rollback.completed" for r in records(env)), 30), \
            records(env)
        with Projections.open(env.db) as views:  # clean while the good pool still serves
            fleet = views.fleet(FLEET)["summary"]
            assert fleet["clean"] and fleet["versions"] == {"v1": 1}
    finally:
        driver.close()  # the good pool is closed too, and its exit recorded

    chain = records(env)
    rolled = [r for r in chain if r["event"] == "deployment.rolled_back"]
    assert len(rolled) == 1, chain
    decision = rolled[0]
    assert (decision["version"], decision["from_version"], decision["reason"]) == \
        ("v1", "v2", "elevated session errors")
    assert decision["actor"] == "on-call" and decision["external"] is True
    assert decision["source"] == "openrtc" and decision["source_worker"] == "w-v1"
    assert decision["source_event"] == "deployment.rolled_back" and len(decision["source_digest"]) == 64
    assert "start_workers" not in decision  # the platform moved the workers, not the ledger
    completed = next(r for r in chain if r["event"] == "rollback.completed")
    assert completed["seq"] > decision["seq"] and completed["move_seq"] == decision["seq"]
    assert (completed["version"], completed["from_version"]) == ("v1", "v2")
    assert completed["dropped_calls"] == 0 and completed["live_workers"] == 1
    assert not any(r["event"] == "audit.external" and r["source_event"] == "deployment.rolled_back"
                   for r in chain)

    with Projections.open(env.db) as views:
        history = {v["version"]: v for v in views.history(FLEET)["versions"]}
        assert history["v2"]["status"] == "rolled_back" and not history["v2"]["good"]
        assert history["v1"]["status"] == "live" and history["v1"]["good"]
        assert history["v2"]["rolled_back_from"][0]["reason"] == "elevated session errors"
        assert history["v2"]["rolled_back_from"][0]["outcome"] == "completed"
        last = views.last_good(FLEET)
        assert last is not None and last.version == "v1"
        assert views.last_good(FLEET, for_rollback=True) is None  # never the bad version
        membership = LedgerMembership(views, FLEET, secrets=["s"], audit=AuditLog())
        assert membership.expected_version()[0] == "v1"
        assert views.fleet(FLEET)["summary"]["live_workers"] == 0
    assert [r["worker_id"] for r in chain if r["event"] == "worker.exited"] == ["w-v2", "w-v1"]
    assert verified_count(env) == len(chain)


def run_cli_last_good(env: Env) -> str:
    with Projections.open(env.db) as views:
        answer = views.last_good(FLEET, for_rollback=True)
    return answer.version if answer is not None else ""


def test_a_rollback_requested_by_a_source_not_allowed_is_kept_pending_and_not_acted_on(env: Env) -> None:
    seed_versions(env)
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v2", "ci"), build.complete("v2", "ci"))
    sink = make_sink(env, "pool-x")
    AuditLog(sink=sink).emit("deployment.rolled_back", actor="on-call", target="fleet", version="v1",
                             from_version="v2", reason="elevated session errors")
    assert sink.close(10)
    (kept,) = [r for r in records(env) if r["event"] == "audit.external"]
    assert kept["source_event"] == "deployment.rolled_back" and kept["result"] == "pending"
    assert kept["source_reason"] == "elevated session errors"
    assert "not allowed to request" in kept["reason"]
    with Projections.open(env.db) as views:
        assert views.state(FLEET).current == "v2"
        assert views.history(FLEET)["outside_decisions_not_acted_on"] == {"count": 1, "seqs": [kept["seq"]]}


def test_a_requested_rollback_naming_an_unknown_version_is_refused_with_its_source(env: Env) -> None:
    seed_versions(env)
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v2", "ci"), build.complete("v2", "ci"))
    sink = make_sink(env, "pool-y", may_request={"deployment.rolled_back"})
    log = AuditLog(sink=sink)
    for _ in range(2):  # delivered twice (a retry): decided once
        log.emit("deployment.rolled_back", actor="on-call", target="fleet", version="v9",
                 from_version="v2", reason="panic")
    assert sink.close(10)
    refused = [r for r in records(env) if r["event"] == "rollback.rejected"]
    assert len(refused) == 2  # two distinct events (seq 1 and 2): each decided once
    assert refused[0]["check"] == "target_unknown" and refused[0]["source_worker"] == "pool-y"
    assert refused[0]["source_seq"] == 1 and refused[1]["source_seq"] == 2
    with Projections.open(env.db) as views:
        assert views.state(FLEET).current == "v2" and views.state(FLEET).in_flight is None


def test_closing_the_driver_records_each_running_pools_exit(env: Env) -> None:
    """A pool still serving when its driver closes (shutdown) must not stay "serving" in the
    ledger forever: the driver records its exit, with the calls it held."""
    seed_versions(env)

    def factory(worker_id: str, version: str, sink: LedgerAuditSink) -> AgentPool:
        return AgentPool(agent=EchoAgent, deployment_version=version, audit_sink=sink, port=0,
                         enable_introspection=False)

    driver = OpenRTCPoolDriver(factory, sink_for=lambda worker_id: make_sink(env, worker_id), poll_s=0.05)
    try:
        driver.start_worker("w-serving", "v1")
        assert driver.wait_started("w-serving", 60)
    finally:
        driver.close()
    exits = [r for r in records(env) if r["event"] == "worker.exited"]
    assert [(r["worker_id"], r["active_sessions"]) for r in exits] == [("w-serving", 0)]
    assert "closed by the driver" in exits[0]["reason"]
    with Projections.open(env.db) as views:
        assert views.fleet(FLEET)["summary"]["live_workers"] == 0
