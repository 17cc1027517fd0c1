"""Actor-signed requests over real HTTP: a `ledger serve` process on an enforced ledger, both backends.

The client signs each envelope with the actor's own key (`ServiceClient`);
the server hands envelope and signature to the gate, which checks them as
for the CLI. A refusal is a 409 carrying the recorded refusal; a malformed
envelope is a 422 with nothing written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.actors import ActorSigner
from ledger.envelope import SignedEnvelope
from ledger.errors import InputError
from ledger.events import Check
from ledger.service.client import Answer, ServiceClient, ServiceError
from ledger.service.envelopes import SIGNED_FIELDS, approval_from_body, sign_command, split_signed
from tests.conftest import Env
from tests.service_support import Server, make_tokens
from tests.test_actors import People, cli, count, ok, records, write_openssh_key, write_pem_key

FLEET = "prod"


@dataclass
class Signed:
    """An enforced ledger behind a server: its people, and a client with a write token."""

    people: People
    server: Server
    client: ServiceClient

    def signer(self, name: str) -> ActorSigner:
        return self.people.signer(name)

    def command(self, who: str, **body: Any) -> Answer:
        return self.client.signed_command(FLEET, {"actor": who, **body}, self.signer(who))


@pytest.fixture
def signed(env: Env, capsys: pytest.CaptureFixture[str]) -> Iterator[Signed]:
    """alice admin, dave deployer (OpenSSH key), olga and oscar on-call, sink-1 a reporter bound
    to v1-* workers; mallory's key is never registered."""
    keys = {}
    for name in ("alice", "olga", "oscar", "mallory"):
        keys[name] = env.dir / f"{name}.key"
        write_pem_key(keys[name])
    for name in ("dave", "sink-1"):
        keys[name] = env.dir / name
        write_openssh_key(keys[name], f"{name}@host")
    ok(cli(capsys, env, "policy", "enable", "--admin", "alice", "--admin-key", f"{keys['alice']}.pub"))
    for name, role, extra in (("dave", "deployer", []), ("olga", "oncall", []), ("oscar", "oncall", []),
                              ("sink-1", "reporter", ["--worker", "v1-*"])):
        ok(cli(capsys, env, "actors", "add", name, "--public-key", f"{keys[name]}.pub", "--role", role,
               *extra, "--actor", "alice", "--actor-key", str(keys["alice"])))
    server = Server(env, make_tokens(env.dir)).start()
    try:
        yield Signed(People(env, keys), server, ServiceClient(server.url, server.tokens.both))
    finally:
        server.stop()


def refused(s: Signed, answer: Answer, check: Check, before: int) -> dict[str, Any]:
    """A 409 naming `check`, and exactly its refusal recorded, at the seq the answer gives."""
    assert answer.status == 409, answer
    assert answer.body["refused"] is True and answer.body["check"] == check.value, answer.body
    after = records(s.people.env)
    assert len(after) == before + 1
    refusal = after[-1]
    assert (refusal["seq"], refusal["hash"]) == (answer.body["seq"], answer.body["hash"])
    assert refusal["check"] == check.value
    return refusal


def test_the_ledger_route_names_the_identity_envelopes_sign(signed: Signed) -> None:
    body = signed.server.get("/ledger").json()  # no token: what a client signs against is not secret
    with signed.people.env.open(writable=False) as lg:
        assert body["ledger"] == lg.ledger_id
    assert body["enforced"] is True
    paths = signed.client.request("GET", "/openapi.json").body["paths"]
    for path in (f"/fleets/{{fleet}}/{route}" for route in ("commands", "approvals")):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        for variant in schema.get("oneOf", [schema]):
            assert set(SIGNED_FIELDS) <= set(variant["properties"]), (path, variant.get("title"))


