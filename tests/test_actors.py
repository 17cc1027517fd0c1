"""Who did it, provably: actors, their keys and roles in `@policy`, signed commands, and verify.

Runs on SQLite and PostgreSQL (`env`). An enforced ledger here has an admin
(alice), a deployer (dave, whose key is an OpenSSH key) and an on-call
(olga). Every refusal of who-may-ask exits 1 and records exactly its refusal,
with `actor_verified` false whenever the claim is not proven; malformed key
files exit 2 and write nothing; verify catches a record whose actor signature
was altered, or whose command was rewritten by someone holding only the
ledger key.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.actors import ActorSigner, load_actor_signer
from ledger.app import open_app
from ledger.chain import signed_message
from ledger.decide import Complete, Deploy, Meta, Refused, Rollback
from ledger.encoding import canonical
from ledger.envelope import seal_envelope
from ledger.errors import RecordError, VerificationError
from ledger.events import Check
from ledger.gate import Outcome
from ledger.keys import load_signer
from ledger.policy import POLICY_CHAIN, fold
from ledger.policy_decide import EnablePolicy, decide_policy
from tests.backends import tamper_for
from tests.conftest import CliResult, Env, run_cli

FLEET = "prod"

#: The checks of who may ask (and of policy changes), all covered by REFUSALS below.
ACTOR_CHECKS = frozenset({
    Check.ACTOR_UNSIGNED, Check.ENVELOPE_MISMATCH, Check.ACTOR_KEY_UNKNOWN, Check.ACTOR_SIGNATURE,
    Check.ACTOR_KEY_REVOKED, Check.NONCE_REUSED, Check.ENVELOPE_EXPIRED, Check.ROLE_DENIED,
    Check.APPROVAL_MISSING, Check.ACTOR_EXISTS, Check.ACTOR_UNKNOWN, Check.POLICY_ENFORCED,
    Check.SELF_APPROVAL, Check.APPROVAL_REPEATED, Check.REPORTER_UNBOUND,
})


@dataclass
class People:
    env: Env
    keys: dict[str, Path]

    def key(self, name: str) -> Path:
        return self.keys[name]

    def signer(self, name: str) -> ActorSigner:
        return load_actor_signer(self.keys[name], name)


def write_pem_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    signer = ActorSigner("x", key)
    path.with_name(path.name + ".pub").write_text(signer.public_text + "\n")
    return key


def write_openssh_key(path: Path, comment: str) -> None:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.with_name(path.name + ".pub").write_bytes(line + f" {comment}\n".encode())


def cli(capsys: pytest.CaptureFixture[str], env: Env, *argv: str) -> CliResult:
    return run_cli(capsys, *argv, *env.args())


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result
    return result


@pytest.fixture
def people(env: Env, capsys: pytest.CaptureFixture[str]) -> People:
    """An enforced ledger: alice admin, dave deployer (OpenSSH key), olga on-call, and keys
    for mallory (never registered)."""
    return enforced_people(env, capsys)


def enforced_people(env: Env, capsys: pytest.CaptureFixture[str]) -> People:
    """The `people` fixture's ledger, for other test modules."""
    keys = {}
    for name in ("alice", "olga", "mallory", "ann"):
        keys[name] = env.dir / f"{name}.key"
        write_pem_key(keys[name])
    keys["dave"] = env.dir / "dave"
    write_openssh_key(keys["dave"], "dave@laptop")
    ok(cli(capsys, env, "policy", "enable", "--admin", "alice", "--admin-key", f"{keys['alice']}.pub"))
    for name, role in (("dave", "deployer"), ("olga", "oncall"), ("ann", "auditor")):
        ok(cli(capsys, env, "actors", "add", name, "--public-key", f"{keys[name]}.pub", "--role", role,
               "--actor", "alice", "--actor-key", str(keys["alice"])))
    return People(env, keys)


def records(env: Env, chain: str = FLEET) -> list[dict[str, Any]]:
    with env.open(writable=False) as lg:
        return list(lg.records(chain))


def count(env: Env, chain: str = FLEET) -> int:
    return len(records(env, chain))


def as_(people: People, name: str, *argv: str, key: str | None = None) -> list[str]:
    return [*argv, "--fleet", FLEET, "--actor", name, "--actor-key", str(people.key(key or name))]


