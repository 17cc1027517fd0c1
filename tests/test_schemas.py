"""The schemas in `schemas/` are the public contract, and they match the code."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from ledger.events import EVENT_TYPES
from ledger.schemas import all_schemas, render
from tests.conftest import Env, seed

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_checked_in_schemas_equal_the_vocabulary() -> None:
    expected = {name: render(schema) for name, schema in all_schemas().items()}
    actual = {p.name: p.read_bytes() for p in SCHEMAS.glob("*.json")}
    assert actual == expected, "run `python -m ledger.schemas` and commit schemas/"


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(all_schemas()[name])


def test_openrtc_core_names_are_in_the_vocabulary() -> None:
    for name in ("deployment.started", "deployment.completed", "deployment.drain_started",
                 "deployment.rolled_back", "worker.rejected"):
        assert name in EVENT_TYPES


def test_stored_records_match_their_type_schema(env: Env) -> None:
    with env.open() as lg:
        seed(lg)
        for data in lg.raw_records("prod"):
            record = orjson.loads(data)
            schema = all_schemas()[f"{record['event']}.record.json"]
            jsonschema.Draft202012Validator(schema).validate(record)
