"""The quick pass over a span (`SpanChecker._check_clean`) accepts only spans the exact,
record-by-record check accepts, with the same result, and accepts every span that check
passes: whatever is done to the stored rows, the two never disagree about a fault."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import commands as build
from ledger.api import Ledger
from ledger.app import open_app
from ledger.chain import link, signed_message
from ledger.decide import Deploy, Meta
from ledger.encoding import canonical
from ledger.keys import Signer, load_signer, parse_public_key
from ledger.verify import SpanChecker, Verifier

BEFORE, AFTER = 30, 30  # worker facts signed by the first key, a deploy, facts by the second
CHAIN_FIELDS = ("seq", "prev", "fleet", "timestamp", "kid", "hash", "sig")


@dataclass
class Built:
    rows: list[tuple[int, bytes]]
    signers: list[Signer]  # the retired key, then the current one
    ledger_id: str
    verifier: Verifier


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A fleet whose records two keys signed, one after the other (a rotation between)."""
    tmp = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp / "config"))  # the pin made by init stays here
        db, key = tmp / "l.db", tmp / "l.key"
        with Ledger.init(db, key, actor="t") as lg:
            first_signer = load_signer(key)
            anchor = parse_public_key(lg.current_key()[1])
            lg.append_many("prod", [build.worker_sessions(f"w{i % 3}", "v1", i, "w") for i in range(BEFORE)])
        with open_app(db, key, projections=tmp / "views.db") as app:  # a gated record: a decision
            app.service.submit("prod", Deploy("v2", Meta("t")))
        with Ledger.open(db, key) as lg:
            lg.rotate_key("t")
            lg.append_many("prod", [build.worker_sessions(f"w{i % 3}", "v2", i, "w") for i in range(AFTER)])
            rows = list(enumerate(lg.raw_records("prod"), start=1))
            verifier = lg.verifier(anchor)
            verifier.verify_keys()
            yield Built(rows, [first_signer, load_signer(key)], lg.ledger_id, verifier)


def _resealed(built: Built, data: bytes, signer: Signer, **changes: Any) -> bytes:
    """The record with `changes` made and sealed again by `signer`: hash and signature right."""
    record = orjson.loads(data)
    linked = ("seq", "prev", "fleet", "timestamp", "kid")
    fields = {**{k: record[k] for k in linked}, "kid": signer.kid,
              **{k: v for k, v in changes.items() if k in linked}}
    body = {**{k: v for k, v in record.items() if k not in CHAIN_FIELDS},
            **{k: v for k, v in changes.items() if k not in CHAIN_FIELDS}}
    sealed = link(body, **fields)
    sealed["sig"] = signer.sign(signed_message(sealed["hash"], built.ledger_id))
    sealed.update({k: v for k, v in changes.items() if k in ("hash", "sig")})  # after: not resealed
    return canonical(sealed)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(
    ["", "v1", "w0", "prod", "other", "2000-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z",
     "ab" * 32, "Z" * 64, "0123456789abcdef", "A" * 86 + "=="]))
FIELDS = st.sampled_from(["seq", "prev", "fleet", "timestamp", "kid", "hash", "sig", "event", "version",
                          "active_sessions", "worker_id", "extra_note", "Bad Name", "actor_verified",
                          "policy_seq"])