def live_v1_v2(people: People, capsys: pytest.CaptureFixture[str]) -> None:
    """v1 then v2 deployed and completed by dave: v1 is last-good, v2 current."""
    env = people.env
    for version in ("v1", "v2"):
        ok(cli(capsys, env, *as_(people, "dave", "deploy", version, "--reason", "release")))
        ok(cli(capsys, env, *as_(people, "dave", "complete", version)))


# -- bootstrap and open mode -----------------------------------------------------------------------


def test_an_open_ledger_says_actors_are_not_authenticated(env: Env, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    ok(cli(capsys, env, "deploy", "v1", "--fleet", FLEET, "--actor", "anyone"))
    assert "actors are not authenticated" in ok(cli(capsys, env, "verify")).out
    assert "actors are not authenticated" in ok(cli(capsys, env, "policy", "show")).out
    assert "actors are not authenticated" in ok(cli(capsys, env, "history", "--fleet", FLEET)).out
    assert "actor_verified" not in records(env)[0]


def test_init_with_an_admin_enforces_the_policy_from_the_start(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    write_openssh_key(tmp_path / "root", "root@host")
    db, key = str(tmp_path / "new.db"), str(tmp_path / "new.key")
    result = ok(run_cli(capsys, "init", "--db", db, "--key", key, "--admin", "root",
                        "--admin-key", str(tmp_path / "root.pub")))
    assert "policy enforced: root is admin" in result.out
    refused = run_cli(capsys, "deploy", "v1", "--db", db, "--key", key, "--actor", "root")
    assert refused.code == 1 and "actor_unsigned" in refused.err
    shown = orjson.loads(ok(run_cli(capsys, "policy", "show", "--db", db, "--key", key, "-o", "json")).out)
    assert shown["enforced"] and [a["name"] for a in shown["actors"]] == ["root"]


def test_init_with_a_bad_admin_key_exits_2_and_creates_nothing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.pub").write_text("ssh-rsa AAAAB3Nza nope\n")
    db = tmp_path / "new.db"
    result = run_cli(capsys, "init", "--db", str(db), "--key", str(tmp_path / "k"), "--admin", "root",
                     "--admin-key", str(tmp_path / "bad.pub"))
    assert result.code == 2 and "ssh-ed25519" in result.err
    assert not db.exists() and not (tmp_path / "k").exists()


# -- the accepted path for each role ---------------------------------------------------------------


def test_each_role_does_what_it_is_granted(people: People, capsys: pytest.CaptureFixture[str]) -> None:
    env = people.env
    live_v1_v2(people, capsys)
    ok(cli(capsys, env, *as_(people, "olga", "rollback", "--reason", "errors up", "--no-drive")))
    ok(cli(capsys, env, *as_(people, "olga", "complete", "v1", "--confirm", "console shows v1")))
    rolled = next(r for r in records(env) if r["event"] == "deployment.rolled_back")
    assert (rolled["actor"], rolled["actor_verified"], rolled["envelope"]["action"]) == ("olga", True,
                                                                                          "rollback")
    assert rolled["actor_kid"] == people.signer("olga").kid
    assert rolled["policy_seq"] == count(env, POLICY_CHAIN)
    denied = cli(capsys, env, *as_(people, "ann", "deploy", "v3"))
    assert denied.code == 1 and "role_denied" in denied.err
    result = ok(cli(capsys, env, "verify"))
    assert "actors: 7 signed command(s), 0 signed fact(s) verified" in result.out


# -- refusals: who may ask -------------------------------------------------------------------------


def refused_with(env: Env, result: CliResult | Outcome, check: Check, before: int) -> dict[str, Any]:
    if isinstance(result, CliResult):
        assert result.code == 1, result
        assert f"({check.value})" in result.err
    else:
        assert result.check is check, result.decision
    after = records(env)
    assert len(after) == before + 1  # exactly its refusal
    refusal = after[-1]
    assert refusal["check"] == check.value
    assert refusal["result"] == ("pending" if check is Check.APPROVAL_MISSING else "rejected")
    return refusal


def test_a_key_not_registered_is_refused_and_the_name_not_taken_as_proven(
        people: People, capsys: pytest.CaptureFixture[str]) -> None:
    before = count(people.env)
    result = cli(capsys, people.env, *as_(people, "dave", "deploy", "v1", key="mallory"))
    refusal = refused_with(people.env, result, Check.ACTOR_KEY_UNKNOWN, before)
    assert (refusal["actor"], refusal["actor_verified"]) == ("dave", False)


def test_an_unsigned_command_is_refused(people: People, capsys: pytest.CaptureFixture[str]) -> None:
    before = count(people.env)
    result = cli(capsys, people.env, "deploy", "v1", "--fleet", FLEET, "--actor", "dave")
    refusal = refused_with(people.env, result, Check.ACTOR_UNSIGNED, before)
    assert refusal["actor_verified"] is False and "envelope" not in refusal


@pytest.mark.parametrize("minutes", ["0", "-5", "1441", "ten"])
def test_an_expiry_out_of_range_is_bad_input_and_writes_nothing(
        people: People, capsys: pytest.CaptureFixture[str], minutes: str) -> None:
    env = people.env
    before = (count(env), count(env, "@policy"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:  # refused while parsing, as argparse does: exit 2
        cli(capsys, env, *as_(people, "dave", "deploy", "v1", "--reason", "r"), "--expires", minutes)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "--expires" in err, err
    assert (count(env), count(env, "@policy")) == before


@pytest.mark.parametrize("what", ["key", "actor"])
def test_a_revoked_key_or_actor_is_refused(people: People, capsys: pytest.CaptureFixture[str],
                                           what: str) -> None:
    env = people.env
    revoke = ["actors", "revoke", "dave", "--actor", "alice", "--actor-key", str(people.key("alice"))]
    if what == "key":
        revoke += ["--key-id", people.signer("dave").kid]
    ok(cli(capsys, env, *revoke))
    before = count(env)
    refusal = refused_with(env, cli(capsys, env, *as_(people, "dave", "deploy", "v1")),
                           Check.ACTOR_KEY_REVOKED, before)
    assert refusal["actor_verified"] is False


def test_a_valid_key_without_the_role_is_refused_as_the_proven_actor(
        people: People, capsys: pytest.CaptureFixture[str]) -> None:
    live_v1_v2(people, capsys)
    before = count(people.env)
    result = cli(capsys, people.env, *as_(people, "dave", "rollback", "--reason", "mine", "--no-drive"))
    refusal = refused_with(people.env, result, Check.ROLE_DENIED, before)
    assert refusal["event"] == "rollback.rejected" and refusal["actor_verified"] is True


def _api_submit(people: People, command: Deploy | Complete | Rollback, **kwargs: Any) -> Outcome:
    env = people.env
    with open_app(env.db, env.key, projections=env.dir / "views.db") as app:
        return app.service.submit(FLEET, command, **kwargs)


def _ledger_id(env: Env) -> str:
    with env.open(writable=False) as lg:
        return lg.ledger_id


def test_a_reused_nonce_is_refused(people: People) -> None:
    dave = people.signer("dave")
    command = Deploy("v1", Meta("dave"))
    with open_app(people.env.db, people.env.key, projections=people.env.dir / "v.db") as app:
        signed = app.service.sign(FLEET, command, dave)
    assert signed is not None
    assert _api_submit(people, command, signed=signed).accepted
    before = count(people.env)
    refused_with(people.env, _api_submit(people, command, signed=signed), Check.NONCE_REUSED, before)


def test_a_raw_fact_cannot_claim_a_verified_signature_or_spend_a_nonce(people: People) -> None:
    """Anyone may append facts, but only the gate writes what it verified."""
    command = Deploy("v1", Meta("dave"))
    with open_app(people.env.db, people.env.key, projections=people.env.dir / "v.db") as app:
        signed = app.service.sign(FLEET, command, people.signer("dave"))
        assert signed is not None
        with pytest.raises(RecordError, match="actor_verified"):
            app.ledger.append(FLEET, {"event": "worker.started", "actor": "w1", "target": "w1",
                                      "result": "success", "worker_id": "w1", "version": "v1",
                                      "actor_verified": True, "envelope": signed.envelope.fields()})
    assert _api_submit(people, command, signed=signed).accepted


# -- reporters -------------------------------------------------------------------------------------


def test_a_reporter_signs_facts_of_its_own_workers_only(people: People,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    env = people.env
    write_openssh_key(env.dir / "sink", "sink@pool")
    ok(cli(capsys, env, "actors", "add", "sink-1", "--public-key", f"{env.dir / 'sink'}.pub", "--role",
           "reporter", "--worker", "v1-*", "--actor", "alice", "--actor-key", str(people.key("alice"))))
    sink = ["--fleet", FLEET, "--actor", "sink-1", "--actor-key", str(env.dir / "sink")]
    ok(cli(capsys, env, "worker", "start", "v1-a", "--version", "v1", *sink))
    assert records(env)[-1]["actor_verified"] is True
    before = count(env)
    result = cli(capsys, env, "worker", "start", "v2-a", "--version", "v2", *sink)
    refusal = refused_with(env, result, Check.REPORTER_UNBOUND, before)
    assert refusal["command"] == "worker.started"
    ok(cli(capsys, env, "worker", "sessions", "v1-a", "--version", "v1", "--sessions", "3", *sink))
    ok(cli(capsys, env, "worker", "start", "v9-z", "--version", "v9", "--fleet", FLEET, "--actor", "x"))
    assert "actors: 0 signed command(s), 3 signed fact(s) verified" in ok(cli(capsys, env, "verify")).out

    def more_sessions(record: dict[str, Any]) -> None:
        record["active_sessions"] = 99

    reseal_head(env, more_sessions, back=1)  # the signed sessions report
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1])
    assert (caught.value.fault.seq, caught.value.fault.check) == (count(env) - 1, "actor envelope")


def test_an_expired_command_is_refused(people: People) -> None:
    dave = people.signer("dave")
    command = Deploy("v1", Meta("dave"))
    with open_app(people.env.db, people.env.key, projections=people.env.dir / "v.db") as app:
        fresh = app.service.sign(FLEET, command, dave)
    assert fresh is not None
    envelope = fresh.envelope
    stale = seal_envelope(dave, ledger=envelope.ledger, fleet=FLEET, action=envelope.action,
                          args=envelope.args, minutes=1, now=datetime.now(UTC) - timedelta(minutes=5))
    before = count(people.env)
    refused_with(people.env, _api_submit(people, command, signed=stale), Check.ENVELOPE_EXPIRED, before)


def test_an_envelope_for_another_command_is_refused(people: People) -> None:
    dave = people.signer("dave")
    with open_app(people.env.db, people.env.key, projections=people.env.dir / "v.db") as app:
        signed = app.service.sign(FLEET, Deploy("v1", Meta("dave")), dave)
    before = count(people.env)
    refusal = refused_with(people.env, _api_submit(people, Deploy("v666", Meta("dave")), signed=signed),
                           Check.ENVELOPE_MISMATCH, before)
    assert refusal["actor_verified"] is False


def test_a_signature_by_another_key_under_the_actors_key_id_is_refused(people: People) -> None:
    dave, mallory = people.signer("dave"), people.signer("mallory").as_actor("dave")
    envelope = seal_envelope(mallory, ledger=_ledger_id(people.env), fleet=FLEET, action="deploy",
                             args={"supersede": False, "version": "v1"})
    forged = type(envelope)(envelope.envelope, dave.kid, envelope.sig)
    before = count(people.env)
    refused_with(people.env, _api_submit(people, Deploy("v1", Meta("dave")), signed=forged),
                 Check.ACTOR_SIGNATURE, before)


def test_a_forced_rollback_without_approval_is_refused(people: People,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    live_v1_v2(people, capsys)
    before = count(people.env)
    result = cli(capsys, people.env, *as_(people, "olga", "rollback", "--reason", "now", "--no-drive",
                                          "--force-bad-target"))
    refusal = refused_with(people.env, result, Check.APPROVAL_MISSING, before)
    assert (refusal["event"], refusal["actor_verified"]) == ("command.pending", True)
    assert f"ledger approve {refusal['seq']}" in result.err


# -- approvals -------------------------------------------------------------------------------------


def test_a_forced_rollback_is_decided_once_another_actor_approves(
        people: People, capsys: pytest.CaptureFixture[str], checking: str) -> None:
    env = people.env
    write_pem_key(env.dir / "oscar.key")
    people.keys["oscar"] = env.dir / "oscar.key"
    ok(cli(capsys, env, "actors", "add", "oscar", "--public-key", f"{env.dir / 'oscar.key'}.pub",
           "--role", "oncall", "--actor", "alice", "--actor-key", str(people.key("alice"))))
    live_v1_v2(people, capsys)
    ok(cli(capsys, env, *as_(people, "olga", "mark", "bad", "v1", "--reason", "corrupts audio")))
    result = cli(capsys, env, *as_(people, "olga", "rollback", "--to", "v1", "--force-bad-target",
                                   "--reason", "v2 is worse", "--no-drive"))
    assert result.code == 1 and "(approval_missing)" in result.err
    request = records(env)[-1]["seq"]
    steps = [("olga", Check.SELF_APPROVAL), ("dave", Check.ROLE_DENIED), ("oscar", None),
             ("oscar", "decided")]
    for who, expected in steps:
        before = count(env)
        result = cli(capsys, env, "approve", str(request), "--fleet", FLEET, "--actor", who,
                     "--actor-key", str(people.key(who)))
        if expected == "decided":
            assert result.code == 2 and "was decided" in result.err
            assert count(env) == before
        elif expected is None:
            ok(result)
            assert "approvals complete" in result.out
            decision, approval = records(env)[-2:]
            assert decision["rollback_id"] == f"rb{decision['seq']}"
            assert (approval["event"], approval["actor"]) == ("command.approved", "oscar")
            assert (decision["event"], decision["actor"], decision["forced"]) == (
                "deployment.rolled_back", "olga", True)
            assert decision["request_seq"] == request
            assert [a["actor"] for a in decision["approvals"]] == ["oscar"]
        else:
            assert isinstance(expected, Check)
            refusal = refused_with(env, result, expected, before)
            assert refusal["request_seq"] == request
    assert "actors: " in ok(cli(capsys, env, "verify")).out
    history = orjson.loads(ok(cli(capsys, env, "history", "--fleet", FLEET, "-o", "json")).out)
    assert history["actors"]["authenticated"] is True
    rollback = next(d for d in history["decisions"] if d["event"] == "deployment.rolled_back")
    assert (rollback["requested_by"], rollback["approved_by"], rollback["signature_verified"]) == (
        "olga", ["oscar"], True)

    def drop_approvals(record: dict[str, Any]) -> None:
        record["approvals"] = []

    reseal_head(env, drop_approvals, back=1)
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1])
    assert (caught.value.fault.seq, caught.value.fault.check) == (count(env) - 1, "approvals")


def test_policy_changes_wait_for_other_admins_and_an_approval_counts_once(
        people: People, capsys: pytest.CaptureFixture[str]) -> None:
    env = people.env
    signs = {"alice": people.key("alice"), "root": people.key("ann"), "rex": people.key("mallory")}

    def as_admin(name: str) -> list[str]:
        return ["--actor", name, "--actor-key", str(signs[name])]

    for name in ("root", "rex"):
        ok(cli(capsys, env, "actors", "add", name, "--public-key", f"{signs[name]}.pub", "--role", "admin",
               *as_admin("alice")))

    def approve(request: int, name: str) -> CliResult:
        return cli(capsys, env, "approve", str(request), "--policy", *as_admin(name))

    result = cli(capsys, env, "policy", "enable", "--persons", "3", *as_admin("alice"))
    assert result.code == 1 and "(approval_missing)" in result.err
    ok(approve(records(env, POLICY_CHAIN)[-1]["seq"], "root"))
    assert orjson.loads(ok(cli(capsys, env, "policy", "show", "-o", "json")).out)["persons"] == 3

    result = cli(capsys, env, "policy", "grant", "deployer", "--actions", "deploy,complete",
                 "--fleets", "prod*", *as_admin("alice"))
    assert result.code == 1 and "(approval_missing)" in result.err
    request = records(env, POLICY_CHAIN)[-1]["seq"]
    assert "waits for more approvals" in ok(approve(request, "root")).out
    repeated = approve(request, "root")
    assert repeated.code == 1 and "(approval_repeated)" in repeated.err
    assert records(env, POLICY_CHAIN)[-1]["check"] == "approval_repeated"
    ok(approve(request, "rex"))
    granted = records(env, POLICY_CHAIN)[-2]
    assert (granted["event"], granted["fleets"]) == ("role.granted", ["prod*"])
    assert granted["request_seq"] == request
    assert sorted(a["actor"] for a in granted["approvals"]) == ["rex", "root"]
    shown = orjson.loads(ok(cli(capsys, env, "policy", "show", "-o", "json")).out)
    assert shown["roles"]["deployer"] == {"actions": ["complete", "deploy"], "fleets": ["prod*"]}
    assert approve(request, "rex").code == 2  # decided: nothing more to approve
    assert "actors: " in ok(cli(capsys, env, "verify")).out


def test_policy_changes_are_refused_by_their_checks(people: People, capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    env, admin = people.env, ["--actor", "alice", "--actor-key", str(people.key("alice"))]
    cases = [
        (["actors", "add", "dave", "--public-key", f"{people.key('mallory')}.pub", *admin],
         Check.ACTOR_EXISTS),
        (["actors", "revoke", "nobody", *admin], Check.ACTOR_UNKNOWN),
        (["actors", "add", "eve", "--public-key", f"{people.key('mallory')}.pub", "--actor", "dave",
          "--actor-key", str(people.key("dave"))], Check.ROLE_DENIED),
    ]
    for argv, check in cases:
        before = count(env, POLICY_CHAIN)
        result = cli(capsys, env, *argv)
        assert result.code == 1 and f"({check.value})" in result.err, (argv, result)
        assert count(env, POLICY_CHAIN) == before + 1
        assert records(env, POLICY_CHAIN)[-1]["check"] == check.value


def test_a_second_bootstrap_of_an_enforced_policy_is_refused(people: People) -> None:
    with people.env.open(writable=False) as lg:
        policy = fold(lg.records(POLICY_CHAIN))
    command = EnablePolicy(Meta("alice"), admin="eve", admin_keys=(people.signer("mallory").public_raw,))
    decision = decide_policy(policy, command)
    assert isinstance(decision, Refused) and decision.check is Check.POLICY_ENFORCED


REFUSALS_COVERED = {  # the test above each check is exercised by
    Check.ACTOR_UNSIGNED, Check.ENVELOPE_MISMATCH, Check.ACTOR_KEY_UNKNOWN, Check.ACTOR_SIGNATURE,
    Check.ACTOR_KEY_REVOKED, Check.NONCE_REUSED, Check.ENVELOPE_EXPIRED, Check.ROLE_DENIED,
    Check.APPROVAL_MISSING, Check.ACTOR_EXISTS, Check.ACTOR_UNKNOWN, Check.POLICY_ENFORCED,
    Check.SELF_APPROVAL, Check.APPROVAL_REPEATED, Check.REPORTER_UNBOUND,
}


def test_every_check_of_who_may_ask_has_a_test_here() -> None:
    assert REFUSALS_COVERED == ACTOR_CHECKS


# -- malformed input -------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END"
                                     b" PRIVATE KEY-----\n", b"\x00" * 31])
def test_a_malformed_actor_key_exits_2_and_writes_nothing(people: People, capsys: pytest.CaptureFixture[str],
                                                          content: bytes) -> None:
    bad = people.env.dir / "bad.key"
    bad.write_bytes(content)
    before = count(people.env)
    result = cli(capsys, people.env, "deploy", "v1", "--fleet", FLEET, "--actor", "dave",
                 "--actor-key", str(bad))
    assert result.code == 2 and "actor key file" in result.err
    assert count(people.env) == before


def test_an_ssh_keygen_key_signs(people: People, capsys: pytest.CaptureFixture[str]) -> None:
    assert shutil.which("ssh-keygen"), "no ssh-keygen: scripts/setup installs openssh-client (as root)"
    env = people.env
    path = env.dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kim@host", "-f", str(path)],
                   check=True)
    ok(cli(capsys, env, "actors", "add", "kim", "--public-key", f"{path}.pub", "--role", "deployer",
           "--actor", "alice", "--actor-key", str(people.key("alice"))))
    ok(cli(capsys, env, "deploy", "v1", "--fleet", FLEET, "--actor", "kim", "--actor-key", str(path)))
    assert records(env)[-1]["actor_verified"] is True


