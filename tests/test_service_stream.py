"""The live stream: exactly once across a server restart, CloudEvents de-duplicated by id,
and several server processes against one PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from ledger import commands as build
from ledger.service.client import StreamEvent, follow_stream, read_events
from tests.conftest import Env, submit
from tests.service_support import Server, make_tokens

FLEET = "prod"


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci"), build.complete("v1", "ci"))
    srv = Server(env, make_tokens(env.dir)).start()
    yield srv
    srv.stop()


def facts(n: int, start: int) -> list[dict[str, object]]:
    return [build.worker_sessions("w1", "v1", i, "w1") for i in range(start, start + n)]


def test_a_follower_resumes_after_a_restart_with_nothing_missed_or_repeated(server: Server, env: Env) -> None:
    seen: list[StreamEvent] = []
    stop = threading.Event()

    def follow() -> None:
        for event in follow_stream(server.url, server.tokens.read, FLEET, stop=stop, retry_s=0.2):
            seen.append(event)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    for i in range(3):  # through the service, one post at a time
        posted = server.call("POST", f"/fleets/{FLEET}/reports", server.tokens.write, facts(5, i * 5))
        assert posted.status == 201
    server.stop()
    with env.open() as lg:  # while it is down, through the Python API
        lg.append_many(FLEET, facts(7, 100))
    server.start()
    assert server.call("POST", f"/fleets/{FLEET}/reports", server.tokens.write, facts(4, 200)).status == 201
    total = 2 + 15 + 7 + 4
    deadline = time.monotonic() + 30
    while len(seen) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert [e.seq for e in seen] == list(range(1, total + 1))
    with env.open(writable=False) as lg:
        assert [e.record for e in seen] == list(lg.records(FLEET))

    # the raw protocol: id is the seq, Last-Event-ID resumes exactly after it
    connection, response = server.open_stream(FLEET, server.tokens.read, last_event_id=total - 2)
    events = read_events(response)
    assert [int(next(events)[0] or 0) for _ in range(2)] == [total - 1, total]
    connection.close()


def test_a_cloudevents_consumer_de_duplicates_by_id(server: Server, env: Env) -> None:
    with env.open() as lg:
        lg.append_many(FLEET, facts(10, 0))
    received: list[dict[str, object]] = []
    for resume, count in ((0, 8), (5, 7)):  # the consumer reconnects from too early: at-least-once
        connection, response = server.open_stream(FLEET, server.tokens.read, last_event_id=resume,
                                                  query="format=cloudevents")
        events = read_events(response)
        received += [orjson.loads(next(events)[1]) for _ in range(count)]
        connection.close()
    assert len(received) == 15
    unique = {str(event["id"]): event for event in received}
    with env.open(writable=False) as lg:
        records = list(lg.records(FLEET))
    assert sorted(unique) == sorted(r["hash"] for r in records)
    assert sorted(int(str(e["sequence"])) for e in unique.values()) == list(range(1, 13))
    assert all(e["specversion"] == "1.0" and e["type"] == e["data"]["event"] for e in unique.values())

    # filtered streams keep the record seq as id
    connection, response = server.open_stream(FLEET, server.tokens.read, query="event=deployment.completed")
    event_id, data = next(read_events(response))
    assert event_id == "2" and orjson.loads(data)["event"] == "deployment.completed"
    connection.close()


def test_several_server_processes_on_one_postgresql(pg_env: Env) -> None:
    env = pg_env
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci"), build.complete("v1", "ci"))
    servers = [Server(env, make_tokens(env.dir)).start()]
    second = Server(env, servers[0].tokens).start()  # another process, the same database
    try:
        seen: list[StreamEvent] = []
        stop = threading.Event()
        follower = threading.Thread(target=lambda: seen.extend(
            follow_stream(second.url, second.tokens.read, FLEET, stop=stop)), daemon=True)
        follower.start()

        def deploy(i: int) -> int:
            srv = (servers[0], second)[i % 2]
            return srv.command(FLEET, {"command": "deploy", "version": f"v{i + 2}", "actor": "ci"}).status

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(deploy, range(6)))
        assert sorted(statuses) == [201] + [409] * 5  # one move in flight: the gate holds across processes
        for i in range(2):
            answer = (servers[0], second)[i].call("POST", f"/fleets/{FLEET}/reports", second.tokens.write,
                                                  facts(3, i * 3))
            assert answer.status == 201
        total = 2 + 6 + 6
        deadline = time.monotonic() + 30
        while len(seen) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        assert [e.seq for e in seen] == list(range(1, total + 1))
        with env.open(writable=False) as lg:
            assert lg.verify(fleets=[FLEET]).chains[0].count == total
    finally:
        second.stop()
        servers[0].stop()
