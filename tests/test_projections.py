"""The read models over real ledgers in real SQLite files: answers, runner, faults, CLI.

Every ledger here is made with `Ledger.init` and written with `Ledger.append`;
every damage is done to the real files with `sqlite3` or plain file writes.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger, VerificationError
from ledger.encoding import canonical
from ledger.errors import LedgerError, UnknownFleetError
from ledger.rules import fleet_view, fold, history, last_good
from projections.runner import Projections
from tests.backends import tamper_for
from tests.conftest import Env, run_cli, write_unchecked
from tests.fleet_cases import (
    FLEET_CASES,
    LAST_GOOD_CASES,
    STATUS_CASES,
    A,
    B,
    LastGoodCase,
    Step,
    complete,
    deploy,
    random_steps,
    released,
    rollback,
    start,
)


def append(ledger: Ledger, steps: Sequence[Step]) -> None:
    """Append the steps in order, one transaction per run of one fleet."""
    for fleet, run in groupby(steps, key=lambda step: step[0]):
        write_unchecked(ledger, fleet, [body for _, body in run])


class Notices(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def views_of(env: Env, notices: Callable[[str], None] | None = None, *, name: str = "views",
             **options: Any) -> Projections:
    """The views of `env`'s ledger where its backend keeps them (a SQLite file of their own;
    tables named `name` in a PostgreSQL ledger's schema), on a read-only ledger of their own.

    So every test written against `views_of` is a contract both view stores keep.
    """
    ledger = env.open(writable=False)
    notice = notices if notices is not None else Notices()
    where = f"{env.db}&views={name}" if env.backend == "postgres" else env.dir / f"{name}.db"
    return Projections(ledger.store, where, notice=notice, owns_store=True, **options)


def views_in_file(env: Env, notices: Callable[[str], None] | None = None) -> Projections:
    """The views of `env`'s ledger in a SQLite file of their own, whatever the ledger's backend:
    for what only a file can suffer (deleted, truncated, overwritten)."""
    ledger = env.open(writable=False)
    notice = notices if notices is not None else Notices()
    return Projections(ledger.store, env.dir / "views.db", notice=notice, owns_store=True)


def default_views(env: Env) -> Projections:
    """The views where the ledger keeps them by default: a file beside a SQLite
    ledger, tables in a PostgreSQL ledger's own schema."""
    ledger = env.open(writable=False)
    return Projections(ledger.store, notice=Notices(), owns_store=True)


def answers(views: Projections) -> dict[str, Any]:
    """Every answer the views give, for every fleet: what must not depend on how they were built."""
    result: dict[str, Any] = {}
    for fleet in views.fleets():
        history_ = views.history(fleet)
        leavings = [None, *(entry["version"] for entry in history_["versions"])]
        result[fleet] = {
            "history": history_,
            "fleet": views.fleet(fleet),
            "last_good": {str(v): views.last_good(fleet, v) for v in leavings},
            "for_rollback": views.last_good(fleet, for_rollback=True),
            "state": views.state(fleet).to_dict(),
        }
    return result


# -- the same tables as the rules, through a real ledger -----------------------------


def _decision(state: Any, target: str | None) -> Any:
    from ledger.rollback import RollbackRequest, plan_rollback

    decision = plan_rollback(state, RollbackRequest("x", "on-call", "errors", to_version=target))
    skipped_above = []  # what a dry run lists: the candidates ranked above the chosen target
    for candidate in getattr(decision, "candidates", []):
        if candidate.version == decision.target:
            break
        skipped_above.append((candidate.version, candidate.skipped))
    return {k: v for k, v in vars(decision).items() if k != "candidates"}, skipped_above


@pytest.mark.parametrize("case", LAST_GOOD_CASES, ids=[c.id for c in LAST_GOOD_CASES])
def test_last_good_cases_through_the_views(env: Env, case: LastGoodCase) -> None:
    with env.open() as ledger:
        append(ledger, case.steps)
    with default_views(env) as views:
        answer = views.last_good(case.fleet, case.leaving, for_rollback=case.for_rollback)
        assert (answer.version if answer else None) == case.expected
        if answer is not None and case.evidence_seq is not None:
            assert answer.evidence_seq == case.evidence_seq
        for bad in case.never:
            for entry in views.history(case.fleet)["versions"]:
                found = views.last_good(case.fleet, entry["version"])
                assert found is None or found.version != bad


