"""Two real server processes against one real PostgreSQL: what one process knows, the other holds to.

A report retried against another process (its first answer lost) is stored
once; a token's stream limit counts the streams of every process; and the
streams of a process that was killed stop counting once their leases expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from ledger import commands as build
from ledger.openrtc.mapping import SOURCE
from tests.conftest import Env, submit
from tests.service_support import Response, Server, make_tokens

FLEET = "prod"
LEASE_S = 2.0


@pytest.fixture
def pair(pg_env: Env) -> Iterator[tuple[Server, Server]]:
    with pg_env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci"), build.complete("v1", "ci"))
    options = ["--max-streams-per-token", "2", "--stream-lease", str(LEASE_S)]
    first = Server(pg_env, make_tokens(pg_env.dir), options).start()
    second = Server(pg_env, first.tokens, options).start()
    yield first, second
    for server in (second, first):
        if server.process is not None and server.process.poll() is None:
            server.stop()


def keyed(n: int) -> dict[str, Any]:
    return {**build.worker_sessions("w1", "v1", n, "pool-a"), "source": SOURCE,
            "source_instance": "pool-host/7/0123456789ab", "source_digest": f"{n:064x}"}


def test_a_report_retried_on_the_other_process_is_stored_once(pair: tuple[Server, Server]) -> None:
    first, second = pair
    batches = [[keyed(n) for n in range(b * 4, b * 4 + 4)] for b in range(10)]
    barrier = threading.Barrier(2)

    def post(server: Server, batch: list[dict[str, Any]]) -> Response:
        barrier.wait(10)  # both processes take the same report at the same moment
        return server.call("POST", f"/fleets/{FLEET}/reports?dedup_after=2", first.tokens.write, batch)

    answers: list[Response] = []
    with ThreadPoolExecutor(2) as pool:
        for batch in batches:
            answers += list(pool.map(post, (first, second), (batch, batch)))
    assert all(a.status == 201 for a in answers), [a.body for a in answers if a.status != 201]
    stored = sum(len(a.json()["receipts"]) for a in answers)
    found = sum(a.json()["duplicates"] for a in answers)
    assert stored == 40 and found == 40
    records = first.get(f"/fleets/{FLEET}/feed", first.tokens.read).lines()
    digests = [r["source_digest"] for r in records if "source_digest" in r]
    assert sorted(digests) == [f"{n:064x}" for n in range(40)]


def _stream_status(server: Server, token: str) -> tuple[Any, int]:
    connection, response = server.open_stream(FLEET, token, timeout=10)
    if response.status != 200:
        body = orjson.loads(response.read())
        assert "already holds 2 streams" in body["error"]
        connection.close()
    return connection, response.status


def test_the_stream_limit_counts_every_process_and_forgets_a_killed_one(pair: tuple[Server, Server]) -> None:
    first, second = pair
    r = first.tokens.read
    held_first, status = _stream_status(first, r)
    assert status == 200
    held_second, status = _stream_status(second, r)
    assert status == 200
    for server in (first, second):  # one stream each: the token's two, across the processes
        assert _stream_status(server, r)[1] == 429
    assert _stream_status(second, first.tokens.both)[1] == 200  # another token: its own count

    held_second.close()  # a stream that ends gives its slot back to every process
    deadline = time.monotonic() + 10
    while (status := (again := _stream_status(first, r))[1]) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200  # the first process holds both now

    assert first.process is not None
    first.process.kill()  # its two streams are never released ...
    first.process.wait(10)
    held_first.close()
    again[0].close()
    assert _stream_status(second, r)[1] == 429
    killed_at = time.monotonic()
    deadline = killed_at + LEASE_S * 5
    while (status := _stream_status(second, r)[1]) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200  # ... but their leases expire, as the other process sees
    assert time.monotonic() - killed_at >= LEASE_S * 0.5
