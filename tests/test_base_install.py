"""A SQLite ledger works without the PostgreSQL packages installed.

`pip install deploy-ledger` without the `postgres` extra has no psycopg, so
nothing on the SQLite path may import psycopg or `eventsourcing.postgres`.
These tests run the real CLI in child processes whose `sitecustomize`
makes those imports fail as they would in such an install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKED = ("psycopg", "psycopg_pool", "psycopg_binary", "psycopg_c", "eventsourcing.postgres")

SITECUSTOMIZE = f"""\
import sys

BLOCKED = {BLOCKED!r}


class BlockPostgres:
    \"\"\"Refuses the PostgreSQL packages, as an install without the postgres extra would.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"No module named {{name!r}} (blocked: no postgres extra)")
        return None


sys.meta_path.insert(0, BlockPostgres())
"""


@pytest.fixture
def no_postgres(tmp_path: Path) -> dict[str, str]:
    """The environment of a child Python in which the PostgreSQL packages cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def python(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("module", ["psycopg", "eventsourcing.postgres", "ledger.store_postgres"])
def test_the_blocker_refuses_the_postgres_modules(no_postgres: dict[str, str], tmp_path: Path,
                                                  module: str) -> None:
    done = python(no_postgres, "-c", f"import {module}", cwd=tmp_path)
    assert done.returncode != 0
    assert "blocked: no postgres extra" in done.stderr


def test_a_sqlite_ledger_needs_no_postgres_packages(no_postgres: dict[str, str], tmp_path: Path) -> None:
    db, key = str(tmp_path / "ledger.db"), str(tmp_path / "ledger.key")
    steps = [
        ["init", "--actor", "a"],
        ["deploy", "v1", "--actor", "a"],
        ["complete", "v1", "--actor", "a"],
        ["history"],
        ["last-good"],
        ["verify"],
        ["feed"],
    ]
    for step in steps:
        done = python(no_postgres, "-m", "ledger.cli", *step, "--db", db, "--key", key, cwd=tmp_path)
        assert done.returncode == 0, f"ledger {' '.join(step)}: {done.stderr}"
    loaded = python(no_postgres, "-c", "import sys, ledger.cli, projections; print(sorted("
                    "m for m in sys.modules if ('postgres' in m or 'psycopg' in m) "
                    "and m != 'ledger.postgres_url'))", cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["verify"], ["init"], ["history", "--fleet", "prod"]])
def test_a_postgresql_ledger_without_the_extra_is_refused_in_one_line(
        no_postgres: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    url = "postgresql://ledger:s3cret-pw@127.0.0.1:1/ledger_test"
    done = python(no_postgres, "-m", "ledger.cli", *command, "--db", url, "--key", str(tmp_path / "k"),
                  cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("ledger: a PostgreSQL ledger (postgresql://ledger:***@127.0.0.1:1/ledger_test) "
                           "needs the postgres extra: pip install 'deploy-ledger[postgres]'\n")
    assert not list(tmp_path.glob("k*"))  # nothing written
