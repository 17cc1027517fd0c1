"""The read models on PostgreSQL: views in the ledger's own schema, gaps, live following.

Real server, no mocks: every test gets a schema of its own on the server named
by LEDGER_TEST_PG_URL (the session's `pg_url`), holding a real ledger made
with `Ledger.init`, and its views in tables `deployledger_views_*` beside the
events table. Gaps in notification ids are made the way PostgreSQL makes
them: ids taken by transactions that roll back.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.postgres_url import postgres_env
from projections.follow_postgres import ListenWaiter
from projections.postgres_views import PostgresLedgerViews
from projections.runner import Projections
from projections.sqlite_views import SQLiteLedgerViews
from tests.conftest import run_cli, write_unchecked
from tests.fleet_cases import (
    A,
    B,
    Step,
    complete,
    deploy,
    random_steps,
    released,
    rollback,
    start,
)

FALLBACK_URL = "postgresql://ledger:ledger@127.0.0.1:54329/ledger_test"
VIEWS = "deployledger_views_"


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL server (conftest's `pg_url`, else LEDGER_TEST_PG_URL)."""
    try:
        return str(request.getfixturevalue("pg_url"))
    except pytest.FixtureLookupError:
        return os.environ.get("LEDGER_TEST_PG_URL", FALLBACK_URL)


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    env = postgres_env(url)
    return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                           port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"], autocommit=True)


@contextmanager
def new_schema(server: str) -> Iterator[str]:
    """A fresh schema, dropped afterwards; yields the URL naming it."""
    name = f"pv_{uuid.uuid4().hex[:12]}"
    with connect(server) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{server}{'&' if '?' in server else '?'}schema={name}"
    finally:
        with connect(server) as c:
            c.execute(f'DROP SCHEMA "{name}" CASCADE')


@dataclass
class Pg:
    """A ledger in a schema of its own, and a temporary directory for its key."""

    url: str
    schema: str
    dir: Path
    key: Path

    def open(self, *, writable: bool = True) -> Ledger:
        return Ledger.open(self.url, self.key, writable=writable)

    def views(self, notices: Callable[[str], None] | None = None, name: str | None = None,
              **options: Any) -> Projections:
        """Views in this schema (`name`: another set of tables), on a ledger handle of their own."""
        ledger = self.open(writable=False)
        location = f"{self.url}&views={name}" if name else None
        return Projections(ledger.store, location, notice=notices if notices is not None else Notices(),
                           owns_store=True,
                           **options)

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with connect(self.url) as c:
            c.execute(f'SET search_path TO "{self.schema}"')
            cursor = c.execute(statement, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def tables(self) -> set[str]:
        return {row[0] for row in self.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (self.schema,))}


def make_pg(url: str, directory: Path) -> Pg:
    Ledger.init(url, directory / "ledger.key", actor="test").close()
    schema = url.rsplit("schema=", 1)[1]
    return Pg(url, schema, directory, directory / "ledger.key")


@pytest.fixture
def pg(server: str, tmp_path: Path) -> Iterator[Pg]:
    with new_schema(server) as url:
        yield make_pg(url, tmp_path)


