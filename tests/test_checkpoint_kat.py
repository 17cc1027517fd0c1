"""Known answers for the chain's primitives, and checkpoints whose signature lines are malformed.

The known answers pin what another implementation must reproduce to verify
this ledger: RFC 6962's Merkle tree heads (the certificate-transparency
reference vectors), RFC 8032's Ed25519 test key, the key id, a record's
canonical bytes and hash, its format-2 signature (Ed25519 over
`"deploy-ledger/record/v2" 0x00 || ledger id (16 bytes) || hash (32 bytes)`),
its stored bytes, and a checkpoint of it under the origin
`deploy-ledger/<ledger id>/<fleet>`. Those answers were computed from the
documented layout with `cryptography` and `hashlib` alone, not by the ledger's
code, so a change to what a signature covers shows up here as a changed answer.

A checkpoint is a file a user keeps and hands back: any malformed signature
line must be an `InputError` (exit 2, one line), never a crash.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.chain import (
    EM_DASH,
    GENESIS_PREV,
    Checkpoint,
    checkpoint_origin,
    checkpoint_signed_by,
    link,
    merkle_root,
    parse_checkpoint,
    seal,
    sign_checkpoint,
    signed_message,
)
from ledger.encoding import canonical
from ledger.errors import InputError
from ledger.keys import Signer, verify_signature
from tests.conftest import Env, run_cli, seed

# RFC 6962 / certificate-transparency reference leaves and tree heads (merkle_tree_test).
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", [pytest.param(n, id=f"{n}-leaves") for n in range(len(CT_ROOTS))])
def test_merkle_root_matches_the_rfc6962_reference_vectors(size: int) -> None:
    """The tree heads a checkpoint signs are the ones any CT-style verifier computes."""
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


# RFC 8032 section 7.1, TEST 1.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_EMPTY_SIG = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
                     "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


@pytest.fixture
def rfc_signer() -> Signer:
    return Signer(Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))


def test_the_signer_is_plain_ed25519(rfc_signer: Signer) -> None:
    """RFC 8032's test key signs the empty message to its published signature; its kid is pinned."""
    assert rfc_signer.public_raw.hex() == RFC8032_PUBLIC
    assert rfc_signer.sign_raw(b"").hex() == RFC8032_EMPTY_SIG
    assert rfc_signer.kid == "21fe31dfa154a261" == hashlib.sha256(rfc_signer.public_raw).hexdigest()[:16]


RECORD_BODY = {"event": "deployment.started", "actor": "ci", "target": "fleet", "result": "success",
               "version": "v1"}
RECORD_BYTES = (b'{"actor":"ci","event":"deployment.started","fleet":"prod","kid":"21fe31dfa154a261",'
                b'"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
                b'"result":"success","seq":1,"target":"fleet","timestamp":"2026-01-01T00:00:00.000000Z",'
                b'"version":"v1"}')
RECORD_HASH = "b1e39b9b1e21b78f9e265323f4b67225ea123fa64fe72121ea490d15414c30a2"


def test_a_record_hash_is_a_known_answer(rfc_signer: Signer) -> None:
    """The hash covers exactly the canonical bytes of the record less `hash` and `sig`."""
    record = link(RECORD_BODY, fleet="prod", seq=1, prev=GENESIS_PREV,
                  timestamp="2026-01-01T00:00:00.000000Z", kid=rfc_signer.kid)
    assert hashlib.sha256(RECORD_BYTES).hexdigest() == RECORD_HASH == record["hash"]


# A fixed ledger identity (32 hex digits) for the known answers below.
LEDGER_ID = "0123456789abcdeffedcba9876543210"
# The documented format-2 signed message, written out byte by byte.
SIGNED_MESSAGE = b"deploy-ledger/record/v2\x00" + bytes.fromhex(LEDGER_ID) + bytes.fromhex(RECORD_HASH)
# Ed25519 (RFC 8032 TEST 1 key) over SIGNED_MESSAGE, computed with `cryptography` directly.
RECORD_SIG = "cYihBoHzgZdHBItWBrQBpooHTuv/vXem5cFeixzG2XzQkbUM8cb+gAlJMWFUCQEqS9yTwJjxCI9+tFen0U9xBg=="
STORED_BYTES = (b'{"actor":"ci","event":"deployment.started","fleet":"prod",'
                b'"hash":"b1e39b9b1e21b78f9e265323f4b67225ea123fa64fe72121ea490d15414c30a2",'
                b'"kid":"21fe31dfa154a261",'
                b'"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
                b'"result":"success","seq":1,'
                b'"sig":"cYihBoHzgZdHBItWBrQBpooHTuv/vXem5cFeixzG2XzQkbUM8cb+gAlJMWFUCQEqS9yTwJjxCI9+tFen0U9xBg==",'
                b'"target":"fleet","timestamp":"2026-01-01T00:00:00.000000Z","version":"v1"}')
