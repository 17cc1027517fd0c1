"""The Merkle tree head is RFC 6962's, and checkpoints are C2SP signed notes."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger.chain import (
    Checkpoint,
    checkpoint_signed_by,
    leaf_hash,
    merkle_root,
    node_hash,
    note_key_hash,
    parse_checkpoint,
    sign_checkpoint,
)
from ledger.errors import InputError
from ledger.keys import Signer


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 6962 section 2.1 defines it, recursively, split at the largest power of two."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:split]) + rfc6962_root(leaves[split:])).digest()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 70])
def test_the_accumulated_root_is_rfc6962s(size: int) -> None:
    leaves = [f"record {i}".encode() for i in range(size)]
    assert merkle_root(leaves) == rfc6962_root(leaves)


def test_leaf_and_node_prefixes_keep_leaves_and_nodes_apart() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert leaf_hash(b"a") == hashlib.sha256(b"\x00a").digest()


def test_a_checkpoint_is_a_c2sp_signed_note_that_round_trips() -> None:
    signer = Signer.generate()
    checkpoint = Checkpoint("deploy-ledger/0011223344556677/prod", 3, merkle_root([b"a", b"b", b"c"]),
                            "ab" * 32)
    text = sign_checkpoint(checkpoint, signer)
    body, signature_line = text.split("\n\n")
    assert body.split("\n") == ["deploy-ledger/0011223344556677/prod", "3",
                                base64.b64encode(checkpoint.root).decode(), f"head {'ab' * 32}"]
    dash, name, blob = signature_line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", checkpoint.origin)
    raw = base64.b64decode(blob)
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + signer.public_raw).digest()[:4]
    assert raw[:4] == key_hash == note_key_hash(name, signer.public_raw)
    parsed, signatures = parse_checkpoint(text)
    assert parsed == checkpoint
    assert checkpoint_signed_by(parsed, signatures, [signer.public_raw])
    assert not checkpoint_signed_by(parsed, signatures, [Signer.generate().public_raw])


def test_a_cosignature_of_another_kind_is_ignored_not_refused() -> None:
    signer = Signer.generate()
    text = sign_checkpoint(Checkpoint("o/k/prod", 1, merkle_root([b"a"]), "cd" * 32), signer)
    other = base64.b64encode(b"\x00" * 80).decode()
    parsed, signatures = parse_checkpoint(text + f"\u2014 witness.example {other}\n")
    assert checkpoint_signed_by(parsed, signatures, [signer.public_raw])


@pytest.mark.parametrize("text", [
    pytest.param("o\n1\nAAAA\n", id="no-signature-block"),
    pytest.param("o\nx\n" + "A" * 43 + "=\nhead 00\n\n\u2014 o AA==\n", id="size-not-a-number"),
    pytest.param("o\n1\n" + "A" * 43 + "=\n\n\u2014 o AA==\n", id="no-head-line"),
])
def test_malformed_checkpoints_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_checkpoint(text)