ALL_CASES: list[Any] = [*LAST_GOOD_CASES, *STATUS_CASES, *FLEET_CASES]


@pytest.mark.parametrize("case", ALL_CASES, ids=[f"{type(c).__name__}-{c.id}" for c in ALL_CASES])
def test_views_answer_exactly_as_the_rules_do(env: Env, case: Any) -> None:
    with env.open() as ledger:
        append(ledger, case.steps)
        fleets = ledger.fleets()
        folded = {fleet: fold(fleet, ledger.records(fleet)) for fleet in fleets}
    with default_views(env) as views:
        assert views.fleets() == fleets
        for fleet, state in folded.items():
            stored = views.history(fleet)
            assert stored["versions"] == history(state)
            assert (stored["head_seq"], stored["current"], stored["in_flight"]) == (
                state.head_seq, state.current, state.in_flight.to_dict() if state.in_flight else None)
            assert views.fleet(fleet) == fleet_view(state)
            for leaving in [None, *state.versions]:
                assert views.last_good(fleet, leaving) == last_good(state, leaving)
            assert views.state(fleet).to_dict() == state.to_dict()
            # the lean state a rollback reads decides exactly as the whole state does
            for target in [None, *state.versions]:
                lean = _decision(views.decision_state(fleet, target), target)
                whole = _decision(state, target)
                assert lean == whole


