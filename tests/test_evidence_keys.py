"""The key chain goes out as feed lines, and checkpoints verify with standard vkeys across rotations.

The note verifier below is written from c2sp.org/signed-note alone (not from
ledger.chain), so a checkpoint that passes it passes any conforming verifier.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import commands as build
from tests.conftest import Env, run_cli, seed


def note_verify(note: str, vkey_line: str) -> str:
    """Per c2sp.org/signed-note: the verified text, or raise ValueError."""
    name, key_hash_hex, encoded = vkey_line.split("+", 2)
    key = base64.b64decode(encoded)
    if key[0] != 0x01 or len(key) != 33:
        raise ValueError("not an Ed25519 vkey")
    key_hash = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_hash.hex() != key_hash_hex:
        raise ValueError("vkey hash mismatch")
    if not note.endswith("\n"):
        raise ValueError("note does not end in a newline")
    split = note.rindex("\n\n")
    text, signatures = note[: split + 1], note[split + 2:]
    for line in signatures.splitlines():
        dash, sig_name, blob_b64 = line.split(" ")
        if dash != "\u2014" or sig_name != name:
            continue
        blob = base64.b64decode(blob_b64)
        if blob[:4] != key_hash:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(blob[4:], text.encode())
        except InvalidSignature:
            raise ValueError("bad signature") from None
        return text
    raise ValueError("no signature by this key")


def test_keys_export_and_feed_of_keys_print_the_key_chain(env: Env,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    exported = run_cli(capsys, "keys", "export", *env.args())
    fed = run_cli(capsys, "feed", *env.args(), "--fleet", "@keys")
    assert exported.code == fed.code == 0
    assert exported.out == fed.out
    records = [orjson.loads(line) for line in exported.out.splitlines()]
    assert [r["event"] for r in records] == ["ledger.initialized", "key.rotated"]
    assert records[1]["prev"] == records[0]["hash"]


def test_checkpoints_across_a_rotation_verify_with_the_printed_vkeys(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
        ledger_id = lg.ledger_id
    before = run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    with env.open() as lg:
        lg.append("prod", build.worker_start("w9", "v1", "platform"))
    after = run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out
    shown = run_cli(capsys, "keys", "show", *env.args(), "--vkey")
    assert shown.code == 0
    old, new = shown.out.splitlines()
    kids = [r["new_kid"] for r in
            map(orjson.loads, run_cli(capsys, "keys", "export", *env.args()).out.splitlines())]
    assert old.startswith(f"deploy-ledger/{ledger_id}/{kids[0]}+")
    assert new.startswith(f"deploy-ledger/{ledger_id}/{kids[1]}+")
    assert note_verify(before, old).startswith(f"deploy-ledger/{ledger_id}/prod\n")
    assert note_verify(after, new).startswith(f"deploy-ledger/{ledger_id}/prod\n")
    for note, wrong in ((before, new), (after, old)):
        with pytest.raises(ValueError, match="no signature"):
            note_verify(note, wrong)
    tampered = before.replace("\nhead ", "\nhead 0", 1).replace("head 0", "head ", 1)
    tampered = tampered.replace(tampered.split("\n")[1], str(int(tampered.split("\n")[1]) + 1), 1)
    with pytest.raises(ValueError, match="bad signature"):
        note_verify(tampered, old)
    for note in (before, after):  # and the ledger still takes both as its own
        path = env.dir / "cp"
        path.write_text(note)
        assert run_cli(capsys, "verify", *env.args(), "--checkpoint", str(path)).code == 0
