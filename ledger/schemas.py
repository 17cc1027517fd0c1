"""Write the JSON Schemas of the vocabulary to `schemas/` (the public contract).

Run `python -m ledger.schemas [DIR]` after changing `ledger/events.py`; a test
holds the checked-in files equal to what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from ledger.events import EVENT_TYPES, event_schema, record_schema


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every event type (as submitted and as stored)."""
    schemas = {"record.json": record_schema()}
    for event_type in EVENT_TYPES.values():
        schemas[f"{event_type.name}.record.json"] = event_schema(event_type, sealed=True)
        if not event_type.internal:
            schemas[f"{event_type.name}.input.json"] = event_schema(event_type, sealed=False)
    return schemas


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / name
        path.write_bytes(render(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("schemas")
    for path in write(target):
        print(path)
