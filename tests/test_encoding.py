"""The canonical encoding: orjson's bytes are RFC 8785 (JCS) bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_DEPTH, MAX_SAFE_INTEGER, canonical, check_values, parse_record
from ledger.errors import RecordError

ascii_keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
clean_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    clean_text,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(ascii_keys, children, max_size=4)
    ),
    max_leaves=20,
)
records = st.dictionaries(ascii_keys, values, max_size=12)


@settings(max_examples=400, deadline=None)
@given(records)
def test_orjson_canonical_bytes_equal_rfc8785(record: dict[str, Any]) -> None:
    check_values(record)
    assert canonical(record) == rfc8785.dumps(record)


def nested(depth: int, leaf: Any = 1) -> Any:
    """`leaf` inside `depth` lists (alternating with objects)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param({"x": 1.5}, "floats are not allowed", id="float"),
        pytest.param({"x": {"y": [{"z": -0.0}]}}, "floats are not allowed", id="deep-float"),
        pytest.param({"x": 2**53}, "outside", id="huge-int"),
        pytest.param({"x": -(2**53)}, "outside", id="huge-negative-int"),
        pytest.param({"x": [[{"y": -(2**60)}]]}, "outside", id="deep-huge-negative-int"),
        pytest.param({"x": {"\u00e9": 1}}, "not printable ASCII", id="non-ascii-key"),
        pytest.param({"\u00e9": "v"}, "not printable ASCII", id="non-ascii-top-key"),
        pytest.param({"\u00e9": 1}, "not printable ASCII", id="non-ascii-top-key-int"),
        pytest.param({"a\nb": 1}, "not printable ASCII", id="control-char-top-key"),
        pytest.param({"x": {"a\x00": 1}}, "not printable ASCII", id="nul-in-nested-key"),
        pytest.param({1: 1}, "not printable ASCII", id="non-string-key"),
        pytest.param({"x": [1, 2.0]}, r"field 'x\[1\]'", id="nested-float"),
        pytest.param({"version": "v\x00x"}, "control character '\\\\x00'", id="nul-in-string"),
        pytest.param({"x": [{"y": "a\x00"}]}, "control character", id="nul-deep"),
        pytest.param({"x": "a\nb"}, "control character", id="newline"),
        pytest.param({"x": "\x1b[31mred"}, "control character", id="escape"),
        pytest.param({"x": "a\x7f"}, "control character", id="del"),
        pytest.param({"x": "a\x85"}, "control character", id="c1-next-line"),
        pytest.param({"x": "a\x9b"}, "control character", id="c1-csi"),
        pytest.param({"x": "a\ud800"}, "lone surrogate", id="lone-surrogate"),
        pytest.param({"x": nested(MAX_DEPTH)}, "nested more than", id="too-deep"),
        pytest.param({"x": nested(300)}, "nested more than", id="deeper-than-orjson-dumps"),
        pytest.param({"x": {1, 2}}, "unsupported value", id="set"),
    ],
)
def test_values_outside_the_canonical_set_are_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message) as caught:
        check_values(value)
    assert "\n" not in str(caught.value)
    assert "\x00" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"x": nested(MAX_DEPTH - 1)}, id="deepest-allowed"),
        pytest.param({"x": -MAX_SAFE_INTEGER, "y": [MAX_SAFE_INTEGER]}, id="extreme-ints"),
        pytest.param({"x": "\u00e9t\u00e9 \U0001f469\u200d\U0001f4bb \u2028"}, id="unicode-text"),
        pytest.param({" ~": {"": None}}, id="printable-ascii-keys"),
    ],
)
def test_values_inside_the_canonical_set_encode(value: dict[str, Any]) -> None:
    check_values(value)
    assert orjson.loads(canonical(value)) == value


def test_parse_refuses_what_orjson_parses_but_cannot_encode() -> None:
    # orjson reads 1,000 levels but writes only about 254: such a record must be refused on input.
    raw = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(RecordError, match="nested more than"):
        parse_record(raw)
    with pytest.raises(orjson.JSONEncodeError):
        canonical(orjson.loads(raw))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"{not json", "not valid JSON", id="malformed"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'{"a": "\xff\xfe"}', "not valid UTF-8", id="non-utf8"),
        pytest.param(b'{"a": "' + b"x" * 70000 + b'"}', "the limit is 65536", id="too-big"),
    ],
)
def test_parse_record_errors_are_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message) as caught:
        parse_record(raw)
    assert "\n" not in str(caught.value)