# -- verify: who did it ----------------------------------------------------------------------------


def reseal_head(env: Env, change: Any, back: int = 0) -> None:
    """Rewrite a record of the fleet (`back` records before the head) and seal it and those after
    it again with the ledger key: what someone holding the ledger key and the database can do."""
    tamper = env.tamper
    rows = tamper.rows()
    signer, ledger_id = load_signer(env.key), _ledger_id(env)
    prev = None
    for seq, data in rows[len(rows) - 1 - back:]:
        record = orjson.loads(data)
        if prev is None:
            change(record)
        else:
            record["prev"] = prev
        body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
        record["hash"] = prev = hashlib.sha256(canonical(body)).hexdigest()
        record["sig"] = signer.sign(signed_message(record["hash"], ledger_id))
        tamper.set_state(seq, canonical(record))


def test_verify_catches_an_altered_actor_signature(people: People, capsys: pytest.CaptureFixture[str],
                                                   checking: str) -> None:
    live_v1_v2(people, capsys)
    other = people.signer("dave").sign(b"something else")

    def alter(record: dict[str, Any]) -> None:
        record["actor_sig"] = other

    reseal_head(people.env, alter, back=1)
    with people.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1])
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check) == (FLEET, count(people.env) - 1, "actor signature")
    result = cli(capsys, people.env, "verify")
    assert result.code == 1 and "actor signature" in result.err


