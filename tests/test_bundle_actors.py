"""An enforced ledger's bundle carries its policy chain, and `verify --bundle` re-checks who did what.

The bundle of a ledger with actors holds `policy.jsonl` (the `@policy` chain as
`ledger feed --fleet @policy` prints it); `verify --bundle` verifies it like any
chain and runs the same actor checks `ledger verify` runs on a database, with
the database deleted. A bundle whose records carry actor signatures but whose
policy chain is missing, emptied or altered fails with evidence; a re-export
only appends to `policy.jsonl`, and refuses one that was rewritten. Verify
counts signed commands and signed facts apart, and only up to the head it
verified. Runs on SQLite and PostgreSQL (`env`), with real files and processes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from ledger.bundle import POLICY_FILE, verify_bundle, write_bundle
from ledger.chain import Checkpoint, checkpoint_origin, merkle_root, note_key_name, sign_checkpoint
from ledger.encoding import canonical
from ledger.errors import VerificationError
from ledger.keys import load_signer, read_public_key
from ledger.policy import OPEN_NOTE, POLICY_CHAIN
from ledger.store import KEY_CHAIN
from tests.conftest import Env, _connect, doctored_copy, run_cli, run_process, seed
from tests.test_actors import (
    FLEET,
    People,
    as_,
    cli,
    enforced_people,
    live_v1_v2,
    ok,
    records,
    reseal_head,
    write_openssh_key,
    write_pem_key,
)

Cap = pytest.CaptureFixture[str]


@pytest.fixture
def people(env: Env, capsys: Cap) -> People:
    """An enforced ledger with signed deploys, a forced rollback approved by a second on-call
    (oscar), and a fact signed by a reporter (rep, bound to workers `w*`)."""
    people = enforced_people(env, capsys)
    write_pem_key(env.dir / "oscar.key")
    people.keys["oscar"] = env.dir / "oscar.key"
    write_openssh_key(env.dir / "rep", "rep@pool")
    people.keys["rep"] = env.dir / "rep"
    admin = ["--actor", "alice", "--actor-key", str(people.key("alice"))]
    ok(cli(capsys, env, "actors", "add", "oscar", "--public-key", f"{people.key('oscar')}.pub",
           "--role", "oncall", *admin))
    ok(cli(capsys, env, "actors", "add", "rep", "--public-key", f"{people.key('rep')}.pub",
           "--role", "reporter", "--worker", "w*", *admin))
    live_v1_v2(people, capsys)
    ok(cli(capsys, env, *as_(people, "rep", "worker", "start", "w1", "--version", "v2")))
    ok(cli(capsys, env, *as_(people, "olga", "mark", "bad", "v1", "--reason", "corrupts audio")))
    pending = cli(capsys, env, *as_(people, "olga", "rollback", "--to", "v1", "--force-bad-target",
                                    "--reason", "v2 is worse", "--no-drive"))
    assert pending.code == 1 and "(approval_missing)" in pending.err
    request = str(records(env)[-1]["seq"])
    ok(cli(capsys, env, "approve", request, "--fleet", FLEET, "--actor", "oscar",
           "--actor-key", str(people.key("oscar"))))
    return people


def signed(env: Env) -> tuple[int, int]:
    """(signed commands, signed facts) among the fleet's records, counted from the records."""
    verified = [r for r in records(env) if r.get("actor_verified") is True]
    facts = sum(r["envelope"]["action"] == "report" for r in verified)
    return len(verified) - facts, facts


def export(capsys: Cap, env: Env, out: Path) -> None:
    result = run_cli(capsys, "export", *env.args(), "--fleet", FLEET, "--out", str(out))
    assert result.code == 0, result.err


def verify(capsys: Cap, env: Env, bundle: Path) -> tuple[int, str, str]:
    result = run_cli(capsys, "verify", "--bundle", str(bundle), "--public-key", str(env.pub))
    assert result.code == 0 or result.err.count("\n") == 1, result.err  # one line, no traceback
    return result.code, result.out, result.err


def forget_database(env: Env) -> None:
    """Delete the ledger's database: its SQLite files, or every table of its PostgreSQL schema."""
    if env.backend == "sqlite":
        for path in env.dir.glob("ledger.db*"):  # the database, its journal, views, run directory
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        assert not Path(env.db).exists()
        return
    [schema] = parse_qs(urlsplit(env.db).query)["schema"]
    with _connect(env.db) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        connection.execute(f'CREATE SCHEMA "{schema}"')


