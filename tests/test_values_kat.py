"""Known answers for the canonical value set, `check_values` on its own and through the CLI.

Every hash and signature covers `canonical(record)`, and another language can
re-derive those bytes only if the values stay inside the set RFC 8785 (JCS)
encodes the same everywhere: no floats at any depth, integers within
+/-(2**53 - 1) on both sides, printable ASCII string keys at every level, no
control characters (C0 with NUL, DEL, C1) in any string. These cases
call `check_values` directly (the fast path for flat records must refuse
exactly what the recursive path refuses) and through `ledger append`, which
must exit 2 and write nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import rfc8785

from ledger.encoding import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    MAX_SAFE_INTEGER,
    canonical,
    check_values,
    parse_record,
)
from ledger.errors import RecordError
from tests.conftest import Env, run_cli

REFUSED: list[Any] = [
    pytest.param({"x": -MAX_SAFE_INTEGER - 1}, "outside", id="int-one-below-negative-limit"),
    pytest.param({"x": -(2**63)}, "outside", id="int-far-below-negative-limit"),
    pytest.param({"x": MAX_SAFE_INTEGER + 1}, "outside", id="int-one-above-limit"),
    pytest.param({"x": [0, -MAX_SAFE_INTEGER - 1]}, r"x\[1\]", id="negative-int-in-list"),
    pytest.param({"x": {"y": -MAX_SAFE_INTEGER - 1}}, r"x\.y", id="negative-int-in-object"),
    pytest.param({"x": 1.0}, "floats are not allowed", id="float-top-level"),
    pytest.param({"x": [1, 2.5]}, r"x\[1\]", id="float-in-list"),
    pytest.param({"x": {"y": 0.5}}, r"x\.y", id="float-in-object"),
    pytest.param({"x": [{"y": [{"z": 1e-3}]}]}, r"x\[0\]\.y\[0\]\.z", id="float-deeply-nested"),
    pytest.param({"x": float("nan")}, "floats are not allowed", id="nan"),
    pytest.param({"\u00e9": "v"}, "^key '\u00e9' is not printable ASCII$", id="non-ascii-key-str-value"),
    pytest.param({"\u00e9": 1}, "^key '\u00e9' is not printable ASCII$", id="non-ascii-key-int-value"),
    pytest.param({"\u00e9": None}, "^key '\u00e9' is not printable ASCII$", id="non-ascii-key-null-value"),
    pytest.param({"\u00e9": True}, "^key '\u00e9' is not printable ASCII$", id="non-ascii-key-bool-value"),
    pytest.param({"ok": 1, "k\u00e9y": [1]}, "^key 'k\u00e9y' is not printable ASCII$",
                 id="non-ascii-key-after-ascii"),
    pytest.param({"x": {"\u00e9": 1}}, "^field 'x': key '\u00e9' is not printable ASCII$",
                 id="non-ascii-nested-key"),
    pytest.param({"\x07": 1}, "is not printable ASCII", id="control-character-key"),
    pytest.param({"s": "\x1f"}, r"field 's': control character '\\x1f' at offset 0", id="control-character"),
    pytest.param({"s": ["ok", "a\x7fb"]}, r"field 's\[1\]': control character '\\x7f' at offset 1",
                 id="del-in-list"),
    pytest.param({1: "a"}, "key", id="int-key-top-level"),
    pytest.param({"x": {2: "a"}}, "key", id="int-key-nested"),
    pytest.param({"x": (1, 2)}, "unsupported", id="tuple"),
    pytest.param({"x": b"a"}, "unsupported", id="bytes"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_check_values_refuses_outside_the_canonical_set(value: dict[Any, Any], message: str) -> None:
    """Refused with a `RecordError` that names the place, never another exception."""
    with pytest.raises(RecordError, match=message):
        check_values(value)


ACCEPTED: list[Any] = [
    pytest.param({"x": -MAX_SAFE_INTEGER}, b'{"x":-9007199254740991}', id="negative-limit"),
    pytest.param({"x": MAX_SAFE_INTEGER}, b'{"x":9007199254740991}', id="positive-limit"),
    pytest.param({"b": 1, "a": [True, None, "\u00e9"]},
                 b'{"a":[true,null,"\xc3\xa9"],"b":1}', id="sorted-keys-utf8-value"),
    # Control characters are refused (REFUSED above): the escapes left are the quote and the
    # backslash; '/' and U+2028 (a line separator, not a control character) are kept as they are.
    pytest.param({"s": "\"\\/\u2028"}, b'{"s":"\\"\\\\/\xe2\x80\xa8"}', id="string-escapes"),
    pytest.param({"b": {"d": 1, "c": 2}, "a": {}}, b'{"a":{},"b":{"c":2,"d":1}}', id="nested-sorted"),
    pytest.param({"z": 0, "Z": 0, "_": 0}, b'{"Z":0,"_":0,"z":0}', id="keys-by-code-point"),
]


@pytest.mark.parametrize(("value", "expected"), ACCEPTED)
def test_values_inside_the_set_have_known_canonical_bytes(value: dict[str, Any], expected: bytes) -> None:
    """Known answers: the bytes that are hashed, equal to RFC 8785's."""
    check_values(value)
    assert canonical(value) == expected == rfc8785.dumps(value)


