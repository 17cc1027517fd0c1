"""Trust and identity: verify trusts only an anchor the user chose, and records are bound
to the ledger they were written in.

Each ledger has a random identity, stated in its genesis record and bound into
every signature and checkpoint origin, so a chain (or a checkpoint) copied
from one ledger into another verifies there no longer, even when both share a
signing key. `verify` never trusts the `.pub` file beside the key by default:
an attacker who can replace the database can replace that file as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ledger import Ledger
from ledger import commands as build
from ledger.chain import seal
from ledger.keys import Signer, load_signer, write_private_key
from tests.backends import tamper_for
from tests.conftest import Env, _connect, run_cli, seed


@pytest.fixture
def other_db(env: Env, tmp_path: Path) -> Iterator[str]:
    """A place for a second ledger on the same backend as `env`."""
    if env.backend == "sqlite":
        yield str(tmp_path / "other.db")
        return
    base = env.db.split("?")[0]
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(base) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    yield f"{base}?schema={name}"
    with _connect(base) as c:
        c.execute(f'DROP SCHEMA "{name}" CASCADE')


def test_a_chain_copied_into_a_ledger_sharing_the_key_fails_verify(
        env: Env, other_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    with Ledger.init(other_db, env.key, reuse_key=True) as other:
        assert other.ledger_id != lg.ledger_id
    source = env.tamper
    target = tamper_for(other_db)
    for seq, data in source.rows():
        target.insert(seq, str(orjson.loads(data)["event"]), data)
    result = run_cli(capsys, "verify", "--db", other_db, "--key", str(env.key))
    assert result.code == 1, result
    assert result.err.count("\n") == 1
    assert "signature at prod seq 1:" in result.err
    assert f"for ledger {other.ledger_id}" in result.err and "another ledger" in result.err
    # the same rows verify where they were written
    assert run_cli(capsys, "verify", *env.args()).code == 0


def test_a_checkpoint_of_another_ledger_sharing_the_key_is_refused(
        env: Env, other_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    with Ledger.init(other_db, env.key, reuse_key=True) as other:
        seed(other)
    made = run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod")
    assert made.code == 0
    assert made.out.startswith(f"deploy-ledger/{lg.ledger_id}/prod\n")
    path = env.dir / "a.checkpoint"
    path.write_text(made.out)
    result = run_cli(capsys, "verify", "--db", other_db, "--key", str(env.key), "--checkpoint", str(path))
    assert result.code == 2, result
    assert "is not of this ledger" in result.err
    assert run_cli(capsys, "verify", *env.args(), "--checkpoint", str(path)).code == 0


def test_a_swapped_database_and_public_key_file_no_longer_pass(
        env: Env, other_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The attacker replaces the ledger and the `.pub` beside the key with their own."""
    with env.open() as lg:
        seed(lg)
    evil_key = tmp_path / "evil.key"
    with Ledger.init(other_db, evil_key, pin=False) as forged:  # made elsewhere: no pin of ours
        seed(forged)
    env.pub.write_text((tmp_path / "evil.key.pub").read_text())
    swapped = ["--db", other_db, "--key", str(env.key)]
    result = run_cli(capsys, "verify", *swapped)
    assert result.code == 2, result
    assert f"no trust anchor for ledger {forged.ledger_id}" in result.err

    # Claiming the real ledger's identity instead meets the pinned key, and fails there.
    target = tamper_for(other_db, "@keys")
    genesis = orjson.loads(target.rows()[0][1])
    body = {k: v for k, v in genesis.items()
            if k not in ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")}
    body["ledger_id"] = lg.ledger_id
    _, data = seal(body, fleet="@keys", seq=1, prev="0" * 64, timestamp=genesis["timestamp"],
                   signer=load_signer(evil_key), ledger_id=lg.ledger_id)
    target.set_state(1, data)
    result = run_cli(capsys, "verify", *swapped)
    assert result.code == 1, result
    assert "at @keys seq 1:" in result.err and "anchor: pinned at init" in result.out


def test_init_refuses_an_existing_key_file_unless_told(
        db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "existing.key"
    write_private_key(key, Signer.generate())
    refused = run_cli(capsys, "init", "--db", db, "--key", str(key))
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "already exists" in refused.err and "--reuse-key" in refused.err
    if not db.startswith("postgresql://"):
        assert not Path(db).exists()  # nothing was created
    nothing = run_cli(capsys, "verify", "--db", db)
    assert nothing.code == 2 and ("no ledger" in nothing.err or "holds no ledger" in nothing.err)
    assert run_cli(capsys, "init", "--db", db, "--key", str(key), "--reuse-key").code == 0


def test_the_anchor_pinned_at_init_serves_a_plain_verify(
        db: str, tmp_path: Path, user_config: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = str(tmp_path / "l.key")
    made = run_cli(capsys, "init", "--db", db, "--key", key)
    assert made.code == 0
    ledger_id = made.out.split("ledger id ")[1].split()[0]
    pinned = user_config / "deploy-ledger" / "trust" / f"{ledger_id}.pub"
    assert pinned.read_text() == (tmp_path / "l.key.pub").read_text()
    assert run_cli(capsys, "worker", "start", "w1", "--version", "v1", "--actor", "ci",
                   "--db", db, "--key", key).code == 0
    result = run_cli(capsys, "verify", "--db", db)
    assert result.code == 0
    assert f"anchor: pinned at init ({pinned}), key " in result.out
    assert "verified 1 records in fleet default" in result.out
    monkeypatch.setenv("LEDGER_TRUST", str(tmp_path / "l.key.pub"))
    result = run_cli(capsys, "verify", "--db", db)
    assert result.code == 0 and "anchor: LEDGER_TRUST, key " in result.out
    result = run_cli(capsys, "verify", "--db", db, "--public-key", str(tmp_path / "l.key.pub"))
    assert result.code == 0 and "anchor: given with --public-key, key " in result.out


def test_init_that_cannot_pin_its_anchor_leaves_no_key_and_no_pin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    db, key = str(tmp_path / "l.db"), tmp_path / "l.key"
    failed = run_cli(capsys, "init", "--db", db, "--key", str(key))
    assert failed.code == 4 and failed.err.count("\n") == 1
    assert "cannot pin the anchor" in failed.err
    assert not key.exists()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert run_cli(capsys, "init", "--db", db, "--key", str(key)).code == 0  # no --reuse-key needed
    assert run_cli(capsys, "verify", "--db", db).code == 0


def test_a_large_copied_chain_fails_in_the_parallel_verifier_too(
        sqlite_env: Env, tmp_path: Path) -> None:
    """Above the parallel threshold each verification worker checks signatures: it too must
    bind them to the ledger being verified."""
    import sqlite3

    from ledger import VerificationError
    from ledger.verify import PARALLEL_THRESHOLD

    with sqlite_env.open() as lg:
        lg.append_many("prod", [build.worker_sessions("w", "v1", i, "w")
                                for i in range(PARALLEL_THRESHOLD + 10)])
        assert lg.verify(fleets=["prod"]).chains[0].count == PARALLEL_THRESHOLD + 10
    other = tmp_path / "other.db"
    Ledger.init(other, sqlite_env.key, reuse_key=True).close()
    with sqlite3.connect(sqlite_env.db) as source, sqlite3.connect(other) as target:
        rows = source.execute("SELECT originator_id, originator_version, topic, state FROM stored_events "
                              "WHERE originator_id = 'fleet:prod'").fetchall()
        target.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows)
    with Ledger.open(other, writable=False) as copy, pytest.raises(VerificationError) as caught:
        copy.verify(fleets=["prod"])
    assert (caught.value.fault.chain, caught.value.fault.seq, caught.value.fault.check) == (
        "prod", 1, "signature")


@pytest.mark.parametrize("claimed", ["zz" * 16, "00" * 16, "ab", 7])
def test_a_damaged_ledger_id_is_a_fault_for_verify_and_refused_to_writers(
        env: Env, capsys: pytest.CaptureFixture[str], claimed: object) -> None:
    with env.open() as lg:
        seed(lg)
    keys = tamper_for(env.db, "@keys")
    genesis = orjson.loads(keys.rows()[0][1])
    genesis["ledger_id"] = claimed
    keys.set_state(1, orjson.dumps(genesis, option=orjson.OPT_SORT_KEYS))
    pub = str(env.pub)
    verified = run_cli(capsys, "verify", *env.args(), "--public-key", pub)
    assert verified.code == 1 and verified.err.count("\n") == 1, verified
    assert "at @keys seq 1:" in verified.err
    written = run_cli(capsys, "deploy", "v2", "--actor", "ci", "--fleet", "prod", *env.args())
    assert written.code == 2 and "no valid ledger id" in written.err, written