def test_an_enforced_bundle_verifies_with_the_database_deleted(people: People, capsys: Cap) -> None:
    env = people.env
    commands, facts = signed(env)
    assert commands >= 8 and facts == 1
    out = env.dir / "bundle"
    export(capsys, env, out)
    feed = run_cli(capsys, "feed", "--fleet", POLICY_CHAIN, *env.args())
    assert feed.code == 0 and (out / POLICY_FILE).read_text() == feed.out  # the feed's lines, as they are
    from_database = ok(cli(capsys, env, "verify")).out.splitlines()[-1]
    line = f"actors: {commands} signed command(s), {facts} signed fact(s) verified against the policy"
    assert from_database.startswith(line)
    assert "policy.jsonl" in (out / "VERIFY.md").read_text()

    forget_database(env)
    result = run_process("verify", "--bundle", "bundle", "--public-key", str(env.pub), cwd=env.dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"verified bundle: {len(records_in(out))} records in fleet {FLEET}")
    assert lines[1] == from_database  # the same checks, the same count, with no database


def records_in(bundle: Path) -> list[bytes]:
    """The fleet's records as a tlog-tiles client reads them from the entry bundles."""
    found: list[bytes] = []
    for path in sorted((bundle / "tile" / "entries").rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        while data:
            length = int.from_bytes(data[:2], "big")
            found.append(data[2:2 + length])
            data = data[2 + length:]
    return found


def _edit_line(number: int, change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        record = orjson.loads(lines[number - 1])
        change(record)
        lines[number - 1] = canonical(record)
        return b"\n".join(lines)
    return edit


def _drop_line(number: int) -> Callable[[bytes], bytes]:
    def drop(data: bytes) -> bytes:
        lines = data.split(b"\n")
        return b"\n".join(lines[:number - 1] + lines[number:])
    return drop


def _grant_all(record: dict[str, Any]) -> None:
    record["actions"] = ["deploy", "rollback"]


def test_a_missing_emptied_or_altered_policy_chain_is_refused_with_evidence(
        people: People, capsys: Cap) -> None:
    env = people.env
    out = env.dir / "bundle"
    export(capsys, env, out)
    policy = [orjson.loads(line) for line in (out / POLICY_FILE).read_bytes().splitlines()]
    first_signed = next(r["seq"] for r in records(env) if "policy_seq" in r)
    copies = iter(range(100))

    def doctored(change: Callable[[bytes], bytes] | None) -> str:
        copy = doctored_copy(out, env.dir / f"copy-{next(copies)}", POLICY_FILE, change)
        code, _, err = verify(capsys, env, copy)
        assert code == 1, err
        return err

    err = doctored(None)
    assert err.startswith(f"ledger: bundle at {FLEET} seq {first_signed}: ") and "no policy.jsonl" in err
    assert "never enforces a policy" in doctored(lambda _: b"")
    grant = next(r["seq"] for r in policy if r["event"] == "role.granted")
    err = doctored(_edit_line(grant, _grant_all))
    assert err.startswith(f"ledger: hash at {POLICY_CHAIN} seq {grant}: ")
    assert f"policy.jsonl line {grant}" in err
    assert f"at {POLICY_CHAIN} seq 3: " in doctored(_drop_line(3))
    # Cut short after the reporter was added: every record naming a later policy position fails.
    cut = len(policy) - 1
    err = doctored(lambda data: b"".join(line + b"\n" for line in data.splitlines()[:cut]))
    assert "policy position at prod seq" in err and f"(1..{cut})" in err and "tile/entries/" in err


def test_a_tampered_record_fails_the_hash_and_a_rewritten_command_the_actor_check(
        people: People, capsys: Cap) -> None:
    env = people.env
    out = env.dir / "bundle"
    export(capsys, env, out)
    [entries] = [p for p in (out / "tile" / "entries").rglob("*") if p.is_file()]
    data = entries.read_bytes()
    entries.write_bytes(data.replace(b'"version":"v2"', b'"version":"v3"', 1))
    code, _, err = verify(capsys, env, out)
    assert code == 1 and err.startswith("ledger: hash at prod seq 3: ")  # dave's `deploy v2`

    # Whoever holds the ledger key (and the database) rewrites the command and seals it again:
    # the chain holds, export refuses, and a bundle written by hand fails the actor check.
    deploy = next(r for r in records(env) if r["event"] == "deployment.started" and r["version"] == "v2")
    back = len(records(env)) - deploy["seq"]

    def forge(record: dict[str, Any]) -> None:
        record["reason"] = "nothing to see"
        record["envelope"]["args"]["reason"] = "nothing to see"

    reseal_head(env, forge, back=back)
    refused = run_cli(capsys, "export", *env.args(), "--fleet", FLEET, "--out", str(env.dir / "again"))
    assert refused.code == 1
    assert refused.err.startswith(f"ledger: actor signature at prod seq {deploy['seq']}: ")
    signer = load_signer(env.key)
    with env.open(writable=False) as lg:
        stored = list(lg.raw_records(FLEET))
        keys, policy = list(lg.raw_records(KEY_CHAIN)), list(lg.raw_records(POLICY_CHAIN))
        ledger_id = lg.ledger_id
    note = sign_checkpoint(Checkpoint(checkpoint_origin(ledger_id, FLEET), len(stored), merkle_root(stored),
                                      orjson.loads(stored[-1])["hash"]), signer,
                           note_key_name(ledger_id, signer.kid))
    forged = env.dir / "forged"
    write_bundle(forged, note, stored, keys, policy)
    with pytest.raises(VerificationError) as caught:
        verify_bundle(forged, read_public_key(str(env.pub), "--public-key"))
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check) == (FLEET, deploy["seq"], "actor signature")
    assert "in tile/entries/000.p/" in fault.detail


def test_a_re_export_after_a_new_actor_only_appends_to_the_policy_chain(people: People, capsys: Cap) -> None:
    env = people.env
    out = env.dir / "bundle"
    export(capsys, env, out)
    before = (out / POLICY_FILE).read_bytes()
    write_pem_key(env.dir / "pat.key")
    ok(cli(capsys, env, "actors", "add", "pat", "--public-key", f"{env.dir / 'pat.key'}.pub", "--role",
           "deployer", "--actor", "alice", "--actor-key", str(people.key("alice"))))
    cli(capsys, env, "deploy", "v3", "--fleet", FLEET, "--actor", "pat", "--actor-key",
        str(env.dir / "pat.key"))  # decided or refused, a record signed by pat
    export(capsys, env, out)
    after = (out / POLICY_FILE).read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert orjson.loads(after.splitlines()[-1])["name"] == "pat"
    code, got, _ = verify(capsys, env, out)
    assert code == 0 and "actors: " in got

    # A policy chain in the bundle that the ledger's does not extend: refused, nothing written.
    (out / POLICY_FILE).write_bytes(_edit_line(2, _grant_all)(after))
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cli(capsys, env, "deploy", "v4", "--fleet", FLEET, "--actor", "pat", "--actor-key",
        str(env.dir / "pat.key"))
    refused = run_cli(capsys, "export", *env.args(), "--fleet", FLEET, "--out", str(out))
    assert refused.code == 1
    assert refused.err == ("ledger: bundle at policy.jsonl seq 2: expected line 2 as exported before, "
                           "found another record (the history was rewritten since)\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_an_open_ledger_bundle_has_no_policy_chain_and_says_what_that_means(env: Env, capsys: Cap) -> None:
    with env.open() as lg:
        seed(lg)
    out = env.dir / "bundle"
    export(capsys, env, out)
    assert not (out / POLICY_FILE).exists()
    assert "No `policy.jsonl` means the ledger had no policy" in (out / "VERIFY.md").read_text()
    code, got, _ = verify(capsys, env, out)
    assert code == 0 and got.splitlines()[1] == OPEN_NOTE


def test_verify_checks_signed_commands_only_up_to_the_head_it_verified(
        people: People, capsys: Cap, checking: str) -> None:
    env = people.env
    before = records(env)
    commands, facts = signed(env)
    appended: list[int] = []

    def append_while_verifying(done: int, total: int) -> None:
        if not appended:  # the fleet is verified first: a signed command lands before its actors are
            appended.append(done)
            cli(capsys, env, *as_(people, "dave", "deploy", "v5", "--reason", "meanwhile"))

    with env.open(writable=False) as lg:
        report = lg.verify(lg.current_key()[1], progress=append_while_verifying)
    assert appended == [len(before)]
    assert len(records(env)) == len(before) + 1 and records(env)[-1]["actor_verified"] is True
    [chain] = report.chains
    assert chain.count == len(before)
    assert (report.actors.signed.commands, report.actors.signed.facts) == (commands, facts)
    assert report.actors.describe().startswith(
        f"actors: {commands} signed command(s), {facts} signed fact(s) verified")