@pytest.mark.parametrize(("raw", "message"), [
    pytest.param(b'{"a": "\xff"}', "record is not valid UTF-8 (byte 0xff at offset 7)", id="invalid-byte"),
    pytest.param(b'{"a": "\xc3"}', "record is not valid UTF-8 (byte 0xc3 at offset 7)",
                 id="truncated-sequence"),
])
def test_invalid_utf8_names_the_byte_and_its_offset(raw: bytes, message: str) -> None:
    """Known answer: the first bad byte and where it is, before any JSON parsing."""
    with pytest.raises(RecordError) as caught:
        parse_record(raw)
    assert str(caught.value) == message


JSON_REFUSED: list[Any] = [
    pytest.param('"n": -9007199254740992', "outside", id="negative-int-below-limit"),
    pytest.param('"n": [1.5]', "floats are not allowed", id="nested-float"),
    pytest.param('"n": {"m": [0.25]}', "floats are not allowed", id="deeply-nested-float"),
    pytest.param('"n": 1e2', "floats are not allowed", id="exponent-float"),
    pytest.param('"\u00e9": "x"', "key '\u00e9' is not printable ASCII", id="non-ascii-top-level-key"),
]


@pytest.mark.parametrize(("field", "message"), JSON_REFUSED)
def test_ledger_append_refuses_them_and_writes_nothing(env: Env, capsys: pytest.CaptureFixture[str],
                                                        field: str, message: str) -> None:
    """Through the real CLI: exit 2, one line naming the problem, the fleet untouched."""
    base = {"event": "worker.sessions", "actor": "w0", "target": "w0", "result": "success",
            "worker_id": "w0", "version": "v1", "active_sessions": 1}
    ok = run_cli(capsys, "append", *env.args(), "--fleet", "prod", "--json", orjson.dumps(base).decode())
    assert ok.code == 0, ok.err
    text = orjson.dumps(base).decode()[:-1] + ", " + field + "}"
    result = run_cli(capsys, "append", *env.args(), "--fleet", "prod", "--json", text)
    assert result.code == 2
    assert message in result.err
    assert result.err.count("\n") == 1
    with env.open(writable=False) as lg:
        assert [r["seq"] for r in lg.records("prod")] == [1]


def test_check_values_names_places_below_a_given_path_and_checks_any_top_level_value() -> None:
    """`check_values` on its own: the path given prefixes every place it names, and a value that
    is not an object (a list) is checked like any nested one, with a `RecordError`."""
    with pytest.raises(RecordError, match=r"^field 'body\.x': floats are not allowed"):
        check_values({"x": 0.5}, "body")
    with pytest.raises(RecordError, match=r"^field '\[1\]': floats are not allowed"):
        check_values([1, 2.5])
    check_values([1, "a", None, {"k": [True]}])


def _nested(depth: int) -> Any:
    """1 inside `depth` levels of lists and objects, alternating."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_the_depth_limit_is_the_same_whichever_way_a_value_is_checked() -> None:
    """The record is level 1 whether checked as a flat record or below a given path."""
    for path in ("", "p"):
        check_values({"x": _nested(MAX_DEPTH - 1)}, path)
        with pytest.raises(RecordError, match=f"nested more than {MAX_DEPTH} levels deep"):
            check_values({"x": _nested(MAX_DEPTH)}, path)


@pytest.mark.parametrize(("text", "what"), [
    pytest.param("a\ud800", "lone surrogate", id="first-surrogate"),
    pytest.param("a\udfff", "lone surrogate", id="last-surrogate"),
    pytest.param("a\x9f", "control character", id="last-c1-control"),
])
def test_a_refused_character_is_named_for_what_it_is(text: str, what: str) -> None:
    with pytest.raises(RecordError, match=f"^field 's': {what} .* at offset 1 "):
        check_values({"s": text})


def test_a_huge_integer_is_quoted_cut_to_40_digits() -> None:
    value = int("12345" * 10)  # 50 digits
    with pytest.raises(RecordError) as caught:
        check_values({"x": value})
    assert str(caught.value) == f"field 'x': integer '{str(value)[:40]}'... is outside +/-(2**53-1)"


def test_a_record_of_exactly_the_size_limit_is_read() -> None:
    head, tail = b'{"a":"', b'"}'
    data = head + b"x" * (MAX_RECORD_BYTES - len(head) - len(tail)) + tail
    assert len(data) == MAX_RECORD_BYTES
    assert parse_record(data) == {"a": "x" * (MAX_RECORD_BYTES - 8)}
    with pytest.raises(RecordError, match=f"^record is {MAX_RECORD_BYTES + 1} bytes; the limit is "
                                          f"{MAX_RECORD_BYTES}$"):
        parse_record(head + b"x" + data[len(head):])
