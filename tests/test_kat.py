"""Known answers for every format a reviewer or another implementation reads.

`tests/kat/vectors/` holds a small ledger made by `python -m tests.kat.make`
with fixed keys (RFC 8032's test keys), a fixed identity and a fixed clock:
its records and key chain, checkpoints, an inclusion and a consistency proof,
C2SP verifier keys and an exported tlog-tiles bundle. These tests hold
today's code to those bytes both ways: the script, run again, writes exactly
the checked-in files (on SQLite and on PostgreSQL alike), and the checked-in
files pass the ledger's own verifiers (`verify-proof`, `verify --bundle`,
`verify --checkpoint`, and `verify` over the records).

The last tests prove the point: each format constant changed by one byte
(the signature context, the origin and key-name prefix, the checkpoint
layout, the note signature line, the key algorithm byte, the proof headers,
the tile paths and height, the Merkle hash prefixes, the genesis link, the
public key prefix, the canonical encoding) makes the known-answer check fail.
A format change is therefore a deliberate act: a new format version, vectors
made anew with the script, and the README's format section updated.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger import bundle, chain, encoding, evidence, keys
from ledger.bundle import index_path, verify_bundle
from ledger.errors import LedgerError
from ledger.evidence import CheckpointRole, MemoryStore, Trust, read_key_chain, verify_proof_text
from ledger.keys import parse_public_key
from ledger.store import KEY_CHAIN
from ledger.verify import verify_ledger
from tests.conftest import ROOT, run_cli
from tests.kat.make import FLEETS, build_ledger

VECTORS = Path(__file__).parent / "kat" / "vectors"
Cap = pytest.CaptureFixture[str]
Files = dict[str, bytes]


def checked_in() -> Files:
    return {path.relative_to(VECTORS).as_posix(): path.read_bytes()
            for path in sorted(VECTORS.rglob("*")) if path.is_file()}


def differences(made: Files, expected: Files) -> list[str]:
    """What differs between two sets of known-answer files, one line per file."""
    found = [f"{name}: missing" for name in sorted(expected.keys() - made.keys())]
    found += [f"{name}: not expected" for name in sorted(made.keys() - expected.keys())]
    for name in sorted(made.keys() & expected.keys()):
        a, b = made[name], expected[name]
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            found.append(f"{name}: differs from byte {at}")
    return found


def verification_failures(directory: Path) -> list[str]:
    """What the ledger's own verifiers refuse among the known-answer files in `directory`."""
    failures: list[str] = []

    def attempt(what: str, check: Callable[[], object]) -> None:
        try:
            check()
        except LedgerError as exc:
            failures.append(f"{what}: {exc}")

    anchor = parse_public_key((directory / "anchor.pub").read_text())
    key_chain = read_key_chain((directory / "keys.jsonl").read_bytes())
    def trust() -> Trust:
        return Trust.from_anchor(anchor, key_chain)

    for path in sorted(directory.glob("*-proof")):
        attempt(path.name, lambda p=path: verify_proof_text(p.read_text(), trust()))
    for path in sorted(directory.glob("*.checkpoint")):
        attempt(path.name, lambda p=path: trust().checkpoint(p.read_text(), CheckpointRole.CHECKPOINT))
    chains = {KEY_CHAIN: key_chain}
    chains |= {f: read_key_chain((directory / "records" / f"{f}.jsonl").read_bytes()) for f in FLEETS}
    attempt("records", lambda: verify_ledger(MemoryStore(chains), anchor))  # type: ignore[arg-type]
    attempt("bundle", lambda: verify_bundle(directory / "bundle", anchor))
    return failures


def known_answer_check(tmp: Path) -> list[str]:
    """Rebuild the vectors in-process and compare; verify the checked-in ones: what fails."""
    return differences(build_ledger(tmp / "work"), checked_in()) + verification_failures(VECTORS)


# -- the vectors as they are ------------------------------------------------------------------------


