"""Verification in spans: a long chain is checked a span at a time (in a pool, each worker
reading its own span), and the answer is the one a record-by-record walk gives: the same
first fault, the same root, the checkpoint matched wherever it falls in a span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import VerificationError
from ledger import commands as build
from ledger.chain import MerkleAccumulator, leaf_hash, link, signed_message, subtree_peaks
from ledger.encoding import canonical
from ledger.events import _first_error, _validator, stored_schema_error
from ledger.keys import load_signer
from ledger.verify import PARALLEL_THRESHOLD, SPAN
from tests.conftest import Env

LONG = PARALLEL_THRESHOLD + SPAN // 2  # five spans, the last one partial: the pool's path
CHAIN_FIELDS = ("seq", "prev", "fleet", "timestamp", "kid", "hash", "sig")


@pytest.fixture
def long_env(env: Env) -> Iterator[Env]:
    with env.open() as lg:
        lg.append_many("prod", [build.worker_sessions(f"w{i % 7}", "v1", i, "w") for i in range(LONG)])
    yield env


def _fault(env: Env, **options: Any) -> tuple[int, str]:
    with env.open() as lg, pytest.raises(VerificationError) as caught:
        lg.verify(fleets=["prod"], **options)
    return caught.value.fault.seq, caught.value.fault.check


def _resealed(env: Env, record: dict[str, Any], **changes: Any) -> bytes:
    """The record with `changes` made and sealed again by the ledger's key: hash and signature right."""
    with env.open() as lg:
        ledger_id = lg.ledger_id
    fields = {**{k: record[k] for k in CHAIN_FIELDS if k not in ("hash", "sig")}, **changes}
    body = {k: v for k, v in record.items() if k not in CHAIN_FIELDS}
    sealed = link(body, **fields)
    sealed["sig"] = load_signer(env.key).sign(signed_message(sealed["hash"], ledger_id))
    return canonical(sealed)


def test_a_long_chain_verifies_in_spans_to_the_same_head_and_root(long_env: Env) -> None:
    with long_env.open() as lg:
        fast = lg.verify(fleets=["prod"], all_signatures=False, roots=True).chains[0]
        every = lg.verify(fleets=["prod"], roots=True).chains[0]
        rootless = lg.verify(fleets=["prod"], all_signatures=False).chains[0]
        records = list(lg.raw_records("prod"))
    accumulator = MerkleAccumulator()
    for data in records:
        accumulator.add(leaf_hash(data))
    assert fast.count == every.count == LONG
    assert fast.root == every.root == accumulator.root()
    assert fast.head == every.head == rootless.head == orjson.loads(records[-1])["hash"]
    assert rootless.count == LONG and rootless.root is None  # the tree is folded only when asked


@pytest.mark.parametrize("size", [1, SPAN, 2 * SPAN + 100, LONG - 1])
def test_a_checkpoint_is_matched_wherever_it_falls_in_a_span(env: Env, size: int) -> None:
    with env.open() as lg:
        lg.append_many("prod", [build.worker_sessions("w", "v1", i, "w") for i in range(size)])
        checkpoint = lg.checkpoint("prod")
        lg.append_many("prod", [build.worker_sessions("w", "v1", i, "w") for i in range(LONG - size)])
        report = lg.verify(checkpoint=checkpoint, all_signatures=False)
    assert report.chains[0].checkpoint_size == size
    assert report.chains[0].count == LONG


