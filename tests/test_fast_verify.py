"""Default `verify` checks the signatures that carry the proof; `--all-signatures` checks every one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import ledger.verify as verify_module
from ledger import commands as build
from ledger.chain import link, signed_message
from ledger.encoding import canonical
from ledger.keys import load_signer
from tests.conftest import Env, run_cli, seed


def _grow(env: Env, n: int) -> None:
    with env.open() as lg:
        lg.append_many("prod", [build.worker_start(f"x{i}", "v1", "platform") for i in range(n)])


def _count_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = verify_module.verify_signature

    def counting(*args: Any) -> bool:
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(verify_module, "verify_signature", counting)
    return calls


def test_default_verify_checks_each_keys_last_signature_and_all_signatures_every_one(
        sqlite_env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = sqlite_env
    with env.open() as lg:
        seed(lg)
    _grow(env, 40)
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    _grow(env, 10)  # 56 records: 46 under the first key, 10 under the second
    calls = _count_signature_checks(monkeypatch)
    assert run_cli(capsys, "verify", *env.args(), "--fleet", "prod").code == 0
    assert calls[0] == 2 + 2  # the key chain's two records, then seq 46 and the head
    calls[0] = 0
    result = run_cli(capsys, "verify", *env.args(), "--fleet", "prod", "--all-signatures")
    assert result.code == 0 and "verified 56 records" in result.out
    assert calls[0] == 2 + 56


def _rows(env: Env) -> dict[int, bytes]:
    return {seq: bytes(data) for seq, data in env.tamper.rows()}


def test_history_rewritten_by_the_current_key_is_caught_at_the_retired_keys_last_record(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """An insider holding only the new key re-seals the chain from seq 2, keeping each kid:
    every hash and link is valid, and the last record claiming the retired key gives it away."""
    with env.open() as lg:
        seed(lg)
        ledger_id = lg.ledger_id
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    _grow(env, 3)
    insider = load_signer(env.key)
    rows = _rows(env)
    prev = orjson.loads(rows[1])["hash"]
    for seq in range(2, 10):
        record = orjson.loads(rows[seq])
        if seq == 2:
            record["actor"] = "mallory"
        body = {k: v for k, v in record.items()
                if k not in ("seq", "prev", "fleet", "timestamp", "kid", "hash", "sig")}
        sealed, data = _claiming(body, record, prev, insider, ledger_id)  # keeps each kid
        env.tamper.set_state(seq, data)
        prev = sealed["hash"]
    result = run_cli(capsys, "verify", *env.args(), "--fleet", "prod")
    assert result.code == 1
    assert "signature at prod seq 2:" in result.err  # the first bad record, named exactly


def _claiming(body: dict[str, Any], record: dict[str, Any], prev: str, signer: Any,
              ledger_id: str) -> tuple[dict[str, Any], bytes]:
    """Sealed by `signer` but naming the record's original (retired) kid."""
    sealed = link(body, fleet="prod", seq=record["seq"], prev=prev, timestamp=record["timestamp"],
                  kid=record["kid"])
    sealed["sig"] = signer.sign(signed_message(sealed["hash"], ledger_id))
    return sealed, canonical(sealed)


def test_a_damaged_signature_on_intact_content_is_found_only_with_all_signatures(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented limit: the content is proven by the head's signature, so the default
    passes; `--all-signatures` names the record whose own signature is bad."""
    with env.open() as lg:
        seed(lg)
    record = orjson.loads(_rows(env)[3])
    sig = record["sig"]
    record["sig"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    env.tamper.set_state(3, canonical(record))
    assert run_cli(capsys, "verify", *env.args(), "--fleet", "prod").code == 0
    full = run_cli(capsys, "verify", *env.args(), "--fleet", "prod", "--all-signatures")
    assert full.code == 1 and "signature at prod seq 3:" in full.err


def test_an_unchecked_signature_is_unchecked_in_form_too(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A `sig` that is not even base64 on intact content: outside the hash, its form proves
    nothing the signature check would not, so the default passes as for any damaged
    signature; `--all-signatures` checks its form and names it as a schema fault."""
    with env.open() as lg:
        seed(lg)
    record = orjson.loads(_rows(env)[3])
    record["sig"] = "not a signature!"
    env.tamper.set_state(3, canonical(record))
    assert run_cli(capsys, "verify", *env.args(), "--fleet", "prod").code == 0
    full = run_cli(capsys, "verify", *env.args(), "--fleet", "prod", "--all-signatures")
    assert full.code == 1 and "schema at prod seq 3:" in full.err and "sig" in full.err


def test_a_record_nested_deeper_than_any_encoder_writes_is_an_encoding_fault(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The parser takes deeper nesting than the encoder writes: such bytes were never written
    by the ledger, and verify names them (exit 1), never an internal error."""
    with env.open() as lg:
        seed(lg)
    env.tamper.set_state(2, b'{"a":' + b"[" * 300 + b"]" * 300 + b"}")
    for extra in ([], ["--all-signatures"]):
        result = run_cli(capsys, "verify", *env.args(), "--fleet", "prod", *extra)
        assert result.code == 1 and result.err.startswith("ledger: encoding at prod seq 2:"), result.err
