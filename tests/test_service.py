"""The service over real HTTP: a `ledger serve` process on loopback, on SQLite and PostgreSQL.

Every route, every error status, the gate's outcomes as statuses, tokens and
roles, limits, and the OpenAPI description listing every route.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest

from ledger import commands as build
from ledger.service.openapi import ROUTES
from tests.conftest import Env, submit
from tests.service_support import Server, make_tokens

FLEET = "prod"


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci", "first"), build.worker_start("w1", "v1", "platform"),
               build.complete("v1", "ci"))
    srv = Server(env, make_tokens(env.dir), ["--max-body-bytes", "20000", "--max-streams-per-token", "2"])
    srv.start()
    yield srv
    srv.stop()


def test_every_route_answers_and_every_error_is_one_json_line(server: Server) -> None:
    r, w = server.tokens.read, server.tokens.write
    assert server.get("/healthz").json() == {"status": "ok"}
    assert server.get("/readyz").json()["status"] == "ready"

    # tokens: none 401, unknown 401, wrong role 403
    assert server.get("/fleets").status == 401
    assert server.get("/fleets").headers["www-authenticate"].startswith("Bearer")
    assert server.get("/fleets", "nope").status == 401
    assert server.get("/fleets", w).status == 403
    assert server.command(FLEET, {"command": "mark", "verdict": "verified", "version": "v1",
                                  "actor": "qa"}, token=r).status == 403
    assert server.get("/fleets", r).json() == {"fleets": [FLEET]}

    history = server.get(f"/fleets/{FLEET}/history", r).json()
    assert history["current"] == "v1" and [v["version"] for v in history["versions"]] == ["v1"]
    assert server.get(f"/fleets/{FLEET}/last-good", r).json()["version"] == "v1"
    none = server.get(f"/fleets/{FLEET}/last-good?for_rollback=true", r)
    assert none.status == 404 and "no last-good version" in none.json()["error"]
    assert server.get(f"/fleets/{FLEET}/fleet", r).json()["summary"]["clean"] is True
    assert server.get("/fleets/nope/history", r).status == 404
    assert server.get("/fleets/bad%20name/history", r).status == 400

    # commands: accepted 201 with receipts, refused 409 with the recorded refusal, replay 200
    deploy = server.command(FLEET, {"command": "deploy", "version": "v2", "actor": "ci",
                                    "reason": "weekly", "idempotency_key": "k1"})
    assert deploy.status == 201, deploy.body
    assert deploy.json()["accepted"] and deploy.json()["seq"] == 4
    assert deploy.headers["x-request-id"]
    again = server.command(FLEET, {"command": "deploy", "version": "v2", "actor": "ci",
                                   "reason": "weekly", "idempotency_key": "k1"})
    assert again.status == 200 and again.json()["replayed"] and again.json()["seq"] == 4
    refused = server.command(FLEET, {"command": "deploy", "version": "v3", "actor": "ci"})
    assert refused.status == 409
    body = refused.json()
    assert body["check"] == "rollout_in_flight" and body["seq"] == 5 and len(body["hash"]) == 64
    assert server.command(FLEET, {"command": "complete", "version": "v2", "actor": "ci"}).status == 201
    assert server.command(FLEET, {"command": "mark", "verdict": "verified", "version": "v2",
                                  "actor": "qa"}).status == 201
    rollback = server.command(FLEET, {"command": "rollback", "actor": "on-call",
                                      "reason": "errors up", "drain_timeout": 30})
    assert rollback.status == 201 and rollback.json()["plan"]["version"] == "v1"
    assert server.command(FLEET, {"command": "fail", "version": "v1", "actor": "on-call",
                                  "reason": "stuck"}).status == 201
    assert server.command(FLEET, {"command": "rollback", "actor": "x", "reason": "y",
                                  "to": "v9"}).json()["check"] == "target_unknown"

    # malformed: 400 (not JSON, wrong shape) or 422 (refused by the ledger), nothing written
    head = server.get(f"/fleets/{FLEET}/history", r).json()["head_seq"]
    for raw, status in [(b"{not json", 400), (b"", 400), (b"[1]", 422),
                        (b'{"command":"deploy","version":"v3"}', 422),
                        (b'{"command":"deploy","version":"v3","actor":"ci","colour":"red"}', 422),
                        (b'{"command":"mark","verdict":"bad","version":"v1","actor":"qa"}', 422),
                        (b'{"command":"explode","actor":"ci"}', 422)]:
        answer = server.call("POST", f"/fleets/{FLEET}/commands", w, raw=raw)
        assert answer.status == status, (raw, answer.body)
        assert set(answer.json()) == {"error", "request_id"} and "\n" not in answer.json()["error"]
    assert server.get(f"/fleets/{FLEET}/history", r).json()["head_seq"] == head

    # reports: facts appended, decisions refused
    fact = build.worker_sessions("w1", "v1", 3, "w1")
    appended = server.call("POST", f"/fleets/{FLEET}/reports", w, [fact, fact])
    assert appended.status == 201 and [x["seq"] for x in appended.json()["receipts"]] == [head + 1, head + 2]
    decision = server.call("POST", f"/fleets/{FLEET}/reports", w, build.deploy("v4", "ci"))
    assert decision.status == 422 and "/commands" in decision.json()["error"]
    assert server.call("POST", f"/fleets/{FLEET}/reports", w, {"event": "worker.started"}).status == 422
    assert server.call("POST", f"/fleets/{FLEET}/reports", w, []).status == 400

    # body limit: 413
    big = server.call("POST", f"/fleets/{FLEET}/reports", w, {**fact, "note": "x" * 30000})
    assert big.status == 413 and "request_id" in big.json()

    # feed: JSON lines from a cursor, filters, limits, CloudEvents
    lines = server.get(f"/fleets/{FLEET}/feed?after=3&limit=2", r)
    assert [x["seq"] for x in lines.lines()] == [4, 5] and lines.headers["x-next-after"] == "5"
    assert {x["event"] for x in server.get(f"/fleets/{FLEET}/feed?event=deployment.started",
                                           r).lines()} == {"deployment.started"}
    assert [x["seq"] for x in server.get(f"/fleets/{FLEET}/feed?actor=qa", r).lines()] == [7]
    assert {x["seq"] for x in server.get(f"/fleets/{FLEET}/feed?version=v2", r).lines()} >= {4, 6, 7}
    assert server.get(f"/fleets/{FLEET}/feed?after=x", r).status == 400
    assert server.get(f"/fleets/{FLEET}/feed?since=yesterday", r).status == 400
    assert server.get(f"/fleets/{FLEET}/feed?limit=0", r).status == 400
    events = server.get(f"/fleets/{FLEET}/feed", r, {"Accept": "application/cloudevents+json"}).lines()
    plain = server.get(f"/fleets/{FLEET}/feed", r).lines()
    assert [e["data"] for e in events] == plain
    first = events[0]
    assert first["specversion"] == "1.0" and first["id"] == plain[0]["hash"]
    assert first["type"] == "deployment.started" and first["source"].endswith(f"/fleets/{FLEET}")
    assert first["sequence"] == "1".zfill(20) and first["time"] == plain[0]["timestamp"]
    assert len({e["id"] for e in events}) == len(events)

    # checkpoint: a signed note over the whole chain
    note = server.get(f"/fleets/{FLEET}/checkpoint", r)
    assert note.status == 200 and "deploy-ledger/" in note.body.decode()
    assert note.body.decode().splitlines()[1] == str(len(plain))
    assert server.get("/fleets/nope/checkpoint", r).status == 404

    # report: HTML and CSV
    page = server.get(f"/report/{FLEET}", r)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"rollback v2" in page.body and b"verified" in page.body
    table = server.get(f"/report/{FLEET}.csv", r).body.decode().splitlines()
    assert table[0].startswith("seq,timestamp,event") and len(table) > 5
    assert server.get("/report/nope", r).status == 404

    # request ids: the caller's is echoed
    assert server.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
    log = server.log
    assert log is not None
    deadline = time.monotonic() + 5  # the access line is written as the response ends
    while "abc-123 GET /healthz 200" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "abc-123 GET /healthz 200" in log.read_text()


def test_a_stream_or_feed_of_an_unknown_fleet_is_404_at_once(server: Server) -> None:
    r = server.tokens.read
    started = time.monotonic()
    connection, response = server.open_stream("nope", r, timeout=5)
    body = orjson.loads(response.read())
    assert response.status == 404 and body["error"] == "fleet 'nope' has no records", body
    connection.close()
    feed = server.get("/fleets/nope/feed?after=0", r)
    assert feed.status == 404 and feed.json()["error"] == "fleet 'nope' has no records"
    assert time.monotonic() - started < 3  # answered, not held open until a keep-alive
    # and the refused stream held no slot: the token's two streams are still free
    held = [server.open_stream(FLEET, r) for _ in range(2)]
    assert [response.status for _, response in held] == [200, 200]
    for connection, _ in held:
        connection.close()


def test_a_report_is_one_transaction_of_at_most_a_thousand_records(server: Server) -> None:
    w = server.tokens.write
    answer = server.call("POST", f"/fleets/{FLEET}/reports", w, [{}] * 1001)  # counted before checked
    assert answer.status == 400 and "at most 1000 records" in answer.json()["error"]
    # one bad record refuses its whole report: nothing of it is written
    bad = [build.worker_sessions("w1", "v1", 1, "platform"), {"event": "worker.sessions"}]
    refused = server.call("POST", f"/fleets/{FLEET}/reports", w, bad)
    assert refused.status == 422 and refused.json()["error"].startswith("record 2")
    assert server.get(f"/fleets/{FLEET}/feed", server.tokens.read).lines()[-1]["seq"] == 3
    good = server.call("POST", f"/fleets/{FLEET}/reports", w,
                       [build.worker_sessions("w1", "v1", i, "platform") for i in range(100)])
    assert good.status == 201 and [x["seq"] for x in good.json()["receipts"]] == list(range(4, 104))


def test_streams_per_token_are_limited(server: Server) -> None:
    r = server.tokens.read
    held = [server.open_stream(FLEET, r) for _ in range(2)]
    assert all(response.status == 200 for _, response in held)
    _, third = server.open_stream(FLEET, r)
    assert third.status == 429 and third.getheader("Retry-After") == "5"
    assert "already holds 2 streams" in orjson.loads(third.read())["error"]
    _, other = server.open_stream(FLEET, server.tokens.both)  # another token has its own quota
    assert other.status == 200
    for connection, _ in held:
        connection.close()
    deadline = time.monotonic() + 10  # closed streams give their slots back
    again: list[int] = []
    while len(again) < 2 and time.monotonic() < deadline:
        _, response = server.open_stream(FLEET, r)
        if response.status == 200:
            again.append(response.status)
        else:
            time.sleep(0.1)
    assert again == [200, 200]


def test_the_openapi_description_lists_every_route(server: Server) -> None:
    document = server.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    published = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert published == {(route.method, route.path) for route in ROUTES}
    for route in ROUTES:  # and every route in the table is mounted: none is a 404 or 405
        path = route.path.replace("{fleet}", FLEET)
        if route.name == "stream":
            connection, response = server.open_stream(FLEET, server.tokens.both)
            assert response.status == 200
            connection.close()
            continue
        answer = server.call(route.method, path, server.tokens.both,
                             body={} if route.method == "POST" else None)
        assert answer.status not in (404, 405) or route.name in ("last_good",), (route, answer.status)
