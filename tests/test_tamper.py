"""Verify catches every edit of stored history, made directly in the database.

Each case opens the real database behind a ledger (a SQLite file, or a
PostgreSQL schema) and changes it the way an attacker with database access
would; `ledger verify` must exit 1 and name the first bad position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger, VerificationError
from ledger.chain import seal
from ledger.encoding import canonical
from ledger.keys import Signer
from tests.conftest import Env, run_cli, seed


def ledger_id(env: Env) -> str:
    with env.open(writable=False) as lg:
        return lg.ledger_id


def record_at(env: Env, seq: int) -> dict[str, object]:
    return dict(orjson.loads(dict(env.tamper.rows())[seq]))


def edit_field(env: Env) -> None:
    record = record_at(env, 3)
    record["actor"] = "mallory"
    env.tamper.set_state(3, canonical(record))


def flip_byte(env: Env) -> None:
    state = bytearray(dict(env.tamper.rows())[2])
    state[20] ^= 0x01
    env.tamper.set_state(2, bytes(state))


def delete_record(env: Env) -> None:
    env.tamper.delete(4)


def swap_records(env: Env) -> None:
    data = dict(env.tamper.rows())
    env.tamper.set_state(2, data[3])
    env.tamper.set_state(3, data[2])


def swap_positions(env: Env) -> None:
    env.tamper.swap_positions(2, 3)


def _forged(env: Env, seq: int, prev: str) -> bytes:
    body = {"event": "deployment.completed", "actor": "mallory", "target": "fleet",
            "result": "success", "version": "evil"}
    last = record_at(env, max(dict(env.tamper.rows())))
    _, data = seal(body, fleet="prod", seq=seq, prev=prev, timestamp=str(last["timestamp"]),
                   signer=Signer.generate(), ledger_id=ledger_id(env))
    return data


def insert_foreign(env: Env) -> None:
    last_seq = max(dict(env.tamper.rows()))
    data = _forged(env, last_seq + 1, str(record_at(env, last_seq)["hash"]))
    env.tamper.insert(last_seq + 1, "deployment.completed", data)


def replace_rehashed_foreign(env: Env) -> None:
    env.tamper.set_state(3, _forged(env, 3, str(record_at(env, 2)["hash"])))


def replace_resigned_kid_kept(env: Env) -> None:
    """Re-hash an edited record and sign with a foreign key, claiming the real kid."""
    record = record_at(env, 3)
    record["actor"] = "mallory"
    record.pop("hash")
    record.pop("sig")
    digest = hashlib.sha256(canonical(record)).hexdigest()
    from ledger.chain import signed_message

    record["hash"] = digest
    record["sig"] = Signer.generate().sign(signed_message(digest, ledger_id(env)))
    env.tamper.set_state(3, canonical(record))


def move_between_fleets(env: Env) -> None:
    env.tamper.move(5, "fleet:staging")


TAMPERS: list[tuple[str, Callable[[Env], None], int, str]] = [
    ("edit-field", edit_field, 3, "hash"),
    ("flip-one-byte", flip_byte, 2, ""),
    ("delete-record", delete_record, 4, "seq"),
    ("swap-two-records", swap_records, 2, "seq"),
    ("swap-positions", swap_positions, 2, "seq"),
    ("insert-foreign-signed", insert_foreign, 7, "signature"),
    ("replace-rehashed-foreign", replace_rehashed_foreign, 3, "signature"),
    ("rehash-and-forge-sig-keep-kid", replace_resigned_kid_kept, 3, "signature"),
    ("move-record-to-other-fleet", move_between_fleets, 5, "seq"),
]


@pytest.mark.parametrize(("tamper", "seq", "check"),
                         [pytest.param(t, s, c, id=name) for name, t, s, c in TAMPERS])
def test_verify_names_the_first_bad_record(env: Env, capsys: pytest.CaptureFixture[str],
                                           tamper: Callable[[Env], None], seq: int, check: str) -> None:
    with env.open() as lg:
        seed(lg)  # 6 records
    assert run_cli(capsys, "verify", *env.args()).code == 0
    tamper(env)
    result = run_cli(capsys, "verify", *env.args(), "--fleet", "prod")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert f"prod seq {seq}:" in result.err
    assert check in result.err.split(" at ")[0]


def _checkpoint(env: Env, capsys: pytest.CaptureFixture[str]) -> Path:
    result = run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod")
    assert result.code == 0
    path = env.dir / "checkpoint.txt"
    path.write_text(result.out)
    return path


@pytest.mark.parametrize("name", ["truncate-tail", "rewrite-same-size"])
def test_checkpoint_catches_truncation_and_rewrites(env: Env, capsys: pytest.CaptureFixture[str],
                                                    name: str) -> None:
    with env.open() as lg:
        seed(lg)
    checkpoint = _checkpoint(env, capsys)
    assert run_cli(capsys, "verify", *env.args(), "--checkpoint", str(checkpoint)).code == 0
    if name == "truncate-tail":
        env.tamper.truncate_after(4)
        # Without the checkpoint, a clean truncation is undetectable by design.
        assert run_cli(capsys, "verify", *env.args()).code == 0
    else:
        _rewrite_with_real_key(env)
        assert run_cli(capsys, "verify", *env.args()).code == 0
    result = run_cli(capsys, "verify", *env.args(), "--checkpoint", str(checkpoint))
    assert result.code == 1
    expected = "truncated" if name == "truncate-tail" else "checkpoint root"
    assert expected in result.err


def _rewrite_with_real_key(env: Env) -> None:
    """An insider with the signing key rewrites history; only a kept checkpoint shows it."""
    from ledger.keys import load_signer

    signer = load_signer(env.key)
    prev = "0" * 64
    for seq, data in env.tamper.rows():
        record = orjson.loads(data)
        body = {k: v for k, v in record.items()
                if k not in ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")}
        if seq == 1:
            body["version"] = "v1-rewritten"
        new, new_data = seal(body, fleet="prod", seq=seq, prev=prev, timestamp=record["timestamp"],
                             signer=signer, ledger_id=ledger_id(env))
        prev = new["hash"]
        env.tamper.set_state(seq, new_data)


def test_checkpoint_from_another_ledger_is_refused(env: Env, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    with env.open() as lg:
        seed(lg)
    other_db, other_key = tmp_path / "other.db", tmp_path / "other.key"
    with Ledger.init(other_db, other_key) as other:
        seed(other)
    result = run_cli(capsys, "checkpoint", "--db", str(other_db), "--key", str(other_key),
                     "--fleet", "prod")
    path = tmp_path / "other.cp"
    path.write_text(result.out)
    result = run_cli(capsys, "verify", *env.args(), "--checkpoint", str(path))
    assert result.code == 2
    assert "does not verify" in result.err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_detected(env: Env, data: st.DataObject) -> None:
    with env.open() as lg:
        if not lg.fleets():
            seed(lg)
        original = env.tamper.rows()
        seq, state = data.draw(st.sampled_from(original))
        offset = data.draw(st.integers(0, len(state) - 1))
        replacement = data.draw(st.integers(0, 255).filter(lambda b: b != state[offset]))
        changed = bytearray(state)
        changed[offset] = replacement
        env.tamper.set_state(seq, bytes(changed))
        try:
            with pytest.raises(VerificationError) as caught:
                lg.verify()
            assert caught.value.fault.seq == seq
        finally:
            env.tamper.set_state(seq, state)


def test_a_missing_record_is_reported_before_a_bad_one_after_it(env: Env) -> None:
    with env.open() as lg:
        seed(lg)
    env.tamper.delete(3)
    edit = record_at(env, 4)
    edit["actor"] = "mallory"
    env.tamper.set_state(4, canonical(edit))
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    assert (caught.value.fault.seq, caught.value.fault.check) == (3, "seq")
