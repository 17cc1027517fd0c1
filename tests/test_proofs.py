"""Inclusion and consistency proofs: every transparency-dev vector, and the ledger's own roots."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger.chain import leaf_hash, merkle_root
from ledger.proofs import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    nodes_from_leaves,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "rfc6962"


def _cases(kind: str) -> list[Path]:
    found = sorted((VECTORS / kind).rglob("*.json"))
    assert found, f"no {kind} vectors under {VECTORS}"
    return found


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(case: dict[str, object]) -> list[bytes]:
    return [_b64(str(p)) for p in case.get("proof") or []]  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    def check() -> None:
        verify_inclusion(case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), _proof(case),
                         _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    def check() -> None:
        verify_consistency(case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]),
                           _proof(case))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_the_vectors_are_all_there() -> None:
    """196 cases: a missing directory must fail here, not pass silently."""
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 196


RECORDS = [f'{{"seq":{i}}}'.encode() for i in range(1, 71)]
LEAVES = [leaf_hash(r) for r in RECORDS]
ROOTS = [merkle_root(RECORDS[:n]) for n in range(71)]


def test_generated_proofs_verify_against_the_ledgers_roots_for_every_size_to_70() -> None:
    for size in range(1, 71):
        node = nodes_from_leaves(LEAVES[:size])
        assert subtree_hash(0, size, node) == ROOTS[size]
        for index in range(size):
            verify_inclusion(index, size, LEAVES[index], inclusion_proof(index, size, node), ROOTS[size])
        for old in range(1, size + 1):
            verify_consistency(old, size, ROOTS[old], ROOTS[size], consistency_proof(old, size, node))


def test_a_proof_for_the_wrong_leaf_or_a_rewritten_history_fails() -> None:
    node = nodes_from_leaves(LEAVES[:13])
    with pytest.raises(ProofError, match="another root"):
        verify_inclusion(4, 13, LEAVES[5], inclusion_proof(4, 13, node), ROOTS[13])
    forged = nodes_from_leaves([leaf_hash(b"forged"), *LEAVES[1:13]])
    with pytest.raises(ProofError, match="old root"):
        verify_consistency(5, 13, ROOTS[5], subtree_hash(0, 13, forged), consistency_proof(5, 13, forged))
    with pytest.raises(ProofError, match="truncated"):
        verify_consistency(13, 5, ROOTS[13], ROOTS[5], [])


def test_a_proof_reads_logarithmically_many_nodes() -> None:
    reads: list[tuple[int, int]] = []
    inner = nodes_from_leaves(LEAVES[:70])

    def node(level: int, index: int) -> bytes:
        reads.append((level, index))
        return inner(level, index)

    inclusion_proof(37, 70, node)
    assert len(reads) <= 2 * 7
    reads.clear()
    consistency_proof(23, 70, node)
    assert len(reads) <= 2 * 7
