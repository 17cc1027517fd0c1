"""The tree's interior hashes are written with each append; a proof reads O(log n) of them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from ledger import commands as build
from ledger.chain import leaf_hash, merkle_root
from ledger.merkle_nodes import new_nodes, peak_positions
from ledger.proofs import nodes_from_leaves, subtree_hash
from ledger.store import Store
from tests.conftest import Env, run_cli, seed


def _expected(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    node = nodes_from_leaves(leaves)
    out = {}
    level = 0
    while (1 << level) <= len(leaves):
        for index in range(len(leaves) >> level):
            out[(level, index)] = node(level, index)
        level += 1
    return out


def test_folding_batches_onto_the_peaks_writes_every_complete_subtree_once() -> None:
    rng = random.Random(6962)
    leaves = [leaf_hash(str(i).encode()) for i in range(300)]
    written: dict[tuple[int, int], bytes] = {}
    size = 0
    while size < len(leaves):
        batch = leaves[size:size + rng.choice([1, 1, 2, 3, 7, 16, 40])]
        peaks = [written[p] for p in peak_positions(size)]
        for level, index, node in new_nodes(size, peaks, batch):
            assert (level, index) not in written
            written[(level, index)] = node
        size += len(batch)
        assert subtree_hash(0, size, lambda lv, ix: written[(lv, ix)]) == merkle_root(
            [str(i).encode() for i in range(size)])
    assert written == _expected(leaves)


def _nodes_table(env: Env) -> str:
    table = env.tamper.raw.table  # type: ignore[attr-defined]
    return table[:-1] + '_merkle"' if table.endswith('"') else table + "_merkle"


def test_appends_store_the_nodes_and_a_proof_reads_logarithmically_many(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with env.open() as lg:
        seed(lg)
        for n in (1, 5, 30, 1, 2):
            lg.append_many("prod", [build.worker_start(f"w{n}-{i}", "v1", "ops") for i in range(n)])
    rows = env.tamper.rows()
    leaves = [leaf_hash(bytes(state)) for _, state in sorted(rows)]
    store = Store(env.db)
    try:
        assert store.has_nodes("prod", len(leaves))
        expected = _expected(leaves)
        assert store.nodes("prod", list(expected)) == expected
    finally:
        store.close()
    reads: list[list[tuple[int, int]]] = []
    real = Store.nodes

    def counting(self: Store, chain: str, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        reads.append(list(wanted))
        return real(self, chain, wanted)

    def no_scan(*_: Any, **__: Any) -> Any:
        raise AssertionError("the proof read the leaves")

    checkpoint = env.dir / "cp"
    checkpoint.write_text(run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    monkeypatch.setattr(Store, "nodes", counting)
    monkeypatch.setattr(Store, "scan", no_scan)
    made = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "17", "--checkpoint",
                   str(checkpoint))
    assert made.code == 0, made.err
    assert len(reads) == 1 and 0 < len(set(reads[0])) <= 4 * len(leaves).bit_length()  # one query
    monkeypatch.undo()
    proof = env.dir / "p"
    proof.write_text(made.out)
    assert run_cli(capsys, "verify-proof", str(proof), "--public-key", str(env.pub)).code == 0


def test_a_chain_without_nodes_is_proven_from_its_leaves(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger written before the table existed: no nodes, the same proofs."""
    with env.open() as lg:
        seed(lg)
    env.tamper.raw.execute((f"DELETE FROM {_nodes_table(env)}", ()))  # type: ignore[attr-defined]
    with env.open() as lg:
        lg.append("prod", build.worker_start("late", "v1", "ops"))  # finds no peaks: writes none
        assert not lg.store.has_nodes("prod", 7)
    made = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "7")
    assert made.code == 0, made.err
    proof = env.dir / "p"
    proof.write_text(made.out)
    assert run_cli(capsys, "verify-proof", str(proof), "--public-key", str(env.pub)).code == 0


def test_a_stored_node_gone_is_a_storage_fault_in_one_line(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The nodes a proof needs are read in one query; one of them missing is damaged storage
    (exit 4), never a proof made from what is left."""
    with env.open() as lg:
        seed(lg)
        lg.append_many("prod", [build.worker_start(f"w{i}", "v1", "ops") for i in range(20)])
    checkpoint = env.dir / "cp"
    checkpoint.write_text(run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    env.tamper.raw.execute((f"DELETE FROM {_nodes_table(env)} WHERE level >= 1", ()))  # type: ignore[attr-defined]
    made = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "1", "--checkpoint",
                   str(checkpoint))
    assert made.code == 4 and made.out == ""
    assert made.err.startswith("ledger: storage fault: the tree node ") and made.err.count("\n") == 1
    assert "of prod is missing in" in made.err