def test_each_fault_is_named_at_its_record_on_either_side_of_a_span_edge(long_env: Env) -> None:
    env = long_env
    original = dict(env.tamper.rows())

    def record(seq: int) -> dict[str, Any]:
        return dict(orjson.loads(original[seq]))

    def tampered(seq: int, data: bytes | None, **options: Any) -> tuple[int, str]:
        if data is None:
            env.tamper.delete(seq)
        else:
            env.tamper.set_state(seq, data)
        try:
            return _fault(env, **options)
        finally:
            if data is None:
                env.tamper.insert(seq, "worker.sessions", original[seq])
            else:
                env.tamper.set_state(seq, original[seq])

    # a record missing at the end of a span: the next span starts one record late
    assert tampered(SPAN, None) == (SPAN, "seq")
    # content changed in a span's first and last records
    for seq in (SPAN + 1, 2 * SPAN):
        changed = record(seq)
        changed["active_sessions"] += 1
        assert tampered(seq, canonical(changed), all_signatures=False) == (seq, "hash")
    # a malformed hash or prev is a schema fault, in a span's first record as in any other
    for seq in (2 * SPAN + 1, 2 * SPAN + 2):
        for field in ("hash", "prev"):
            changed = record(seq)
            changed[field] = "Z" * 64
            assert tampered(seq, canonical(changed), all_signatures=False) == (seq, "schema")
    # resealed by the key holder with an earlier time: the link to the span before is checked
    earlier = _resealed(env, record(3 * SPAN + 1), timestamp="2000-01-01T00:00:00.000000Z")
    assert tampered(3 * SPAN + 1, earlier, all_signatures=False) == (3 * SPAN + 1, "timestamp")
    # resealed onto another prev: a span's first record no longer links to the span before
    other = _resealed(env, record(4 * SPAN + 1), prev="1" * 64)
    assert tampered(4 * SPAN + 1, other, all_signatures=False) == (4 * SPAN + 1, "prev")
    with env.open() as lg:
        assert lg.verify(fleets=["prod"], all_signatures=False).chains[0].count == LONG


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70), st.integers(0, 6))
def test_subtrees_added_on_their_grid_give_the_tree_added_leaf_by_leaf(
        leaves: list[bytes], height: int) -> None:
    one_by_one = MerkleAccumulator()
    for leaf in leaves:
        one_by_one.add(leaf)
    assert subtree_peaks(leaves) == one_by_one.peaks()
    by_chunks = MerkleAccumulator()
    width = 1 << height
    for start in range(0, len(leaves), width):
        for peak_height, node in subtree_peaks(leaves[start:start + width]):
            by_chunks.add_subtree(peak_height, node)
    assert (by_chunks.size, by_chunks.root()) == (one_by_one.size, one_by_one.root())
    if len(leaves) % 2:
        with pytest.raises(ValueError):
            one_by_one.copy().add_subtree(1, b"\0" * 32)


def _full_schema_error(record: dict[str, Any]) -> str | None:
    validator = _validator(str(record["event"]), True)
    return None if validator.is_valid(record) else _first_error(validator, record)


STORED = orjson.loads(canonical(link(build.worker_sessions("w1", "v1", 3, "ops"), fleet="prod", seq=4,
                                     prev="ab" * 32, timestamp="2026-01-01T00:00:00.000000Z",
                                     kid="0123456789abcdef") | {"sig": "A" * 86 + "=="}))
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=80),
                   st.sampled_from(["ab" * 32, "Z" * 64, "AB" * 32, "0123456789abcdef", "v1", "ops\n"]))
KEYS = st.one_of(st.sampled_from(sorted(STORED)), st.text(max_size=12),
                 st.sampled_from(["ok_key", "bad key", "x\n", "_", "9lives"]))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=4),
       st.lists(st.sampled_from(sorted(set(STORED) - {"event"})), max_size=2))
def test_the_split_schema_check_answers_as_the_whole_schema(
        changes: dict[str, Any], removed: list[str]) -> None:
    record = {**STORED, **changes, "event": "worker.sessions"}
    for key in removed:
        record.pop(key, None)
    assert stored_schema_error(record) == _full_schema_error(record)
    linked = stored_schema_error(record, linked=True)
    if all(isinstance(record.get(k), str) and len(record[k]) == n
           and not record[k].strip("0123456789abcdef") for k, n in (("hash", 64), ("prev", 64), ("kid", 16))):
        assert linked == _full_schema_error(record)  # the link checks would have passed
    elif linked is not None:
        assert _full_schema_error(record) is not None