class Notices(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def append(ledger: Ledger, steps: Sequence[Step]) -> None:
    for fleet, run in groupby(steps, key=lambda step: step[0]):
        write_unchecked(ledger, fleet, [body for _, body in run])


def answers(views: Projections) -> dict[str, Any]:
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


def notification_ids(pg: Pg) -> list[int]:
    return [row[0] for row in pg.sql("SELECT notification_id FROM deployledger_events ORDER BY 1")]


def rolled_back_insert(pg: Pg) -> None:
    """A gap made as PostgreSQL makes them: an insert that takes an id, then rolls back."""
    with connect(pg.url) as c, c.transaction(force_rollback=True):
        c.execute(f'INSERT INTO "{pg.schema}".deployledger_events '
                  "(originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                  (f"fleet:{A}", 10_000, "never.committed", b"{}"))


def rolled_back_nextval(pg: Pg) -> None:
    """Another: a transaction that draws from the notification_id sequence and rolls back."""
    with connect(pg.url) as c, c.transaction(force_rollback=True):
        c.execute("SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))",
                  (f'"{pg.schema}".deployledger_events',))


# -- where the views live ----------------------------------------------------------------


def test_a_postgres_ledgers_views_are_tables_in_its_own_schema(pg: Pg) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1"))
    notices = Notices()
    with Projections.open(pg.url, notice=notices) as views:
        assert isinstance(views.views, PostgresLedgerViews) and views.path is None
        assert views.last_good(A).version == "v1"  # type: ignore[union-attr]
        assert "deployledger_views_*" in views.where and "***" in views.where
        assert "ledger:ledger@" not in views.where
        # one connection pool serves the ledger and its views
        assert views.views.datastore is views.store.recorder.datastore
    assert notices == [f"no projection tables deployledger_views_* in "
                       f"{pg.url.replace(':ledger@', ':***@')}; building them from the ledger"]
    assert {f"{VIEWS}{t}" for t in ("meta", "fleets", "version_history", "last_good", "fleet_state",
                                    "tracking")} | {"deployledger_events", "deployledger_events_merkle"} \
        == pg.tables()
    assert not list(pg.dir.glob("*.db")), "no file is written for a PostgreSQL ledger's views"
    with Projections.open(pg.url, notice=notices) as views:  # found again: no notice
        assert views.position() == max(notification_ids(pg))
    assert len(notices) == 1
    # eventsourcing's own factory, given the views' name, builds a recorder of the same tables
    factory: Any = InfrastructureFactory.construct(Environment("deployledger_views", postgres_env(pg.url)))
    try:
        recorder = factory.tracking_recorder(PostgresLedgerViews)
        assert recorder.tracking_table_name == f"{VIEWS}tracking"
        assert recorder.max_tracking_id("DeployLedger") == max(notification_ids(pg))
        assert recorder.meta() is not None and recorder.last_good_row(A) is not None
    finally:
        factory.close()


def test_an_explicit_sqlite_path_keeps_the_views_in_a_file(pg: Pg) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1"))
    with Projections.open(pg.url, pg.dir / "views.db", notice=Notices()) as views:
        assert isinstance(views.views, SQLiteLedgerViews)
        assert views.last_good(A).version == "v1"  # type: ignore[union-attr]
    assert (pg.dir / "views.db").exists()
    assert not any(t.startswith(VIEWS) for t in pg.tables())


def test_views_in_another_schema_and_by_another_name(pg: Pg, server: str) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1", "v2"))
    with new_schema(server) as elsewhere:
        with Projections.open(pg.url, f"{elsewhere}&views=audit", notice=Notices()) as views:
            assert views.views.datastore is not views.store.recorder.datastore  # type: ignore[attr-defined]
            assert views.last_good(A, for_rollback=True).version == "v1"  # type: ignore[union-attr]
        other = elsewhere.rsplit("schema=", 1)[1]
        with connect(server) as c:
            found = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = %s", (other,))}
        assert "deployledger_audit_fleets" in found
    assert not any(t.startswith(VIEWS) for t in pg.tables())


# -- rebuild and incremental catch-up agree ------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(random_steps(40), st.lists(st.integers(1, 39), max_size=4), st.integers(1, 30))
def test_rebuild_equals_incremental_catch_up_on_postgres(server: str, steps: list[Step], cuts: list[int],
                                                          batch: int) -> None:
    with new_schema(server) as url, tempfile.TemporaryDirectory() as tmp, ExitStack() as opened:
        pg = make_pg(url, Path(tmp))
        ledger = opened.enter_context(pg.open())
        incremental = opened.enter_context(pg.views(name="incremental", batch_size=batch))
        bounds = sorted({0, *(c for c in cuts if c < len(steps)), len(steps)})
        for start_, end in pairwise(bounds):
            append(ledger, steps[start_:end])
            incremental.catch_up()
        fresh = opened.enter_context(pg.views(name="fresh"))
        in_sqlite = opened.enter_context(Projections(fresh.store, Path(tmp) / "views.db", notice=Notices()))
        fresh.catch_up()
        in_sqlite.catch_up()
        assert incremental.views.dump() == fresh.views.dump()
        assert answers(incremental) == answers(fresh)
        # the same rows, types and order as SQLite's views over the same ledger
        assert fresh.views.dump() == in_sqlite.views.dump()
        rows = incremental.views.dump()
        incremental.rebuild()
        assert incremental.views.dump() == rows


def test_concurrent_followers_apply_each_record_once(pg: Pg) -> None:
    """Four runners in threads race to catch up while records are appended."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def race() -> None:
        try:
            with pg.views() as views:
                while not stop.is_set():
                    views.catch_up()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    with pg.open() as ledger:
        for i in range(12):
            append(ledger, [*released(f"v{i}"), (B, deploy(f"b{i}"))])
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    with pg.views() as views, pg.views(name="reference") as reference:
        views.catch_up()
        reference.catch_up()
        assert views.views.dump() == reference.views.dump()


# -- gaps in notification ids --------------------------------------------------------------


def test_gaps_in_notification_ids_are_passed_over(pg: Pg) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1"))
        views = pg.views()
        assert views.catch_up() == 2
        before = max(notification_ids(pg))
        rolled_back_insert(pg)
        rolled_back_nextval(pg)
        # a gap at the head: nothing to apply, nothing to wait for
        started = time.perf_counter()
        assert views.catch_up() == 0 and views.position() == before
        assert time.perf_counter() - started < 1.0
        append(ledger, [(A, deploy("v2")), (A, start("w1", "v2"))])
        rolled_back_insert(pg)
        append(ledger, [(A, complete("v2"))])
        ids = notification_ids(pg)
        assert ids[-3:] == [before + 3, before + 4, before + 6], ids  # two ids, then one, never used
        assert views.last_good(A).version == "v2"  # type: ignore[union-attr]
        assert views.position() == ids[-1]
        with pg.views(name="fresh") as fresh:
            assert fresh.catch_up() == 5
            assert fresh.views.dump() == views.views.dump()
        views.rebuild()
        assert views.position() == ids[-1]
        views.close()


def test_a_follower_waiting_across_a_gap_sees_the_next_record(pg: Pg) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1"))
        with pg.views() as views, views.waiter() as waiter:
            views.catch_up()
            position = views.position()
            rolled_back_insert(pg)  # the id after the position will never exist
            started = time.perf_counter()
            assert waiter.wait(position, 0.3) == position  # nothing new: times out, no error
            assert 0.25 < time.perf_counter() - started < 2.0

            def later() -> None:
                time.sleep(0.2)
                append(ledger, [(A, deploy("v2"))])

            thread = threading.Thread(target=later)
            thread.start()
            head = waiter.wait(position, 20.0)
            thread.join()
            assert head == position + 2  # position + 1 was taken by the rollback
            assert views.catch_up() == 1 and views.position() == head


def test_eventsourcings_own_subscription_passes_over_the_gap_too(pg: Pg) -> None:
    """For followers that iterate `recorder.subscribe()` (the feed): same channel, same gaps."""
    with pg.open() as ledger:
        append(ledger, released("v1"))
        position = ledger.store.max_notification_id()
        rolled_back_nextval(pg)
        with ledger.store.recorder.subscribe(gt=position) as subscription:
            write_unchecked(ledger, A, [deploy("v2")])[-1]
            first = next(subscription)
        assert first.id == position + 2 and first.originator_version == 3


# -- live following with LISTEN/NOTIFY -----------------------------------------------------


def test_the_listen_notify_waiter_wakes_on_a_commit(pg: Pg) -> None:
    with pg.open() as ledger, pg.views() as views, views.waiter() as waiter:
        assert isinstance(waiter, ListenWaiter)
        append(ledger, released("v1"))
        head = views.store.max_notification_id()
        arrived: list[float] = []

        def wait() -> None:
            waiter.wait(head, 30.0)
            arrived.append(time.perf_counter())

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)  # the waiter is blocked in LISTEN by now
        sent = time.perf_counter()
        write_unchecked(ledger, A, [deploy("v2")])[-1]
        thread.join(10)
        assert arrived, "the waiter did not wake"
        assert arrived[0] - sent < 0.5
        assert waiter.notified >= 1


def test_follow_applies_a_new_record_within_milliseconds(pg: Pg) -> None:
    """`follow()` with a 60 s idle re-check: only a notification can wake it this fast."""
    with pg.open() as ledger:
        append(ledger, released("v1"))
        stop = threading.Event()
        positions: list[tuple[int, float]] = []
        errors: list[BaseException] = []
        moved = threading.Event()

        def on_update(position: int) -> None:
            positions.append((position, time.perf_counter()))
            moved.set()

        def run() -> None:
            try:
                with pg.views() as views:
                    views.follow(stop, on_update=on_update, idle_s=60.0)
            except BaseException as exc:
                errors.append(exc)
                moved.set()

        thread = threading.Thread(target=run)
        thread.start()
        assert moved.wait(10) and not errors, errors  # the initial catch-up
        latencies = []
        for version in ("v2", "v3", "v4", "v5", "v6"):
            moved.clear()
            time.sleep(0.1)
            sent = time.perf_counter()
            receipt = write_unchecked(ledger, A, [deploy(version)])[-1]
            target = max(notification_ids(pg))
            assert moved.wait(5), f"follow() did not see seq {receipt.seq}"
            while positions[-1][0] < target:
                moved.clear()
                assert moved.wait(5)
            latencies.append(positions[-1][1] - sent)
        stop.set()
        thread.join(10)
        assert not thread.is_alive() and not errors, errors
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.2, latencies
    with pg.views() as views:
        assert [v["version"] for v in views.history(A)["versions"]] == ["v1", "v2", "v3", "v4", "v5", "v6"]


def test_follow_on_sqlite_polls_and_stops(tmp_path: Path) -> None:
    with Ledger.init(tmp_path / "ledger.db", tmp_path / "ledger.key", actor="test") as ledger:
        append(ledger, released("v1"))
        with Projections(ledger.store, tmp_path / "views.db", notice=Notices()) as views:
            stop = threading.Event()
            seen: list[int] = []
            thread = threading.Thread(target=lambda: views.follow(stop, on_update=seen.append))
            thread.start()
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            write_unchecked(ledger, A, [deploy("v2")])[-1]
            head = ledger.store.max_notification_id()
            while (not seen or seen[-1] < head) and time.monotonic() < deadline:
                time.sleep(0.01)
            stop.set()
            thread.join(5)
            assert seen and seen[-1] == head and not thread.is_alive()
        with Projections(ledger.store, tmp_path / "views.db") as views:
            assert views.follow(timeout=0.1) == 0


# -- damaged views are rebuilt: the tables dropped and made again ---------------------------


def _drop_one(pg: Pg) -> None:
    pg.sql(f"DROP TABLE {VIEWS}last_good")


def _drop_all(pg: Pg) -> None:
    for table in ("meta", "fleets", "version_history", "last_good", "fleet_state", "tracking"):
        pg.sql(f"DROP TABLE {VIEWS}{table}")


def _drop_column(pg: Pg) -> None:
    pg.sql(f"ALTER TABLE {VIEWS}fleets DROP COLUMN header")


def _other_format(pg: Pg) -> None:
    pg.sql(f"UPDATE {VIEWS}meta SET value = 'deploy-ledger-views/0' WHERE key = 'format'")


def _bad_generation(pg: Pg) -> None:
    pg.sql(f"UPDATE {VIEWS}meta SET value = 'many' WHERE key = 'generation'")


def _wrong_head(pg: Pg) -> None:
    pg.sql(f"UPDATE {VIEWS}fleets SET head_hash = %s", ("ab" * 32,))
    for fleet, state in pg.sql(f"SELECT fleet, rules_state FROM {VIEWS}fleets"):
        data = orjson.loads(state)
        data["head_hash"] = "ab" * 32
        pg.sql(f"UPDATE {VIEWS}fleets SET rules_state = %s WHERE fleet = %s", (orjson.dumps(data), fleet))


def _ahead(pg: Pg) -> None:
    pg.sql(f"UPDATE {VIEWS}tracking SET notification_id = notification_id + 100 "
           "WHERE application_name <> '__migration__'")


def _unreadable_row(pg: Pg) -> None:
    pg.sql(f"UPDATE {VIEWS}fleet_state SET data = '\\x7b7b7b'")


DAMAGE = [
    pytest.param(_drop_all, "no projection tables", id="all-tables-dropped"),
    pytest.param(_drop_one, "", id="table-dropped"),
    pytest.param(_drop_column, "damaged", id="column-dropped"),
    pytest.param(_other_format, "format", id="older-format"),
    pytest.param(_bad_generation, "damaged", id="generation-garbled"),
    pytest.param(_wrong_head, "disagrees with the ledger", id="stored-head-disagrees-with-ledger"),
    pytest.param(_ahead, "ahead of the ledger", id="tracking-ahead-of-ledger"),
    pytest.param(_unreadable_row, "unreadable", id="unreadable-row"),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGE)
def test_damaged_postgres_views_are_rebuilt_with_a_message(pg: Pg, damage: Callable[[Pg], None],
                                                            message: str) -> None:
    steps = [*released("v1", "v2"), (A, start("w1", "v2")), *released("v1", fleet=B)]
    with pg.open() as ledger:
        append(ledger, steps)
        with pg.views() as views:
            before = answers(views)
        damage(pg)
        append(ledger, [(A, deploy("v3"))])  # the views are also behind now
        notices = Notices()
        with pg.views(notices) as views:
            after = answers(views)
        with pg.views(name="reference") as reference:
            expected = answers(reference)
    assert after == expected
    assert after != before
    assert notices, "a rebuild must say so"
    assert any(message in notice for notice in notices), notices
    assert all("rebuil" in notice or "building" in notice for notice in notices), notices
    assert {f"{VIEWS}{t}" for t in ("meta", "fleets", "version_history", "last_good", "fleet_state",
                                    "tracking")} <= pg.tables()


def test_views_damaged_while_open_are_rebuilt_in_place(pg: Pg) -> None:
    """Another process drops a table under an open runner: it recreates them and goes on."""
    with pg.open() as ledger:
        append(ledger, released("v1"))
        notices = Notices()
        with pg.views(notices) as views:
            assert views.last_good(A).version == "v1"  # type: ignore[union-attr]
            _drop_one(pg)
            append(ledger, released("v2"))
            assert views.last_good(A).version == "v2"  # type: ignore[union-attr]
            assert views.fleet(A)["head_seq"] == 4
    assert any("damaged" in n and "rebuilding them" in n for n in notices), notices


def test_views_of_another_ledger_in_the_same_schema_are_rebuilt(pg: Pg, tmp_path: Path) -> None:
    with pg.open() as ledger:
        append(ledger, released("v1"))
        with pg.views() as views:
            views.catch_up()
    pg.sql("DELETE FROM deployledger_events")  # a new ledger in the same schema
    other = tmp_path / "other"
    other.mkdir()
    with Ledger.init(pg.url, other / "ledger.key", actor="test") as second:
        append(second, released("v7"))
    notices = Notices()
    with Projections.open(pg.url, notice=notices) as views:
        assert views.last_good(A).version == "v7"  # type: ignore[union-attr]
    assert any("another ledger" in n for n in notices), notices


# -- the CLI on a PostgreSQL ledger --------------------------------------------------------


def test_cli_on_a_postgres_ledger_uses_the_views_in_its_schema(pg: Pg,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pg.open() as ledger:
        append(ledger, [*released("v1", "v2", "v3"), (A, start("w1", "v3")), (A, rollback("v2", "v3"))])
    db = ["--db", pg.url]
    result = run_cli(capsys, "last-good", *db, "--fleet", A, "--for-rollback")
    assert (result.code, result.out) == (0, "v1\n"), result.err
    assert "no projection tables deployledger_views_*" in result.err and "ledger:ledger@" not in result.err
    result = run_cli(capsys, "history", *db, "--fleet", A, "--json")
    assert [v["status"] for v in orjson.loads(result.out)["versions"]] == [
        "superseded", "rolling_out", "rolled_back"]
    result = run_cli(capsys, "fleet", *db, "--fleet", A, "--json")
    assert orjson.loads(result.out)["summary"]["versions"] == {"v3": 1}
    result = run_cli(capsys, "projections", "rebuild", *db)
    assert result.code == 0 and "rebuilt from 8 ledger records" in result.out
    assert "tables deployledger_views_* in postgresql://ledger:***@" in result.out
    result = run_cli(capsys, "projections", "catch-up", *db)
    assert result.code == 0 and "0 new ledger records" in result.out and result.err == ""
    result = run_cli(capsys, "fleet", *db, "--fleet", "nope")
    assert result.code == 2 and "fleet 'nope' has no records" in result.err
