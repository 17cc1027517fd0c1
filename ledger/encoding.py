"""The one canonical encoding used for hashing, signing and storage.

`orjson` with sorted keys produces RFC 8785 (JCS) bytes as long as values stay
inside a restricted set: no floats, integers within +/-(2**53 - 1), ASCII
object keys. `check_values` enforces that set, so any language can re-derive
the exact bytes that were hashed and signed.
"""

from __future__ import annotations

from typing import Any

import orjson

from ledger.errors import RecordError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_RECORD_BYTES = 64 * 1024


def canonical(value: dict[str, Any]) -> bytes:
    """Canonical bytes of a record (values must already pass `check_values`)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def check_values(value: Any, path: str = "") -> None:
    """Refuse values outside the canonical set, naming the field."""
    if type(value) is dict and not path:
        # Fast path for the common flat record: plain scalars need no recursion.
        for key, item in value.items():
            kind = type(item)
            if kind is str or kind is bool or item is None:
                if key.isascii():
                    continue
            elif kind is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER and key.isascii():
                continue
            _check_item(key, item)
        return
    _check_any(value, path)


def _check_item(key: Any, item: Any) -> None:
    if not isinstance(key, str) or not key.isascii():
        raise RecordError(f"field '': key {key!r} is not ASCII")
    _check_any(item, key)


def _check_any(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return
        raise RecordError(f"field '{path}': integer {value} is outside +/-(2**53-1)")
    if isinstance(value, float):
        raise RecordError(
            f"field '{path}': floats are not allowed ({value!r}); "
            "use an integer or a string"
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_any(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise RecordError(f"field '{path}': key {key!r} is not ASCII")
            _check_any(item, f"{path}.{key}" if path else key)
        return
    raise RecordError(f"field '{path}': unsupported value {value!r}")


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
