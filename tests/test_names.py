"""One rule per identifier, the same in Python (full match) and in the JSON Schemas.

The schemas in `schemas/` are what other languages validate with; the Python
checks are what the CLI and the driver use. Both come from the same pattern
strings, and these tests hold them to the same answers, including for the
inputs `re.match` with `$` used to let through (a trailing newline).
"""

from __future__ import annotations

from collections.abc import Callable

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.names import (
    ACTOR_PATTERN,
    FLEET_PATTERN,
    VERSION_PATTERN,
    WORKER_PATTERN,
    escape_controls,
    is_actor,
    is_fleet_name,
    is_version,
    is_worker_id,
    shown,
)

RULES: list[tuple[str, str, Callable[[object], bool]]] = [
    ("fleet", FLEET_PATTERN, is_fleet_name),
    ("worker", WORKER_PATTERN, is_worker_id),
    ("version", VERSION_PATTERN, is_version),
    ("actor", ACTOR_PATTERN, is_actor),
]

TABLE = [
    # (value, fleet/worker, version, actor)
    pytest.param("prod", True, True, True, id="plain"),
    pytest.param("prod\n", False, False, False, id="trailing-newline"),
    pytest.param("\nprod", False, False, False, id="leading-newline"),
    pytest.param("v1.2+build.7", False, True, True, id="semver-build"),
    pytest.param("ci@example.com", False, False, True, id="email"),
    pytest.param("spiffe://prod/ci", False, False, True, id="uri"),
    pytest.param("On Call", False, False, True, id="space-inside"),
    pytest.param(" ci", False, False, False, id="space-before"),
    pytest.param("ci ", False, False, False, id="space-after"),
    pytest.param("ci\u00a0", False, False, False, id="nbsp-after"),
    pytest.param("a\x00b", False, False, False, id="nul"),
    pytest.param("a\x1bb", False, False, False, id="escape"),
    pytest.param("a\x85b", False, False, False, id="c1"),
    pytest.param("../x", False, False, True, id="dot-dot"),
    pytest.param(".hidden", False, False, True, id="leading-dot"),
    pytest.param("", False, False, False, id="empty"),
    pytest.param("a" * 64, True, True, True, id="64"),
    pytest.param("a" * 65, False, True, True, id="65"),
    pytest.param("a" * 128, False, True, True, id="128"),
    pytest.param("a" * 129, False, False, True, id="129"),
    pytest.param("a" * 256, False, False, True, id="256"),
    pytest.param("a" * 257, False, False, False, id="257"),
    pytest.param("\u00e9t\u00e9", False, False, True, id="non-ascii"),
]


@pytest.mark.parametrize(("value", "plain_id", "version", "actor"), TABLE)
def test_each_identifier_rule_answers_the_same_in_python_and_in_the_schema(
        value: str, plain_id: bool, version: bool, actor: bool) -> None:
    expected = {"fleet": plain_id, "worker": plain_id, "version": version, "actor": actor}
    for name, pattern, check in RULES:
        schema = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        assert check(value) is expected[name], (name, value)
        assert schema.is_valid(value) is expected[name], (name, value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=70))
def test_python_and_schema_agree_on_any_text(value: str) -> None:
    for _name, pattern, check in RULES:
        schema = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        assert check(value) is schema.is_valid(value), (pattern, value)


@pytest.mark.parametrize("text", ["\x1b[2J", "a\nb", "a\x00", "\x9b31m", "a\x7f"])
def test_user_text_is_shown_without_raw_control_characters(text: str) -> None:
    for rendered in (shown(text), escape_controls(f"error: {text}")):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in rendered), rendered
