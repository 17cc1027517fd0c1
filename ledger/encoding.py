"""The one canonical encoding used for hashing, signing and storage.

`orjson` with sorted keys produces RFC 8785 (JCS) bytes as long as values stay
inside a restricted set: no floats, integers within +/-(2**53 - 1), printable
ASCII object keys, no control characters in strings, bounded nesting.
`check_values` enforces that set, so any language can re-derive the exact
bytes that were hashed and signed.
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.errors import RecordError
from ledger.names import FORBIDDEN_RE, shown

MAX_SAFE_INTEGER = 2**53 - 1
MAX_RECORD_BYTES = 64 * 1024
#: Deepest nesting of lists and objects (the record itself is level 1). orjson
#: parses up to 1024 levels but encodes only about 254: the limit is far below both.
MAX_DEPTH = 32


def canonical(value: dict[str, Any]) -> bytes:
    """Canonical bytes of a record (values must already pass `check_values`)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def check_values(value: Any, path: str = "") -> None:
    """Refuse values outside the canonical set, naming the field.

    The set: strings without control characters (C0 with NUL, DEL, C1: a NUL
    cannot be stored in PostgreSQL text and control characters would reach
    terminals), integers within +/-(2**53-1), booleans, null, and lists and
    objects with printable ASCII keys nested at most `MAX_DEPTH` deep, well
    inside what `orjson.dumps` encodes, so whatever passes here always encodes.
    """
    if type(value) is dict and not path:
        # Fast path for the common flat record: plain scalars need no recursion.
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() and key.isprintable()):
                raise RecordError(f"key {shown(key)} is not printable ASCII")
            kind = type(item)
            plain = (
                (kind is str and (item.isprintable() or FORBIDDEN_RE.search(item) is None))
                or kind is bool or item is None
                or (kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
            )
            if not plain:
                _check_any(item, key, 2)
        return
    _check_any(value, path, 1)


def _check_any(value: Any, path: str, depth: int) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        if not value.isprintable():
            found = FORBIDDEN_RE.search(value)
            if found is not None:
                what = "lone surrogate" if found.group() >= "\ud800" else "control character"
                raise RecordError(
                    f"field {shown(path)}: {what} {shown(found.group())} at offset {found.start()} "
                    "(NUL, other control characters and lone surrogates are not allowed)"
                )
        return
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return
        raise RecordError(f"field {shown(path)}: integer {shown(value, 40)} is outside +/-(2**53-1)")
    if isinstance(value, float):
        raise RecordError(
            f"field {shown(path)}: floats are not allowed ({value!r}); use an integer or a string"
        )
    if isinstance(value, list | dict) and depth > MAX_DEPTH:
        raise RecordError(f"field {shown(path)}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_any(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not (key.isascii() and key.isprintable()):
                raise RecordError(f"field {shown(path)}: key {shown(key)} is not printable ASCII")
            _check_any(item, f"{path}.{key}" if path else key, depth + 1)
        return
    raise RecordError(f"field {shown(path)}: unsupported value of type {type(value).__name__}")


def parse_record(raw: bytes | str, where: str = "record") -> dict[str, Any]:
    """Parse one caller-supplied JSON object, with a one-line error on failure."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(
            f"{where} is {len(data)} bytes; the limit is {MAX_RECORD_BYTES}"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{where} is not valid UTF-8 (byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordError(f"{where} must be a JSON object, not {type(value).__name__}")
    check_values(value)
    return value