# A checkpoint of the one-record chain: root = SHA-256(0x00 || STORED_BYTES), signed note per C2SP.
CHECKPOINT_ORIGIN = "deploy-ledger/0123456789abcdeffedcba9876543210/prod"
CHECKPOINT_ROOT = "3eacb07146a5af51a04300cb2b6989ae6923e6900af805ac7ce16c05dae01183"
CHECKPOINT_NOTE = (
    "deploy-ledger/0123456789abcdeffedcba9876543210/prod\n1\nPqywcUalr1GgQwDLK2mJrmkj5pAK+AWsfOFsBdrgEYM=\n"
    "head b1e39b9b1e21b78f9e265323f4b67225ea123fa64fe72121ea490d15414c30a2\n\n"
    "\u2014 deploy-ledger/0123456789abcdeffedcba9876543210/prod "
    "o2NBkLIAXAThRAx92boqNeX9UTBm/miafTHKdh3uwADQO6OQ2KMZLLMkVlehZT7NlTNoeTp2H8RojjI0afFPO4MBDAk=\n")


def test_the_signed_message_is_the_documented_layout() -> None:
    """Context (24 bytes, v2) || ledger id (16 raw bytes) || record hash (32 raw bytes)."""
    message = signed_message(RECORD_HASH, LEDGER_ID)
    assert message == SIGNED_MESSAGE
    assert len(message) == 24 + 16 + 32
    assert message[:24] == b"deploy-ledger/record/v2\x00"


def test_a_record_signature_is_a_known_answer(rfc_signer: Signer) -> None:
    """Deterministic Ed25519: the seal's signature and stored bytes are the ones computed from the spec."""
    record, data = seal(RECORD_BODY, fleet="prod", seq=1, prev=GENESIS_PREV,
                        timestamp="2026-01-01T00:00:00.000000Z", signer=rfc_signer, ledger_id=LEDGER_ID)
    assert record["hash"] == RECORD_HASH
    assert record["sig"] == RECORD_SIG
    assert verify_signature(rfc_signer.public_raw, RECORD_SIG, SIGNED_MESSAGE)
    assert data == STORED_BYTES == canonical(record)  # stored as hashed: canonical, hash and sig in it


@pytest.mark.parametrize("message", [
    pytest.param(bytes.fromhex(RECORD_HASH), id="bare-hash"),
    pytest.param(b"deploy-ledger/record/v1\x00" + bytes.fromhex(RECORD_HASH), id="format-1-message"),
    pytest.param(b"deploy-ledger/record/v2\x00" + bytes(16) + bytes.fromhex(RECORD_HASH), id="no-ledger"),
    pytest.param(b"deploy-ledger/record/v2\x00" + bytes.fromhex("fedcba98765432100123456789abcdef")
                 + bytes.fromhex(RECORD_HASH), id="another-ledger"),
])
def test_the_signature_covers_nothing_but_its_message(message: bytes) -> None:
    """The known signature does not verify over the hash alone, format 1's message, or another ledger's."""
    public = bytes.fromhex(RFC8032_PUBLIC)
    assert not verify_signature(public, RECORD_SIG, message)


def test_a_checkpoint_is_a_known_answer(rfc_signer: Signer) -> None:
    """Origin with the ledger id, the RFC 6962 root of the stored bytes, and the C2SP note signature."""
    assert checkpoint_origin(LEDGER_ID, "prod") == CHECKPOINT_ORIGIN
    root = merkle_root([STORED_BYTES])
    assert root.hex() == CHECKPOINT_ROOT
    note = sign_checkpoint(Checkpoint(CHECKPOINT_ORIGIN, 1, root, RECORD_HASH), rfc_signer)
    assert note == CHECKPOINT_NOTE
    parsed, signatures = parse_checkpoint(CHECKPOINT_NOTE)
    assert parsed == Checkpoint(CHECKPOINT_ORIGIN, 1, root, RECORD_HASH)
    assert checkpoint_signed_by(parsed, signatures, [bytes.fromhex(RFC8032_PUBLIC)])


# -- checkpoints with malformed signature lines ----------------------------------------------------


def _signed_note() -> tuple[str, str]:
    checkpoint = Checkpoint(checkpoint_origin(LEDGER_ID, "prod"), 2, merkle_root([b"a", b"b"]), "ab" * 32)
    text = sign_checkpoint(checkpoint, Signer.generate())
    body, _, line = text.partition("\n\n")
    return body, line.rstrip("\n")