# -- rebuild and incremental catch-up agree --------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_steps(50), st.lists(st.integers(1, 49), max_size=4), st.integers(1, 40))
def test_rebuild_equals_incremental_catch_up(steps: list[Step], cuts: list[int], batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Ledger.init(root / "ledger.db", root / "ledger.key", actor="test") as ledger:
            incremental = Projections(ledger.store, root / "incremental.db", notice=Notices(),
                                      batch_size=batch)
            bounds = sorted({0, *(c for c in cuts if c < len(steps)), len(steps)})
            for start_, end in pairwise(bounds):
                append(ledger, steps[start_:end])
                incremental.catch_up()
            fresh = Projections(ledger.store, root / "fresh.db", notice=Notices())
            fresh.catch_up()
            assert incremental.views.dump() == fresh.views.dump()
            assert answers(incremental) == answers(fresh)
            rows = incremental.views.dump()
            incremental.rebuild()
            assert incremental.views.dump() == rows
            incremental.close()
            fresh.close()


def test_each_record_affects_the_views_once_across_two_runners(env: Env) -> None:
    with env.open() as ledger:
        first, second = views_of(env), views_of(env)
        append(ledger, released("v1"))
        assert first.catch_up() == 2 and second.catch_up() == 0
        append(ledger, [(A, deploy("v2")), (A, start("w1", "v2"))])
        second.catch_up()
        append(ledger, [(A, complete("v2"))])
        # first holds a stale state in memory: its write loses the race and it reloads
        assert first.last_good(A, for_rollback=True).version == "v1"  # type: ignore[union-attr]
        assert second.history(A)["versions"][1]["status"] == "live"
        second.rebuild()  # first's next write must not mix its generation with the new one
        append(ledger, [(A, rollback("v1", "v2"))])
        assert first.last_good(A).version == "v1"  # type: ignore[union-attr]
        reference = Projections(ledger.store, env.dir / "reference.db", notice=Notices())
        reference.catch_up()
        second.catch_up()
        assert first.views.dump() == reference.views.dump() == second.views.dump()
        for views in (first, second, reference):
            views.close()


def test_a_projection_behind_the_ledger_catches_up_before_answering(env: Env) -> None:
    with env.open() as ledger:
        append(ledger, released("v1"))
        views = views_of(env)
        assert views.last_good(A).version == "v1"  # type: ignore[union-attr]
        append(ledger, released("v2"))
        assert views.position() < ledger.store.max_notification_id()
        assert views.last_good(A).version == "v2"  # type: ignore[union-attr]
        assert views.position() == ledger.store.max_notification_id()
        views.close()


def test_views_resume_after_a_restart(env: Env) -> None:
    with env.open() as ledger:
        append(ledger, released("v1", "v2"))
        with views_of(env) as views:
            assert views.catch_up() == 4
        append(ledger, released("v3"))
        with views_of(env) as views:
            assert views.catch_up() == 2
            assert views.last_good(A, for_rollback=True).version == "v2"  # type: ignore[union-attr]


# -- damaged views are rebuilt with a message ------------------------------------------


def _garbage(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database, it is a grocery list\n" * 200)


def _truncate(path: Path) -> None:
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 8192)


def _scribble_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for page in range(1, len(data) // 4096):
        data[page * 4096 + 8: page * 4096 + 64] = b"\xff" * 56
    path.write_bytes(bytes(data))


def _drop_table(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("DROP TABLE last_good")


def _other_format(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE projection_meta SET value = 'deploy-ledger-views/0' WHERE key = 'format'")


def _wrong_head(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE fleets SET head_hash = ?", ("ab" * 32,))
        c.execute("UPDATE fleets SET rules_state = CAST(json_set(rules_state, '$.head_hash', ?) AS BLOB)",
                  ("ab" * 32,))


def _ahead(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE tracking SET notification_id = notification_id + 100 "
                  "WHERE application_name <> '__migration__'")


def _unreadable_row(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE fleet_state SET data = x'7b7b7b'")


DAMAGE = [
    pytest.param(lambda p: p.unlink(), "no projection file", id="file-deleted"),
    pytest.param(_garbage, "damaged", id="file-overwritten-with-garbage"),
    pytest.param(_truncate, "", id="file-truncated"),
    pytest.param(_scribble_pages, "", id="pages-scribbled"),
    pytest.param(_drop_table, "damaged", id="table-missing"),
    pytest.param(_other_format, "format", id="older-format"),
    pytest.param(_wrong_head, "disagrees with the ledger", id="stored-head-disagrees-with-ledger"),
    pytest.param(_ahead, "ahead of the ledger", id="tracking-ahead-of-ledger"),
    pytest.param(_unreadable_row, "unreadable", id="unreadable-row"),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGE)
def test_damaged_views_are_rebuilt_with_a_message(env: Env, damage: Callable[[Path], None],
                                                   message: str) -> None:
    steps = [*released("v1", "v2"), (A, start("w1", "v2")), *released("v1", fleet=B)]
    with env.open() as ledger:
        append(ledger, steps)
        with views_in_file(env) as views:
            before = answers(views)
        damage(env.dir / "views.db")
        append(ledger, [(A, deploy("v3"))])  # the views are also behind now
        notices = Notices()
        with views_in_file(env, notices) as views:
            after = answers(views)
        with Projections(ledger.store, env.dir / "reference.db", notice=Notices()) as reference:
            expected = answers(reference)
    assert after == expected
    assert after != before
    assert notices, "a rebuild must say so"
    assert any(message in notice for notice in notices), notices
    assert all("rebuil" in notice or "building" in notice for notice in notices), notices


def test_views_of_another_ledger_are_rebuilt(env: Env, tmp_path: Path) -> None:
    with env.open() as ledger:
        append(ledger, released("v1"))
        with views_in_file(env) as views:
            views.catch_up()
    other = tmp_path / "other"
    other.mkdir()
    with Ledger.init(other / "ledger.db", other / "ledger.key", actor="test") as second:
        append(second, released("v7"))
        notices = Notices()
        with Projections(second.store, env.dir / "views.db", notice=notices) as views:
            assert views.last_good(A).version == "v7"  # type: ignore[union-attr]
    assert any("another ledger" in n for n in notices)


# -- the views never answer from records that fail verification -----------------------

STREAM = "fleet:" + A


def _rows(db: str) -> dict[int, bytes]:
    return dict(tamper_for(db, STREAM).rows())


def _set(db: str, seq: int, state: bytes) -> None:
    tamper_for(db, STREAM).set_state(seq, state)


def _edit_field(db: str, seq: int) -> None:
    record = orjson.loads(_rows(db)[seq])
    record["actor"] = "mallory"
    _set(db, seq, canonical(record))


def _flip_byte(db: str, seq: int) -> None:
    state = bytearray(_rows(db)[seq])
    state[30] ^= 0x01
    _set(db, seq, bytes(state))


def _delete(db: str, seq: int) -> None:
    tamper_for(db, STREAM).delete(seq)


def _swap(db: str, seq: int) -> None:
    rows = _rows(db)
    _set(db, seq, rows[seq + 1])
    _set(db, seq + 1, rows[seq])


def _rehash(db: str, seq: int) -> None:
    """Change a record and fix its hash (no key, so its signature stays the old one)."""
    from ledger.chain import unsigned_hash

    record = orjson.loads(_rows(db)[seq])
    record["reason"] = "nothing to see"
    record["hash"] = unsigned_hash(record)
    _set(db, seq, canonical(record))


TAMPER = [
    pytest.param(_edit_field, "hash", id="field-edited"),
    pytest.param(_flip_byte, None, id="byte-flipped"),
    pytest.param(_delete, "seq", id="record-deleted"),
    pytest.param(_swap, "seq", id="records-swapped"),
]


@pytest.mark.parametrize(("tamper", "check"), TAMPER)
def test_tampered_records_stop_the_views_with_the_fault_verify_reports(
        env: Env, tamper: Callable[[Path, int], None], check: str | None) -> None:
    with env.open() as ledger:
        append(ledger, released("v1"))
        views = views_of(env)
        views.catch_up()
        append(ledger, [*released("v2", "v3"), (A, start("w1", "v3"))])
        tamper(env.db, 4)  # a record the views have not seen yet
        with pytest.raises(VerificationError) as verified:
            ledger.verify(fleets=[A])
        with pytest.raises(VerificationError) as answered:
            views.last_good(A)
        with pytest.raises(VerificationError) as rebuilt:
            views.rebuild()
        views.close()
    expected = verified.value.fault
    for got in (answered.value.fault, rebuilt.value.fault):
        assert (got.chain, got.seq, got.check) == (expected.chain, expected.seq, expected.check)
        if check is not None:
            assert got.check == check
        if got.check in ("hash", "prev", "seq"):
            assert (got.expected, got.found) == (expected.expected, expected.found)


def test_a_rehashed_record_is_caught_at_the_next_link(env: Env) -> None:
    """Verify names the bad signature at seq 4; the views (no signature checks) stop at 5."""
    with env.open() as ledger:
        append(ledger, [*released("v1", "v2", "v3")])
        _rehash(env.db, 4)
        with pytest.raises(VerificationError) as verified:
            ledger.verify(fleets=[A])
        with views_of(env) as views, pytest.raises(VerificationError) as answered:
            views.last_good(A)
    assert (verified.value.fault.seq, verified.value.fault.check) == (4, "signature")
    fault = answered.value.fault
    assert (fault.seq, fault.check, fault.found) == (5, "prev", orjson.loads(_rows(env.db)[5])["prev"])


def test_a_record_tampered_after_it_was_projected_is_caught_by_rebuild(env: Env) -> None:
    with env.open() as ledger:
        append(ledger, released("v1", "v2"))
        views = views_of(env)
        views.catch_up()
        _edit_field(env.db, 2)
        with pytest.raises(VerificationError) as caught:
            views.rebuild()
        views.close()
    assert (caught.value.fault.seq, caught.value.fault.check) == (2, "hash")


# -- unknown fleet ---------------------------------------------------------------------


def test_an_unknown_fleet_is_an_input_error(env: Env) -> None:
    with env.open() as ledger:
        append(ledger, released("v1"))
    with views_of(env) as views:
        for ask in (views.history, views.last_good, views.fleet, views.state):
            with pytest.raises(UnknownFleetError, match="nope"):
                ask("nope")
        with pytest.raises(LedgerError):
            views.history("not a fleet name!")


# -- the CLI -----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The real `ledger` CLI in-process: exit code, stdout, stderr."""
    result = run_cli(capsys, *argv)
    return result.code, result.out, result.err


@pytest.fixture
def cli_env(env: Env) -> Env:
    with env.open() as ledger:
        append(ledger, [*released("v1", "v2", "v3"), (A, start("w1", "v3")), (A, rollback("v2", "v3"))])
    return env


def test_cli_history_table_and_json(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", *cli_env.args(), "--fleet", A)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"fleet {A}: head seq 8, current v2")
    assert lines[1].split()[:3] == ["VERSION", "STATUS", "GOOD"]
    assert [line.split()[:3] for line in lines[2:-1]] == [
        ["v1", "superseded", "yes"], ["v2", "rolling_out", "yes"], ["v3", "rolled_back", "no"]]
    assert lines[-1].startswith("actors are not authenticated (open mode")
    assert "rolled back to v2 at seq 8 by on-call" in out
    code, out, _ = run(capsys, "history", *cli_env.args(), "--fleet", A, "--json")
    data = orjson.loads(out)
    assert code == 0 and [v["status"] for v in data["versions"]] == ["superseded", "rolling_out",
                                                                     "rolled_back"]
    assert data["actors"]["authenticated"] is False
    assert [d["event"] for d in data["decisions"]][-1] == "deployment.rolled_back"


def test_cli_last_good(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "last-good", *cli_env.args(), "--fleet", A)
    assert (code, out) == (0, "v2\n")
    code, out, _ = run(capsys, "last-good", *cli_env.args(), "--fleet", A, "--for-rollback")
    assert (code, out) == (0, "v1\n")
    code, out, _ = run(capsys, "last-good", *cli_env.args(), "--fleet", A, "--leaving", "v2", "--json")
    assert code == 0
    assert orjson.loads(out) == {"fleet": A, "version": "v1", "evidence_seq": 2,
                                 "evidence_event": "deployment.completed", "completed_seq": 2,
                                 "verified_seq": None, "leaving": "v2"}


def test_cli_last_good_none_exits_3(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as ledger:
        append(ledger, [(A, deploy("v1"))])
    code, out, err = run(capsys, "last-good", *env.args(), "--fleet", A)
    assert (code, out) == (3, "")
    assert "no last-good version" in err and err.count("\n") <= 2


def test_cli_fleet(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "fleet", *cli_env.args(), "--fleet", A)
    assert code == 0 and "NOT clean" in out and "w1" in out and "v3 x1" in out
    code, out, _ = run(capsys, "fleet", *cli_env.args(), "--fleet", A, "--json")
    summary = orjson.loads(out)["summary"]
    assert code == 0 and summary["clean"] is False and summary["versions"] == {"v3": 1}


def test_cli_unknown_fleet_exits_2(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("history", "last-good", "fleet"):
        code, out, err = run(capsys, command, *cli_env.args(), "--fleet", "nope")
        assert (code, out) == (2, "") and "fleet 'nope' has no records" in err


def test_cli_catch_up_and_rebuild(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    views = str(cli_env.dir / "elsewhere.db")
    code, out, err = run(capsys, "projections", "catch-up", *cli_env.args(), "--projections", views)
    assert code == 0 and "8 new ledger records" in out and "no projection file" in err
    code, out, _ = run(capsys, "projections", "catch-up", *cli_env.args(), "--projections", views)
    assert code == 0 and "0 new ledger records" in out
    code, out, _ = run(capsys, "projections", "rebuild", *cli_env.args(), "--projections", views)
    assert code == 0 and "rebuilt from 8 ledger records" in out


def test_cli_tampered_ledger_exits_1(cli_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _edit_field(cli_env.db, 3)
    code, out, err = run(capsys, "last-good", *cli_env.args(), "--fleet", A)
    assert (code, out) == (1, "") and f"hash at {A} seq 3" in err
