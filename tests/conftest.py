"""Shared fixtures: real ledgers on both backends, and the real CLI.

Every test that takes `env` (or `db`) runs twice: on a SQLite file and on a
fresh schema of a real PostgreSQL server. The server is the one named by
LEDGER_TEST_PG_URL, or else a throwaway one this session starts on loopback
with `scripts/postgres-up` (PostgreSQL's server binaries must be installed: `scripts/setup` does).

Tests that need an optional extra (PostgreSQL, openrtc, the service) carry its
marker, so a base install runs the rest with `pytest --extras=none`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ledger import Ledger, Receipt, verify_actors
from ledger import commands as build
from ledger.cli import main as cli_main
from ledger.events import GATED_EVENTS
from ledger.gate import FleetService
from ledger.postgres_url import postgres_env
from ledger.sim.local_driver import default_rundir
from projections.runner import Projections
from tests.backends import Tamper, tamper_for

if TYPE_CHECKING:
    import psycopg

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

#: The optional extras some tests need, each a pytest marker, and a module that shows it is
#: installed. `--extras=none` runs the tests that need none of them (in a base install),
#: `--extras=only` the others (in the full install): scripts/check runs both, so each test
#: runs once and none is left out.
EXTRAS: dict[str, str] = {"postgres": "psycopg", "openrtc": "openrtc", "service": "starlette"}
#: Fixtures that reach a PostgreSQL server: a test using one is marked `postgres`.
POSTGRES_FIXTURES = frozenset({"pg_url", "pg_schema", "pg_env", "own_server"})
#: Test files all of whose tests need extras (most import them at module level).
FILES_NEEDING: dict[str, tuple[str, ...]] = {
    "test_postgres.py": ("postgres",),
    "test_projections_postgres.py": ("postgres",),
    "test_bench_postgres.py": ("postgres",),
    "test_openrtc.py": ("openrtc",),
    "test_reporter_keys.py": ("openrtc",),
    "test_service.py": ("service",),
    "test_service_actors.py": ("service",),
    "test_service_commit.py": ("service",),
    "test_service_load_bench.py": ("service",),
    "test_service_outage.py": ("service",),
    "test_service_parts.py": ("service",),
    "test_service_processes.py": ("service", "postgres"),
    "test_service_remote.py": ("service", "openrtc"),
    "test_service_report.py": ("service",),
    "test_service_stream.py": ("service",),
}
MISSING = sorted(extra for extra, module in EXTRAS.items() if importlib.util.find_spec(module) is None)
#: A file that cannot be imported without its extras is not collected where they are missing
#: (`--extras=only` refuses to run there, so CI never loses it this way).
collect_ignore = [name for name, extras in FILES_NEEDING.items() if set(MISSING).intersection(extras)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--extras", choices=("all", "none", "only"), default="all",
                     help="run every test (all), only those needing no extra (none), or only "
                          "those needing one (only; every extra must be installed)")


def pytest_configure(config: pytest.Config) -> None:
    for extra in EXTRAS:
        config.addinivalue_line("markers", f"{extra}: needs the {extra} extra")
    if config.getoption("extras") == "only" and MISSING:
        raise pytest.UsageError(f"--extras=only needs every extra installed; missing: {', '.join(MISSING)}")


def pytest_report_header(config: pytest.Config) -> str | None:
    if MISSING and config.getoption("extras") == "all":
        return f"extras not installed: {', '.join(MISSING)} (their tests are not run here)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the extras it needs, then keep the ones `--extras` asks for."""
    for item in items:
        for extra in FILES_NEEDING.get(item.path.name, ()):
            item.add_marker(extra)
        if POSTGRES_FIXTURES.intersection(item.fixturenames):
            item.add_marker("postgres")
    wanted = config.getoption("extras")
    if wanted == "all":
        return
    needs = {item: any(item.get_closest_marker(extra) for extra in EXTRAS) for item in items}
    keep = [item for item in items if needs[item] == (wanted == "only")]
    dropped = [item for item in items if needs[item] != (wanted == "only")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@dataclass
class Env:
    """A ledger's database (file or URL) and key path, in a temporary directory."""

    dir: Path
    db: str
    key: Path
    backend: str = "sqlite"

    @property
    def pub(self) -> Path:
        return self.key.with_name(self.key.name + ".pub")

    @property
    def rundir(self) -> Path:
        return default_rundir(self.db, str(self.key))

    @property
    def tamper(self) -> Tamper:
        return tamper_for(self.db)

    def open(self, *, writable: bool = True) -> Ledger:
        return Ledger.open(self.db, self.key, writable=writable)

    def args(self) -> list[str]:
        return ["--db", self.db, "--key", str(self.key)]


@pytest.fixture(autouse=True)
def user_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own user configuration: pins made by `init` never reach the real
    home directory, and no trust setting of the person running the tests leaks in."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("LEDGER_TRUST", raising=False)
    return config


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the whole session.

    One this session starts does not wait for the disk at each commit (no test here crashes
    it; tests that crash a server start their own, durable one), which saves much of the
    time every writing test spends on PostgreSQL."""
    given = os.environ.get("LEDGER_TEST_PG_URL")
    if given:
        yield given
        return
    directory = tmp_path_factory.mktemp("postgres")
    started = subprocess.run([str(ROOT / "scripts" / "postgres-up"), str(directory)],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PG_SYNCHRONOUS_COMMIT": "off"})
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip()
    subprocess.run([str(ROOT / "scripts" / "postgres-down"), str(directory)], capture_output=True,
                   timeout=120)


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg  # the postgres extra: only tests marked `postgres` get here

    env = postgres_env(url)
    return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                           port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"], autocommit=True)


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A database URL naming a fresh schema of its own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _connect(pg_url) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    yield f"{pg_url}{'&' if '?' in pg_url else '?'}schema={name}"
    with _connect(pg_url) as c:
        c.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A place for a new ledger: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return str(request.getfixturevalue("pg_schema"))


@pytest.fixture
def env(db: str, tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, db, tmp_path / "ledger.key",
            "postgres" if db.startswith("postgresql://") else "sqlite")
    Ledger.init(e.db, e.key, actor="test").close()
    yield e


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[Env]:
    """For what only a SQLite file has (its durability pragmas, its file)."""
    e = Env(tmp_path, str(tmp_path / "ledger.db"), tmp_path / "ledger.key")
    Ledger.init(e.db, e.key, actor="test").close()
    yield e


@pytest.fixture
def pg_env(pg_schema: str, tmp_path: Path) -> Iterator[Env]:
    """For what only a database server has (several processes on one ledger, its restarts)."""
    e = Env(tmp_path, pg_schema, tmp_path / "ledger.key", "postgres")
    Ledger.init(e.db, e.key, actor="test").close()
    yield e


def doctored_copy(bundle: Path, copy: Path, name: str, change: Callable[[bytes], bytes] | None) -> Path:
    """A copy of the exported `bundle` at `copy` with its file `name` changed (`change` of its
    bytes) or, with no change, deleted: what a reviewer might be handed instead."""
    shutil.copytree(bundle, copy)
    target = copy / name
    if change is None:
        target.unlink()
    else:
        target.write_bytes(change(target.read_bytes()))
    return copy


@pytest.fixture(params=["serial", "parallel"])
def checking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Verify's actor checks in-process, or (as for a long chain) in its pool of processes."""
    if request.param == "parallel":
        monkeypatch.setattr(verify_actors, "PARALLEL_SIGNATURES", 1)
        monkeypatch.setattr(verify_actors, "SIGNATURE_BATCH", 2)
    return str(request.param)


@pytest.fixture
def ledger(env: Env) -> Iterator[Ledger]:
    with env.open() as lg:
        yield lg


def submit(ledger: Ledger, fleet: str, *bodies: dict[str, Any]) -> list[Receipt]:
    """Write bodies as a caller does: facts appended, decisions through the gate.

    Every decision must be accepted (a refusal here is a broken test setup).
    """
    receipts: list[Receipt] = []
    with Projections.of(ledger, notice=lambda _m: None) as views:
        service = FleetService(ledger, views)
        for body in bodies:
            if body["event"] in GATED_EVENTS:
                outcome = service.submit_record(fleet, body)
                assert outcome.accepted, (body, outcome.decision)
                receipts.extend(outcome.receipts)
            else:
                receipts.append(ledger.append(fleet, body))
    return receipts


def write_unchecked(ledger: Ledger, fleet: str, bodies: Sequence[dict[str, Any]]) -> list[Receipt]:
    """Seal any records, decisions included, without asking the gate.

    For tests of what reads a chain (the rules, the views, verify): they must
    cope with any stored history, such as one written before the gate existed.
    """
    return ledger._append_chunk(fleet, [Ledger.validate(b, gated=True) for b in bodies])


def seed(ledger: Ledger, fleet: str = "prod", n_workers: int = 2) -> None:
    """A small realistic history: v1 deployed and completed with workers."""
    bodies = [build.deploy("v1", "ci", "first release")]
    for i in range(n_workers):
        bodies.append(build.worker_start(f"w{i}", "v1", "platform"))
        bodies.append(build.worker_sessions(f"w{i}", "v1", i + 1, f"w{i}"))
    submit(ledger, fleet, *bodies, build.complete("v1", "ci"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """Run the CLI in-process (fast); returns exit code and captured output."""
    capsys.readouterr()
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def run_process(*argv: str, stdin: bytes | None = None, cwd: Path | None = None,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real `ledger` command in a child process."""
    environment = {**os.environ, **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "ledger.cli", *argv], input=stdin,
                          capture_output=True, cwd=cwd, env=environment, timeout=120)