def test_a_signed_deploy_is_accepted_and_its_envelope_stored(signed: Signed,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ci = ServiceClient(signed.server.url, signed.server.tokens.write)  # a write-only token signs too
    answer = ci.signed_command(FLEET, {"command": "deploy", "version": "v1", "actor": "dave",
                                       "reason": "release"}, signed.signer("dave"))
    assert answer.status == 201 and answer.body["accepted"] is True, answer.body
    record = records(signed.people.env)[-1]
    assert (record["seq"], record["event"], record["actor"]) == (answer.body["seq"], "deployment.started",
                                                                 "dave")
    assert record["actor_verified"] is True
    assert record["actor_kid"] == signed.signer("dave").kid
    assert record["envelope"]["action"] == "deploy" and record["envelope"]["fleet"] == FLEET
    stored = SignedEnvelope.parse(record, stored=True)  # dave's own signature, checkable by anyone
    assert stored.verifies_under(signed.signer("dave").public_raw)
    assert "actors: 1 signed" in ok(cli(capsys, signed.people.env, "verify")).out


def test_an_unsigned_command_is_refused_and_the_actor_not_stored_as_proven(signed: Signed) -> None:
    before = count(signed.people.env)
    answer = signed.client.command(FLEET, {"command": "deploy", "version": "v1", "actor": "dave"})
    refusal = refused(signed, answer, Check.ACTOR_UNSIGNED, before)
    assert refusal["actor"] == "dave" and refusal["actor_verified"] is False
    assert "envelope" not in refusal and "actor_sig" not in refusal


def test_a_bad_signature_is_refused(signed: Signed) -> None:
    client, env = signed.client, signed.people.env
    body = sign_command(signed.signer("dave"), client.ledger_id(), FLEET,
                        {"command": "deploy", "version": "v1", "actor": "dave"})
    raw = bytearray(base64.b64decode(body["actor_sig"]))
    raw[0] ^= 1  # well-formed, but not dave's signature of this envelope
    before = count(env)
    answer = client.command(FLEET, {**body, "actor_sig": base64.b64encode(bytes(raw)).decode()})
    assert refused(signed, answer, Check.ACTOR_SIGNATURE, before)["actor_verified"] is False
    # mallory signs under dave's name with her own (unregistered) key
    forged = sign_command(signed.signer("mallory").as_actor("dave"), client.ledger_id(), FLEET,
                          {"command": "deploy", "version": "v1", "actor": "dave"})
    refused(signed, client.command(FLEET, forged), Check.ACTOR_KEY_UNKNOWN, before + 1)
    # a valid envelope posted with another command: the envelope does not state it
    other = {**body, "version": "v2"}
    refused(signed, client.command(FLEET, other), Check.ENVELOPE_MISMATCH, before + 2)


def test_a_replayed_envelope_is_refused(signed: Signed) -> None:
    client, env = signed.client, signed.people.env
    body = sign_command(signed.signer("dave"), client.ledger_id(), FLEET,
                        {"command": "deploy", "version": "v1", "actor": "dave"})
    assert client.command(FLEET, body).status == 201
    before = count(env)
    refused(signed, client.command(FLEET, body), Check.NONCE_REUSED, before)


def test_a_role_the_actor_lacks_is_refused_as_the_proven_actor(signed: Signed) -> None:
    assert signed.command("dave", command="deploy", version="v1").status == 201
    assert signed.command("dave", command="complete", version="v1").status == 201
    before = count(signed.people.env)
    answer = signed.command("dave", command="rollback", reason="dave may not roll back")
    refusal = refused(signed, answer, Check.ROLE_DENIED, before)
    assert refusal["actor_verified"] is True  # who asked is proven; what they asked is not theirs to ask


def test_an_approval_flow_over_http(signed: Signed, capsys: pytest.CaptureFixture[str]) -> None:
    """Clearing a bad mark waits for a second on-call; the requester and a deployer do not count."""
    client, env = signed.client, signed.people.env
    for body in ({"command": "deploy", "version": "v1"}, {"command": "complete", "version": "v1"}):
        assert signed.command("dave", **body).status == 201
    assert signed.command("olga", command="mark", verdict="bad", version="v1",
                          reason="corrupts audio").status == 201
    before = count(env)
    answer = signed.command("olga", command="mark", verdict="cleared", version="v1", reason="false alarm")
    pending = refused(signed, answer, Check.APPROVAL_MISSING, before)
    assert answer.body["pending"] is True and pending["event"] == "command.pending"
    request = pending["seq"]
    for who, check in (("olga", Check.SELF_APPROVAL), ("dave", Check.ROLE_DENIED)):
        before = count(env)
        refusal = refused(signed, client.approve(FLEET, request, signed.signer(who)), check, before)
        assert refusal["request_seq"] == request
    unsigned = client.request("POST", f"/fleets/{FLEET}/approvals",
                              {"request_seq": request, "actor": "oscar"})
    assert unsigned.body["check"] == Check.ACTOR_UNSIGNED.value
    answer = client.approve(FLEET, request, signed.signer("oscar"), "seen the logs")
    assert answer.status == 201, answer.body
    decision, approval = records(env)[-2:]
    assert (approval["event"], approval["actor"], approval["actor_verified"]) == (
        "command.approved", "oscar", True)
    assert (decision["event"], decision["actor"], decision["request_seq"]) == (
        "version.cleared", "olga", request)
    assert [a["actor"] for a in decision["approvals"]] == ["oscar"]
    before = count(env)
    with pytest.raises(ServiceError) as caught:  # decided already: bad input, nothing written
        client.approve(FLEET, request, signed.signer("oscar"))
    assert caught.value.status == 422 and "was decided" in caught.value.reason
    assert count(env) == before
    ok(cli(capsys, env, "verify"))


def test_a_signed_report_is_checked_against_the_workers_its_reporter_is_bound_to(signed: Signed) -> None:
    client, env, sink = signed.client, signed.people.env, signed.signer("sink-1")
    assert signed.command("dave", command="deploy", version="v1").status == 201

    def fact(worker: str) -> dict[str, Any]:
        return {"event": "worker.started", "actor": "sink-1", "target": worker, "result": "success",
                "worker_id": worker, "version": "v1"}

    answer = client.signed_report(FLEET, fact("v1-a"), sink)
    assert answer.status == 201, answer.body
    record = records(env)[-1]
    assert (record["seq"], record["worker_id"], record["actor_verified"]) == (
        answer.body["seq"], "v1-a", True)
    before = count(env)
    refusal = refused(signed, client.signed_report(FLEET, fact("v2-a"), sink), Check.REPORTER_UNBOUND, before)
    assert refusal["command"] == "worker.started"
    # unsigned facts stay open to any writer, as before
    plain = client.report(FLEET, [fact("v9-z")])
    assert plain.status == 201 and "actor_verified" not in records(env)[-1]


def test_a_malformed_envelope_is_422_and_writes_nothing(signed: Signed) -> None:
    client, env = signed.client, signed.people.env
    good = sign_command(signed.signer("dave"), client.ledger_id(), FLEET,
                        {"command": "deploy", "version": "v1", "actor": "dave"})
    fact = {"event": "worker.started", "actor": "sink-1", "target": "v1-a", "result": "success",
            "worker_id": "v1-a", "version": "v1"}
    bad_bodies = [
        {k: v for k, v in good.items() if k != "actor_sig"},  # half a signature
        {**good, "actor_kid": "not-a-kid"},
        {**good, "actor_sig": "!!"},
        {**good, "envelope": {**good["envelope"], "nonce": "short"}},
        {**good, "envelope": {**good["envelope"], "expires": "tomorrow"}},
        {**good, "envelope": {k: v for k, v in good["envelope"].items() if k != "fleet"}},
        {**good, "envelope": "a string"},
    ]
    before = records(env)
    for body in bad_bodies:
        answer = signed.server.command(FLEET, body, signed.server.tokens.both)
        assert answer.status == 422, (body, answer.body)
        error = answer.json()["error"]
        assert "\n" not in error and ("envelope" in error or "actor_" in error), error
    signature = {k: good[k] for k in ("envelope", "actor_kid", "actor_sig")}
    elsewhere: list[tuple[str, Any]] = [
        ("approvals", {"request_seq": 1, "actor": "oscar", "envelope": good["envelope"]}),
        ("approvals", {"request_seq": "1", "actor": "oscar"}),
        ("reports", {**fact, "envelope": {}, "actor_kid": "", "actor_sig": ""}),
        ("reports", [{**fact, **signature}, fact]),  # a signed report carries one record
    ]
    for route, body in elsewhere:
        path = f"/fleets/{FLEET}/{route}"
        answer = signed.server.call("POST", path, signed.server.tokens.both, body)
        assert answer.status == 422, (path, body, answer.body)
    assert records(env) == before


def test_an_open_ledger_takes_unsigned_commands_over_http(env: Env) -> None:
    server = Server(env, make_tokens(env.dir)).start()
    try:
        client = ServiceClient(server.url, server.tokens.both)
        assert client.request("GET", "/ledger").body["enforced"] is False
        answer = client.command(FLEET, {"command": "deploy", "version": "v1", "actor": "ci"})
        assert answer.status == 201, answer.body
        with pytest.raises(ServiceError) as caught:
            client.request("POST", f"/fleets/{FLEET}/approvals", {"request_seq": 1, "actor": "ci"})
        assert caught.value.status == 422
    finally:
        server.stop()


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3),
                     max_leaves=8)


