"""`ledger witness`: cosigns only a growing log, refuses truncation and forks saying why.

The cosignature is checked below from c2sp.org/tlog-cosignature alone.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import commands as build
from ledger.chain import Checkpoint, note_key_name, parse_checkpoint, sign_checkpoint
from ledger.keys import load_signer
from tests.conftest import Env, run_cli, seed

NAME = "witness.example/w1"


def cosignature_verifies(note: str, vkey: str) -> bool:
    name, key_id_hex, encoded = vkey.split("+", 2)
    key = base64.b64decode(encoded)
    assert key[0] == 0x04 and hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == key_id_hex
    body, signatures = note.split("\n\n", 1)
    for line in signatures.splitlines():
        _dash, line_name, blob_b64 = line.split(" ")
        blob = base64.b64decode(blob_b64)
        if line_name != name or blob[:4].hex() != key_id_hex:
            continue
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        message = f"cosignature/v1\ntime {timestamp}\n{body}\n".encode()
        Ed25519PublicKey.from_public_bytes(key[1:]).verify(blob[12:], message)
        return True
    return False


def _save(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_witness_cosigns_growth_and_refuses_truncation_and_forks(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    state = env.dir / "witness"
    made = run_cli(capsys, "witness", "init", "--state", str(state), "--name", NAME)
    assert made.code == 0
    vkey = made.out.strip()
    with env.open() as lg:
        seed(lg)
        ledger_id = lg.ledger_id
    old = _save(env.dir / "old", run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    trust = ["--state", str(state), "--name", NAME, "--public-key", str(env.pub)]
    first = run_cli(capsys, "witness", "cosign", old, *trust)
    assert first.code == 0, first.err
    assert cosignature_verifies(first.out, vkey)
    cosigned = _save(env.dir / "cosigned", first.out)  # still a checkpoint the ledger takes
    assert run_cli(capsys, "verify", *env.args(), "--checkpoint", cosigned).code == 0

    with env.open() as lg:
        lg.append("prod", build.worker_start("x1", "v1", "platform"))
    new = _save(env.dir / "new", run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    bare = run_cli(capsys, "witness", "cosign", new, *trust)
    assert bare.code == 2 and "consistency proof" in bare.err
    proof = _save(env.dir / "proof", run_cli(capsys, "prove", *env.args(), "--consistency", old, new).out)
    grown = run_cli(capsys, "witness", "cosign", proof, *trust)
    assert grown.code == 0, grown.err
    assert cosignature_verifies(grown.out, vkey)

    truncated = run_cli(capsys, "witness", "cosign", old, *trust)
    assert truncated.code == 1 and "truncation" in truncated.err and "shrank" in truncated.err

    signer = load_signer(env.key)
    real, _ = parse_checkpoint(Path(new).read_text())
    forked = Checkpoint(real.origin, real.size, hashlib.sha256(b"other").digest(), real.head)
    fork_text = sign_checkpoint(forked, signer, note_key_name(ledger_id, signer.kid))
    fork = run_cli(capsys, "witness", "cosign", _save(env.dir / "fork", fork_text), *trust)
    assert fork.code == 1 and "fork" in fork.err

    bigger = Checkpoint(real.origin, real.size + 3, hashlib.sha256(b"elsewhere").digest(), real.head)
    bigger_text = sign_checkpoint(bigger, signer, note_key_name(ledger_id, signer.kid))
    hashes = [base64.b64encode(hashlib.sha256(bytes([i])).digest()).decode() for i in range(3)]
    fake = "\n".join(["deploy-ledger/consistency-proof@v1", *hashes]) + "\n\n" + \
        Path(new).read_text() + "\n" + bigger_text
    refused = run_cli(capsys, "witness", "cosign", _save(env.dir / "fake", fake), *trust)
    assert refused.code == 1 and "fork" in refused.err

    stranger = run_cli(capsys, "witness", "cosign", new, "--state", str(state), "--name", NAME,
                       "--public-key", "ed25519:" + "A" * 43 + "=")
    assert stranger.code == 1
