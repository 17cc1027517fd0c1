"""Record bodies come from the vocabulary: a builder cannot write a field its event type
lacks, and no product module spells a record body as a dict literal."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import commands
from ledger.commands import record
from ledger.errors import RecordError
from ledger.events import EVENT_TYPES, validate_input
from tests.conftest import Env, run_cli

ROOT = Path(__file__).resolve().parent.parent


def test_a_field_the_event_type_does_not_declare_is_refused() -> None:
    with pytest.raises(ValueError, match=r"worker\.started declares no field 'colour'"):
        record("worker.started", "ci", "w1", worker_id="w1", version="v1", colour="red")


def test_a_required_field_left_out_is_refused_unless_partial() -> None:
    with pytest.raises(ValueError, match=r"deployment\.failed needs field 'reason'"):
        record("deployment.failed", "ci", "fleet", version="v1")
    body = record("deployment.failed", "ci", "fleet", partial=True, version="v1")
    with pytest.raises(RecordError, match="reason"):
        validate_input(body)  # left to the schema, which names it


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no event type 'deployment\.maybe'"):
        record("deployment.maybe", "ci", "fleet")


def test_extra_fields_pass_through_and_the_builders_own_fields_win() -> None:
    body = record("version.verified", "qa", "fleet", extra={"ticket": "OPS-1", "actor": "spoof"},
                  version="v1", reason=None)
    assert body == {"ticket": "OPS-1", "event": "version.verified", "actor": "qa", "target": "fleet",
                    "result": "success", "version": "v1"}
    validate_input(body)


_COUNTS = st.integers(0, 10**6)
_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@given(worker=_NAMES, version=_NAMES, sessions=_COUNTS, ok=st.none() | _COUNTS, exit_code=st.none() | _COUNTS,
       reason=st.none() | st.text(min_size=1, max_size=40).filter(str.strip))
def test_every_named_builder_writes_a_body_its_schema_accepts(worker: str, version: str, sessions: int,
                                                              ok: int | None, exit_code: int | None,
                                                              reason: str | None) -> None:
    bodies: list[dict[str, Any]] = [
        commands.deploy(version, "ci", reason),
        commands.complete(version, "ci", reason),
        commands.worker_start(worker, version, "platform", reason, pid=exit_code),
        commands.worker_sessions(worker, version, sessions, "platform", ok=ok, error=ok, dropped=ok),
        commands.worker_drain(worker, version, "platform", reason),
        commands.worker_exit(worker, version, sessions, "platform", reason, exit_code, ok=ok),
        commands.verdict("version.verified", version, "qa", reason),
    ]
    for body in bodies:
        assert validate_input(body).name == body["event"]


def _record_literals(path: Path) -> list[int]:
    """Lines of dict literals with both an "event" and an "actor" key: hand-written bodies."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if {"event", "actor"} <= keys:
                found.append(node.lineno)
    return found


def test_no_product_module_writes_a_record_body_by_hand() -> None:
    modules = sorted((ROOT / "ledger").rglob("*.py")) + sorted((ROOT / "projections").rglob("*.py"))
    builders = ROOT / "ledger" / "commands.py"
    by_hand = {str(p.relative_to(ROOT)): lines for p in modules if p != builders
               for lines in [_record_literals(p)] if lines}
    assert by_hand == {}
    assert _record_literals(builders)  # the one place that does, so the scan can see one


def test_the_vocabulary_and_the_builder_agree_on_every_event_type() -> None:
    for name, event_type in EVENT_TYPES.items():
        fields = {f: None for f in (*event_type.required, *event_type.optional)}
        body = record(name, "a", "t", partial=True, **fields)  # every declared field is accepted
        assert body["event"] == name


def test_a_decisions_own_fields_are_checked_as_given_not_coerced(sqlite_env: Env,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    body = '{"event": "deployment.started", "actor": "ci", "target": 5, "result": "success", "version": "v1"}'
    result = run_cli(capsys, "append", *sqlite_env.args(), "--fleet", "prod", "--json", body)
    assert result.code == 2, result.err
    assert "target" in result.err and result.err.count("\n") == 1
    result = run_cli(capsys, "append", *sqlite_env.args(), "--fleet", "prod", "--json",
                     '{"event": "version.marked_bad", "actor": "qa", "target": "fleet", "result": "success", '
                     '"version": "v1"}')
    assert result.code == 2 and "reason" in result.err, result.err  # bad input, not a broken builder
