"""Known answers for the chain's primitives, and checkpoints whose signature lines are malformed.

The known answers pin what another implementation must reproduce to verify
this ledger: RFC 6962's Merkle tree heads (the certificate-transparency
reference vectors), RFC 8032's Ed25519 test key, the key id and a record's
canonical bytes and hash. Signatures of records are checked through
`signed_message`, so a change to what a signature covers changes no answer
here except through that helper.

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


def test_a_record_signature_is_ed25519_over_the_signed_message(rfc_signer: Signer) -> None:
    """Deterministic Ed25519: the seal's signature is the signature of `signed_message(hash)`."""
    record, data = seal(RECORD_BODY, fleet="prod", seq=1, prev=GENESIS_PREV,
                        timestamp="2026-01-01T00:00:00.000000Z", signer=rfc_signer)
    assert record["hash"] == RECORD_HASH
    message = signed_message(RECORD_HASH)
    assert record["sig"] == base64.b64encode(rfc_signer.sign_raw(message)).decode()
    assert verify_signature(rfc_signer.public_raw, record["sig"], message)
    assert not verify_signature(rfc_signer.public_raw, record["sig"], bytes.fromhex(RECORD_HASH))
    assert data == canonical(record)  # stored as hashed: the same canonical encoding, hash and sig in it


# -- checkpoints with malformed signature lines ----------------------------------------------------


def _signed_note() -> tuple[str, str]:
    checkpoint = Checkpoint("deploy-ledger/0011223344556677/prod", 2, merkle_root([b"a", b"b"]), "ab" * 32)
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
    assert "signature line is malformed" in result.err