#: One well-formed signed body, made once: the property below varies its envelope fields.
_GOOD = sign_command(ActorSigner.generate("dave"), "0123456789abcdef", FLEET,
                     {"command": "deploy", "version": "v1", "actor": "dave"})


@given(st.data())
def test_any_envelope_fields_are_read_or_refused_in_one_line(data: st.DataObject) -> None:
    """Whatever a client sends in the envelope fields, the server either reads a signed envelope
    or refuses the body as bad input (one line); nothing else escapes to become a 500."""
    good = _GOOD
    body = dict(good)
    for name in data.draw(st.lists(st.sampled_from(SIGNED_FIELDS), unique=True)):
        if data.draw(st.booleans()):
            del body[name]
        elif name == "envelope" and data.draw(st.booleans()):
            envelope = dict(good["envelope"])
            field = data.draw(st.sampled_from(sorted(envelope)))
            envelope[field] = data.draw(_JSON)
            body[name] = envelope
        else:
            body[name] = data.draw(_JSON)
    signed_part = {k: body[k] for k in SIGNED_FIELDS if k in body}
    readers = [lambda: split_signed(body)[1],
               lambda: approval_from_body({"request_seq": 1, "actor": "dave", **signed_part}).signed]
    for read in readers:
        try:
            envelope = read()
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert (envelope is None) == (not signed_part)
