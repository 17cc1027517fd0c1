"""The canonical encoding: orjson's bytes are RFC 8785 (JCS) bytes."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_SAFE_INTEGER, canonical, check_values, parse_record
from ledger.errors import RecordError

ascii_keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.text(max_size=40),
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


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param({"x": 1.5}, "floats are not allowed", id="float"),
        pytest.param({"x": 2**53}, "outside", id="huge-int"),
        pytest.param({"x": {"\u00e9": 1}}, "not ASCII", id="non-ascii-key"),
        pytest.param({"x": [1, 2.0]}, r"field 'x\[1\]'", id="nested-float"),
    ],
)
def test_values_outside_the_canonical_set_are_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        check_values(value)


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