def test_the_script_writes_the_checked_in_vectors_byte_for_byte(tmp_path: Path) -> None:
    """One command from a checkout, in a process of its own, rebuilds every file exactly."""
    out = tmp_path / "vectors"
    made = subprocess.run([sys.executable, "-m", "tests.kat.make", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert differences(files, checked_in()) == []
    assert made.stdout == f"wrote {len(files)} known-answer files to {out}\n"


def test_each_backend_writes_the_same_bytes(db: str, tmp_path: Path) -> None:
    """The stored bytes, proofs and bundle do not depend on the backend."""
    assert differences(build_ledger(tmp_path, db), checked_in()) == []


def test_the_vectors_hold_every_format() -> None:
    """What the vectors must contain for the other tests to mean anything."""
    files = checked_in()
    events = {orjson.loads(line)["event"]
              for fleet in FLEETS for line in files[f"records/{fleet}.jsonl"].splitlines()}
    assert {"deployment.started", "deployment.completed", "deployment.rolled_back", "rollback.rejected",
            "rollback.completed", "worker.exited"} <= events
    assert [orjson.loads(line)["event"] for line in files["keys.jsonl"].splitlines()] == \
        ["ledger.initialized", "key.rotated", "key.rotated"]
    assert len(files["vkeys.txt"].splitlines()) == 3
    # A full tile, a partial one and a tile of the level above: the tile height shows.
    assert {"bundle/tile/0/000", "bundle/tile/1/000.p/1", "bundle/tile/entries/000"} <= files.keys()
    size = len(files["records/prod.jsonl"].splitlines())
    assert files["bundle/checkpoint"] == files[f"prod-{size}.checkpoint"]
    assert f"prod-4-{size}.consistency-proof" in files


def test_the_ledgers_verifiers_accept_the_vectors() -> None:
    assert verification_failures(VECTORS) == []


def test_the_cli_verifies_the_vectors(capsys: Cap, tmp_path: Path) -> None:
    """`verify-proof`, `verify --bundle` and `verify --checkpoint`, as a reviewer runs them."""
    anchor, key_chain = str(VECTORS / "anchor.pub"), str(VECTORS / "keys.jsonl")
    for proof in sorted(VECTORS.glob("*-proof")):
        result = run_cli(capsys, "verify-proof", str(proof), "--public-key", anchor, "--keys", key_chain)
        assert (result.code, result.err) == (0, ""), proof
        assert result.out.startswith("valid ")
    result = run_cli(capsys, "verify", "--bundle", str(VECTORS / "bundle"), "--public-key", anchor)
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith("verified bundle: ")
    build_ledger(tmp_path)  # the same ledger in a database: the checked-in checkpoints verify on it
    for checkpoint in sorted(VECTORS.glob("*.checkpoint")):
        result = run_cli(capsys, "verify", "--db", str(tmp_path / "ledger.db"), "--public-key", anchor,
                         "--checkpoint", str(checkpoint))
        assert result.code == 0, (checkpoint, result.err)


def test_a_changed_vector_is_refused_by_its_verifier(tmp_path: Path) -> None:
    """The verifiers are not vacuous on these files: one flipped byte in each kind is refused."""
    copy = tmp_path / "vectors"
    for name, data in checked_in().items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    consistency = next(VECTORS.glob("*.consistency-proof")).name
    targets = {"prod-1.tlog-proof": b"index", consistency: b"\n\n", "prod-4.checkpoint": b"\n\n",
               "records/staging.jsonl": b'"v1"', "bundle/tile/0/000": b""}
    for name, before in targets.items():
        original = (copy / name).read_bytes()
        at = original.index(before) - 3 if before else 100  # a hash, signature or value
        (copy / name).write_bytes(original[:at] + bytes([original[at] ^ 1]) + original[at + 1:])
        failures = verification_failures(copy)
        assert len(failures) == 1 and failures[0].startswith(name.split("/")[0]), (name, failures)
        (copy / name).write_bytes(original)
    assert verification_failures(copy) == []


def test_a_message_bound_to_no_ledger_names_the_all_zero_identity() -> None:
    """What the signing benchmarks sign: the context, 16 zero bytes, the hash; no ledger has that id."""
    digest = "ab" * 32
    assert chain.signed_message(digest) == b"deploy-ledger/record/v2\x00" + bytes(16) + bytes.fromhex(digest)


def test_tile_indexes_follow_tlog_tiles() -> None:
    """The spec's own example: the vectors are too small to need 3-digit groups."""
    assert [index_path(n) for n in (0, 5, 999, 1000, 1234067)] == \
        ["000", "005", "999", "x001/000", "x001/x234/067"]


# -- a one-byte change of any format constant fails the check ----------------------------------------


def patch_everywhere(monkeypatch: pytest.MonkeyPatch, name: str, original: Any, new: Any) -> int:
    """Replace `name` in every ledger module that holds `original` (imports copy names)."""
    count = 0
    for module in list(sys.modules.values()):
        if module is not None and module.__name__.split(".")[0] in ("ledger", "projections", "tests") \
                and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, new)
            count += 1
    return count


def one_byte(value: Any) -> Any:
    """`value` with its last byte (or character) changed by one."""
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    if isinstance(value, str):
        return value[:-1] + chr(ord(value[-1]) ^ 1)
    assert isinstance(value, int)
    return value + 1


class _Replace(ast.NodeTransformer):
    def __init__(self, old: object, new: object):
        self.old, self.new, self.count = old, new, 0

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if type(node.value) is type(self.old) and node.value == self.old:
            self.count += 1
            return ast.copy_location(ast.Constant(self.new), node)
        return node


def literal_changed(function: Callable[..., Any], old: object, new: object) -> Callable[..., Any]:
    """`function` recompiled with its constant `old` (also a piece of an f-string) made `new`.

    It works on the syntax tree, so the source's formatting does not matter.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    replace = _Replace(old, new)
    tree = ast.fix_missing_locations(replace.visit(tree))
    assert replace.count >= 1, (function, old)
    namespace: dict[str, Any] = {}
    exec(compile(tree, inspect.getfile(function), "exec"), function.__globals__, namespace)
    return namespace[function.__name__]  # type: ignore[no-any-return]


CONSTANTS = [  # (module, name): a constant every known answer depends on
    (chain, "SIGNATURE_CONTEXT"), (chain, "ORIGIN_PREFIX"), (chain, "GENESIS_PREV"), (chain, "EM_DASH"),
    (chain, "ED25519_ALGORITHM"), (evidence, "TLOG_PROOF_HEADER"), (evidence, "CONSISTENCY_HEADER"),
    (keys, "PUBLIC_PREFIX"),
]
LITERALS = [  # (module, function, constant, changed by one byte): formats written inline
    (chain, "leaf_hash", b"\x00", b"\x02"),
    (chain, "node_hash", b"\x01", b"\x03"),
    (chain, "note_key_hash", b"\n", b"\x0b"),
    (bundle, "tile_path", "tile/", "tilf/"),
    (bundle, "tile_path", ".p/", ".q/"),
    (bundle, "index_path", "03d", "02d"),
    (keys, "key_id", 8, 9),
]


@pytest.mark.parametrize(("module", "name"), [pytest.param(m, n, id=n) for m, n in CONSTANTS])
def test_a_one_byte_change_of_a_format_constant_fails_the_check(
        module: Any, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = getattr(module, name)
    assert patch_everywhere(monkeypatch, name, original, one_byte(original)) >= 1
    assert known_answer_failures(tmp_path)


@pytest.mark.parametrize("height", [7, 9])
def test_another_tile_geometry_fails_the_check(height: int, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """Tile height and width are one constant (width = 2**height): changed together, still caught."""
    assert patch_everywhere(monkeypatch, "TILE_HEIGHT", bundle.TILE_HEIGHT, height) >= 1
    assert patch_everywhere(monkeypatch, "TILE_WIDTH", bundle.TILE_WIDTH, 1 << height) >= 1
    assert known_answer_failures(tmp_path)


@pytest.mark.parametrize(("module", "function", "old", "new"),
                         [pytest.param(*case, id=f"{case[1]}:{case[2]!r}") for case in LITERALS])
def test_a_one_byte_change_of_an_inline_format_fails_the_check(
        module: Any, function: str, old: object, new: object, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    original = getattr(module, function)
    assert patch_everywhere(monkeypatch, function, original, literal_changed(original, old, new)) >= 1
    assert known_answer_failures(tmp_path)


def test_a_one_byte_change_of_the_checkpoint_layout_fails_the_check(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    changed = literal_changed(chain.Checkpoint.body, "\nhead ", "\nheae ")
    monkeypatch.setattr(chain.Checkpoint, "body", changed)
    assert known_answer_failures(tmp_path)


def test_a_one_byte_change_of_the_canonical_encoding_fails_the_check(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """One more byte after each record (a newline, as orjson can append) is another encoding."""
    original = encoding.canonical
    assert patch_everywhere(monkeypatch, "canonical", original, lambda value: original(value) + b"\n") >= 2
    assert known_answer_failures(tmp_path)


def test_the_check_passes_unpatched(tmp_path: Path) -> None:
    """The tests above fail for the patch, not for the check: unpatched, nothing fails."""
    assert known_answer_failures(tmp_path) == []


def known_answer_failures(tmp: Path) -> list[str]:
    try:
        return known_answer_check(tmp)
    except LedgerError as exc:  # a patched writer may refuse its own output: the check failed too
        return [f"rebuilding refused: {exc}"]
