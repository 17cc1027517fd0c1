"""Keys: creation, display, rotation, and verification anchored at a public key."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, VerificationError
from ledger import commands as build
from ledger.chain import seal
from ledger.keys import load_signer
from tests.conftest import Env, run_cli, seed, submit


def test_init_creates_a_private_key_of_mode_0600_and_prints_only_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key = tmp_path / "l.db", tmp_path / "l.key"
    result = run_cli(capsys, "init", "--db", str(db), "--key", str(key))
    assert result.code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pem = key.read_text()
    assert "PRIVATE KEY" in pem
    body = "".join(pem.splitlines()[1:-1])
    assert body not in result.out + result.err
    public = key.with_name("l.key.pub").read_text().strip()
    assert f"public key {public}" in result.out
    again = run_cli(capsys, "init", "--db", str(db), "--key", str(key), "--reuse-key")
    assert again.code == 2 and "already a ledger" in again.err


def test_keys_show_prints_the_public_key(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "keys", "show", *env.args())
    assert result.code == 0
    assert env.pub.read_text().strip() in result.out


def test_rotation_is_followed_by_verify(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    old = load_signer(env.key)
    with env.open() as lg:
        seed(lg)
    result = run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec", "--reason", "yearly")
    assert result.code == 0
    new = load_signer(env.key)
    assert new.kid != old.kid
    with env.open() as lg:
        receipt = submit(lg, "prod", build.deploy("v2", "ci"))[-1]
        record = list(lg.records("prod"))[-1]
        assert record["kid"] == new.kid and receipt.seq == 7
        lg.verify()  # anchored at the original key, follows the rotation
    # the anchor file still holds the original key, so a reviewer needs only it
    assert run_cli(capsys, "verify", *env.args(), "--public-key", str(env.pub)).code == 0


def test_the_retired_key_cannot_append(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    retired = tmp_path / "retired.key"
    retired.write_bytes(env.key.read_bytes())
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    result = run_cli(capsys, "deploy", "v2", "--actor", "ci", "--db", str(env.db), "--key", str(retired))
    assert result.code == 2 and "is not this ledger's signing key" in result.err


def test_a_record_signed_by_a_retired_key_after_retirement_is_a_fault(env: Env,
                                                                     tmp_path: Path) -> None:
    old = load_signer(env.key)
    with env.open() as lg:
        seed(lg)
        lg.rotate_key("sec")
        submit(lg, "prod", build.deploy("v2", "ci"))
        head = lg.head("prod")
    # an insider with the old key appends after the rotation, straight into the table
    body = build.complete("v2", "mallory")
    _, data = seal(body, fleet="prod", seq=head.seq + 1, prev=head.hash, timestamp=head.timestamp,
                   signer=old, ledger_id=lg.ledger_id)
    env.tamper.insert(head.seq + 1, "deployment.completed", data)
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    assert caught.value.fault.seq == head.seq + 1
    assert caught.value.fault.check == "key"


def test_a_ledger_rewritten_under_another_key_fails(env: Env, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    forged_db, forged_key = tmp_path / "forged.db", tmp_path / "forged.key"
    with Ledger.init(forged_db, forged_key) as forged:
        seed(forged)
    result = run_cli(capsys, "verify", "--db", str(forged_db), "--public-key", str(env.pub))
    assert result.code == 1
    assert "@keys seq 1" in result.err and "unknown key" in result.err


def test_verify_without_any_trusted_key_is_an_input_error(env: Env, user_config: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(user_config / "deploy-ledger")  # no pin; the .pub beside the key is not an anchor
    assert env.pub.exists()
    result = run_cli(capsys, "verify", *env.args())
    assert result.code == 2 and result.err.count("\n") == 1
    assert "no trust anchor for ledger" in result.err and "--public-key" in result.err
    assert "LEDGER_TRUST" in result.err


def test_a_writer_holding_the_old_key_reseals_after_a_rotation_elsewhere(env: Env) -> None:
    """The key guard runs inside the insert's transaction: a stale writer is refused
    there, reloads the key file, seals again, and nothing lands signed by a retired key."""
    import time

    with env.open() as stale, env.open() as rotator:
        submit(stale, "prod", build.deploy("v1", "ci"))  # caches the key and the head
        rotator.rotate_key("sec")
        new_kid = load_signer(env.key).kid
        started = time.monotonic()
        submit(stale, "prod", build.complete("v1", "ci"))
        stale.append_many("prod", [build.worker_sessions("w", "v1", i, "w") for i in range(2500)])
        assert time.monotonic() - started < 30
        kids = [r["kid"] for r in stale.records("prod")]
        assert kids[1:] == [new_kid] * (len(kids) - 1)
        stale.verify()


def test_an_interrupted_rotation_keeps_the_new_key_it_committed(env: Env,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit whose acknowledgement is lost must not cost the ledger its signing key."""
    from ledger.errors import StorageError
    from ledger.store import Store

    real = Store.insert_locked

    def commit_then_fail(self: Store, make: Any) -> None:
        real(self, make)
        raise StorageError("connection lost after commit")

    with env.open() as lg:
        seed(lg)
        monkeypatch.setattr(Store, "insert_locked", commit_then_fail)
        with pytest.raises(StorageError):
            lg.rotate_key("sec")
        monkeypatch.setattr(Store, "insert_locked", real)
    with env.open() as lg:  # the next writer finishes the rotation and signs with the new key
        submit(lg, "prod", build.deploy("v2", "ci"))
        kid, _, _ = lg.current_key()
        assert load_signer(env.key).kid == kid
        lg.verify()