@st.composite
def damage(draw: st.DrawFn, built: Built) -> tuple[list[tuple[int, bytes]], str]:
    """The fleet's rows with one thing done to them, and what was done."""
    rows = list(built.rows)
    at = draw(st.integers(0, len(rows) - 1))
    position, data = rows[at]
    kind = draw(st.sampled_from(["none", "byte", "drop", "repeat", "swap", "edit", "reseal", "claim",
                                 "cut", "rewrite", "rewrite", "rewrite", "attest", "attest", "deep"]))
    if kind == "byte":
        index = draw(st.integers(0, len(data) - 1))
        data = data[:index] + bytes([data[index] ^ draw(st.integers(1, 255))]) + data[index + 1:]
        rows[at] = (position, data)
    elif kind == "drop":
        del rows[at]
    elif kind == "repeat":
        rows.insert(at, (position, data))
    elif kind == "swap" and at + 1 < len(rows):
        rows[at], rows[at + 1] = (position, rows[at + 1][1]), (rows[at + 1][0], data)
    elif kind == "edit":  # a field changed, nothing sealed again: the hash no longer holds
        record = orjson.loads(data)
        record[draw(FIELDS)] = draw(VALUES)
        rows[at] = (position, canonical(record))
    elif kind in ("reseal", "claim"):  # by a key holder, with one key or the other
        signer = built.signers[draw(st.integers(0, 1))]
        resealed = _resealed(built, data, signer, **{draw(FIELDS): draw(VALUES)})
        if kind == "claim":  # ... but naming the other key's kid: only a signature check sees it
            record = orjson.loads(resealed)
            record["kid"] = built.signers[0 if signer is built.signers[1] else 1].kid
            resealed = canonical(record)
        rows[at] = (position, resealed)
    elif kind == "cut":
        rows = rows[:at]
    elif kind == "deep":  # JSON nested deeper than the encoder goes (the parser goes further)
        depth = draw(st.sampled_from([200, 300, 1000]))
        rows[at] = (position, b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    elif kind in ("rewrite", "attest"):  # a key holder rewrites the tail from `at` on, all relinked
        if kind == "attest":  # the gate's attestation fields, on the decision or a fact
            at = draw(st.sampled_from([BEFORE, at]))
            position, data = rows[at]
            field = draw(st.sampled_from(["actor_verified", "policy_seq"]))
        else:
            field = draw(FIELDS)
        signer = built.signers[draw(st.integers(0, 1))]
        rows[at] = (position, _resealed(built, data, signer, **{field: draw(VALUES)}))
        by_kid = {signer.kid: signer for signer in built.signers}
        for later in range(at + 1, len(rows)):
            prev = orjson.loads(rows[later - 1][1]).get("hash")
            old = orjson.loads(rows[later][1])
            rows[later] = (rows[later][0], _resealed(built, rows[later][1], by_kid[old["kid"]], prev=prev))
    return rows, kind


def _checkers(built: Built, cut: int) -> list[SpanChecker]:
    return [built.verifier.span_checker("prod", signatures, cut, merkle)
            for signatures in (False, True) for merkle in (False, True) if merkle or not cut]


def _agree(checker: SpanChecker, rows: list[tuple[int, bytes]]) -> None:
    exact = checker._check_exact(1, rows)
    clean = checker._check_clean(1, rows)
    if clean is not None:
        assert exact.fault is None, f"the quick pass accepted what the exact one refuses: {exact.fault}"
        assert clean == exact
    elif exact.fault is None and rows:
        first = orjson.loads(rows[0][1])
        start, end = checker.epochs[first["kid"]]
        # The exact check leaves the first record's key time to the caller (it joins the span
        # onto the chain before it); the quick pass checks it, and leaves a span failing it.
        assert not start <= first["timestamp"] <= (end or "~"), "a clean span left to the exact check"
    assert checker.check(1, rows) == exact


def test_the_clean_fleet_takes_the_quick_pass_with_the_exact_answer(built: Built) -> None:
    for checker in _checkers(built, cut=BEFORE + 5):
        clean = checker._check_clean(1, built.rows)
        assert clean is not None and clean == checker._check_exact(1, built.rows)
        assert clean.count == len(built.rows) and len(clean.last_by_key) == 2 and not clean.first_attested
        assert orjson.loads(built.rows[BEFORE][1])["event"] == "deployment.started"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_whatever_is_done_to_the_rows_both_passes_agree(built: Built, data: st.DataObject) -> None:
    rows, _kind = data.draw(damage(built))
    cut = data.draw(st.sampled_from([0, 1, BEFORE, BEFORE + 1, len(built.rows)]))
    for checker in _checkers(built, cut):
        _agree(checker, rows)


def test_a_field_name_outside_the_schemas_list_is_matched_by_its_pattern(built: Built) -> None:
    position, data = built.rows[-1]  # the last: no record after it links to its hash
    checker = built.verifier.span_checker("prod", True)
    for name, clean in (("extra_note", True), ("Bad Name", False)):
        rows = [*built.rows[:-1], (position, _resealed(built, data, built.signers[1], **{name: "x"}))]
        assert (checker._check_clean(1, rows) is not None) == clean
        assert (checker.check(1, rows).fault is None) == clean


def test_span_checker_refuses_a_checkpoint_without_the_tree(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Merkle"):
        built.verifier.span_checker("prod", False, cut=3, merkle=False).check(1, built.rows)