@pytest.mark.parametrize("kept", [0, 1])
def test_verify_does_not_take_a_ledger_whose_policy_records_were_deleted_as_open_mode(
        people: People, capsys: pytest.CaptureFixture[str], kept: int) -> None:
    """Deleting the policy chain (or cutting it back to before the policy was enforced) would
    make every signed decision unchecked: verify names the first decision attested under the
    policy instead of reporting open mode."""
    live_v1_v2(people, capsys)
    tamper_for(people.env.db, POLICY_CHAIN).truncate_after(kept)
    first = next(r["seq"] for r in records(people.env) if "actor_verified" in r)
    result = cli(capsys, people.env, "verify")
    assert result.code == 1 and "open mode" not in result.out
    found = (f"{kept} {POLICY_CHAIN} record(s) that never enforce a policy" if kept
             else f"no {POLICY_CHAIN} records")
    assert result.err == (f"ledger: policy position at {FLEET} seq {first}: expected a policy chain "
                          f"({POLICY_CHAIN}) that enforces the policy this record names, found {found} "
                          "(policy records deleted? the record's actor checks cannot be made)\n")


@pytest.mark.parametrize("kid", ["ledger", "actor"])
def test_verify_catches_a_command_rewritten_and_signed_with_the_ledger_key(
        people: People, capsys: pytest.CaptureFixture[str], kid: str, checking: str) -> None:
    env = people.env
    ok(cli(capsys, env, *as_(people, "dave", "deploy", "v1")))
    ledger_key = load_signer(env.key)

    def forge(record: dict[str, Any]) -> None:
        record["version"] = "v-evil"
        record["envelope"]["args"]["version"] = "v-evil"
        message = b"deploy-ledger/command/v1\x00" + canonical(record["envelope"])
        record["actor_sig"] = ledger_key.sign(message)
        if kid == "ledger":
            record["actor_kid"] = ledger_key.kid

    reseal_head(env, forge)
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1], all_signatures=True)
    fault = caught.value.fault
    assert fault.seq == 1
    assert fault.check == ("actor key" if kid == "ledger" else "actor signature")


def test_verify_catches_a_decision_with_its_signature_stripped(
        people: People, capsys: pytest.CaptureFixture[str]) -> None:
    ok(cli(capsys, people.env, *as_(people, "dave", "deploy", "v1")))

    def strip(record: dict[str, Any]) -> None:
        for name in ("actor_verified", "envelope", "actor_kid", "actor_sig", "policy_seq"):
            record.pop(name)

    reseal_head(people.env, strip)
    with people.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1])
    assert caught.value.fault.check == "policy position"