def _blob(line: str) -> str:
    return line.split(" ")[2]


MALFORMED_LINES = [
    pytest.param(lambda line: f"{EM_DASH} {line.split(' ')[1]}", "malformed", id="no-signature"),
    pytest.param(lambda line: EM_DASH, "malformed", id="dash-only"),
    pytest.param(lambda line: f"{EM_DASH} ", "malformed", id="dash-and-space"),
    pytest.param(lambda line: "", "malformed", id="empty-line"),
    pytest.param(lambda line: " ", "malformed", id="single-space"),
    pytest.param(lambda line: line + " extra", "malformed", id="four-fields"),
    pytest.param(lambda line: line.replace(" ", "  ", 1), "malformed", id="double-space"),
    pytest.param(lambda line: "-" + line[1:], "malformed", id="ascii-hyphen"),
    pytest.param(lambda line: line.replace(_blob(line), "!!" + _blob(line)[2:]), "not base64",
                 id="signature-not-base64"),
    pytest.param(lambda line: line.replace(_blob(line), _blob(line).rstrip("=")), "not base64",
                 id="signature-unpadded"),
]


@pytest.mark.parametrize(("mangle", "message"), MALFORMED_LINES)
def test_a_malformed_signature_line_is_refused(mangle: object, message: str) -> None:
    """Every malformed line is a one-line `InputError`, not an IndexError or another crash."""
    body, line = _signed_note()
    assert callable(mangle)
    with pytest.raises(InputError, match=message) as caught:
        parse_checkpoint(f"{body}\n\n{mangle(line)}\n")
    assert "\n" not in str(caught.value)


def _mangle_body(body: str, line: int, text: str) -> str:
    lines = body.split("\n")
    lines[line] = text
    return "\n".join(lines)


MALFORMED_BODIES = [
    pytest.param(lambda body, line: f"{body}\n{line}\n", "no signature block", id="no-blank-line"),
    pytest.param(lambda body, line: f"{_mangle_body(body, 2, '*' + body.split(chr(10))[2][1:])}\n\n{line}\n",
                 "size or root is malformed", id="root-not-base64"),
    # A lenient decoder would skip the stray '*' and still find 32 bytes: it must be refused as such.
    pytest.param(lambda body, line: f"{_mangle_body(body, 2, '*' + body.split(chr(10))[2])}\n\n{line}\n",
                 "size or root is malformed", id="root-with-stray-character"),
    pytest.param(lambda body, line: f"{_mangle_body(body, 2, body.split(chr(10))[2][:-4])}\n\n{line}\n",
                 "size or root is malformed", id="root-too-short"),
    pytest.param(lambda body, line: f"{_mangle_body(body, 1, '-1')}\n\n{line}\n",
                 "size or root is malformed", id="size-negative"),
    pytest.param(lambda body, line: f"{_mangle_body(body, 1, '02')}\n\n{line}\n",
                 "not in canonical form", id="size-not-canonical"),
]


@pytest.mark.parametrize(("mangle", "message"), MALFORMED_BODIES)
def test_a_malformed_checkpoint_body_is_refused(mangle: object, message: str) -> None:
    """The note's body must be exactly the four lines the ledger signs, else a one-line error."""
    body, line = _signed_note()
    assert callable(mangle)
    with pytest.raises(InputError, match=message):
        parse_checkpoint(mangle(body, line))


@pytest.mark.parametrize("blob", [pytest.param(b"", id="empty"),
                                  pytest.param(b"\x00" * 4, id="key-hash-only"),
                                  pytest.param(b"\x00" * 67, id="one-byte-short")])
def test_a_signature_of_another_size_is_ignored_then_unsigned(blob: bytes) -> None:
    """A line of another size may be a cosignature kind: skipped; with no other line, not signed."""
    body, line = _signed_note()
    name = line.split(" ")[1]
    _, signatures = parse_checkpoint(f"{body}\n\n{EM_DASH} {name} {base64.b64encode(blob).decode()}\n")
    assert signatures == []


def test_verify_refuses_a_malformed_checkpoint_with_exit_2(env: Env, capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    """Through the CLI: the kept checkpoint with a broken signature line is exit 2, one line."""
    with env.open() as lg:
        seed(lg)
    made = run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod")
    assert made.code == 0
    body, _, _ = made.out.partition("\n\n")
    path = tmp_path / "broken.checkpoint"
    path.write_text(f"{body}\n\n{EM_DASH} onlyname\n")
    result = run_cli(capsys, "verify", *env.args(), "--checkpoint", str(path))
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "checkpoint signature line 1 is malformed" in result.err
