"""Verify catches every edit of stored history, made directly with sqlite3.

Each case opens the real SQLite file behind a ledger and changes it the way an
attacker with database access would; `ledger verify` must exit 1 and name the
first bad position.
"""

from __future__ import annotations

import hashlib
import sqlite3
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

STREAM = "fleet:prod"


def rows(db: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(db) as c:
        return list(c.execute(
            "SELECT originator_version, state FROM stored_events WHERE originator_id=? "
            "ORDER BY originator_version", (STREAM,)))


def set_state(db: Path, seq: int, state: bytes) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
                  (state, STREAM, seq))


def record_at(db: Path, seq: int) -> dict[str, object]:
    return dict(orjson.loads(dict(rows(db))[seq]))


def edit_field(db: Path) -> None:
    record = record_at(db, 3)
    record["actor"] = "mallory"
    set_state(db, 3, canonical(record))


def flip_byte(db: Path) -> None:
    state = bytearray(dict(rows(db))[2])
    state[20] ^= 0x01
    set_state(db, 2, bytes(state))


def delete_record(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM stored_events WHERE originator_id=? AND originator_version=4", (STREAM,))


def swap_records(db: Path) -> None:
    data = dict(rows(db))
    set_state(db, 2, data[3])
    set_state(db, 3, data[2])


def swap_positions(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE stored_events SET originator_version=-1 WHERE originator_id=? "
                  "AND originator_version=2", (STREAM,))
        c.execute("UPDATE stored_events SET originator_version=2 WHERE originator_id=? "
                  "AND originator_version=3", (STREAM,))
        c.execute("UPDATE stored_events SET originator_version=3 WHERE originator_id=? "
                  "AND originator_version=-1", (STREAM,))


def _forged(db: Path, seq: int, prev: str) -> bytes:
    body = {"event": "deployment.completed", "actor": "mallory", "target": "fleet",
            "result": "success", "version": "evil"}
    last = record_at(db, max(dict(rows(db))))
    _, data = seal(body, fleet="prod", seq=seq, prev=prev, timestamp=str(last["timestamp"]),
                   signer=Signer.generate())
    return data


def insert_foreign(db: Path) -> None:
    last_seq = max(dict(rows(db)))
    data = _forged(db, last_seq + 1, str(record_at(db, last_seq)["hash"]))
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO stored_events VALUES (?,?,?,?)",
                  (STREAM, last_seq + 1, "deployment.completed", data))


def replace_rehashed_foreign(db: Path) -> None:
    set_state(db, 3, _forged(db, 3, str(record_at(db, 2)["hash"])))


def replace_resigned_kid_kept(db: Path) -> None:
    """Re-hash an edited record and sign with a foreign key, claiming the real kid."""
    record = record_at(db, 3)
    record["actor"] = "mallory"
    record.pop("hash")
    record.pop("sig")
    digest = hashlib.sha256(canonical(record)).hexdigest()
    from ledger.chain import signed_message

    record["hash"] = digest
    record["sig"] = Signer.generate().sign(signed_message(digest))
    set_state(db, 3, canonical(record))


def move_between_fleets(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE stored_events SET originator_id='fleet:staging' WHERE originator_id=? "
                  "AND originator_version=5", (STREAM,))


TAMPERS: list[tuple[str, Callable[[Path], None], int, str]] = [
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
                                           tamper: Callable[[Path], None], seq: int, check: str) -> None:
    with env.open() as lg:
        seed(lg)  # 6 records
    assert run_cli(capsys, "verify", *env.args()).code == 0
    tamper(env.db)
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


def truncate_tail(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM stored_events WHERE originator_id=? AND originator_version>4", (STREAM,))


@pytest.mark.parametrize("name", ["truncate-tail", "rewrite-same-size"])
def test_checkpoint_catches_truncation_and_rewrites(env: Env, capsys: pytest.CaptureFixture[str],
                                                    name: str) -> None:
    with env.open() as lg:
        seed(lg)
    checkpoint = _checkpoint(env, capsys)
    assert run_cli(capsys, "verify", *env.args(), "--checkpoint", str(checkpoint)).code == 0
    if name == "truncate-tail":
        truncate_tail(env.db)
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
    for seq, data in rows(env.db):
        record = orjson.loads(data)
        body = {k: v for k, v in record.items()
                if k not in ("seq", "prev", "hash", "kid", "sig", "fleet", "timestamp")}
        if seq == 1:
            body["version"] = "v1-rewritten"
        new, new_data = seal(body, fleet="prod", seq=seq, prev=prev, timestamp=record["timestamp"],
                             signer=signer)
        prev = new["hash"]
        set_state(env.db, seq, new_data)


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
        original = rows(env.db)
        seq, state = data.draw(st.sampled_from(original))
        offset = data.draw(st.integers(0, len(state) - 1))
        replacement = data.draw(st.integers(0, 255).filter(lambda b: b != state[offset]))
        changed = bytearray(state)
        changed[offset] = replacement
        set_state(env.db, seq, bytes(changed))
        try:
            with pytest.raises(VerificationError) as caught:
                lg.verify()
            assert caught.value.fault.seq == seq
        finally:
            set_state(env.db, seq, state)
