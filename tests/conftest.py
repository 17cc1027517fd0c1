"""Shared fixtures: real ledgers in real SQLite files, and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import Ledger
from ledger import commands as build
from ledger.cli import main as cli_main


@dataclass
class Env:
    """A ledger's database and key paths in a temporary directory."""

    dir: Path
    db: Path
    key: Path

    @property
    def pub(self) -> Path:
        return self.key.with_name(self.key.name + ".pub")

    def open(self, *, writable: bool = True) -> Ledger:
        return Ledger.open(self.db, self.key, writable=writable)

    def args(self) -> list[str]:
        return ["--db", str(self.db), "--key", str(self.key)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, tmp_path / "ledger.db", tmp_path / "ledger.key")
    Ledger.init(e.db, e.key, actor="test").close()
    yield e


@pytest.fixture
def ledger(env: Env) -> Iterator[Ledger]:
    with env.open() as lg:
        yield lg


def seed(ledger: Ledger, fleet: str = "prod", n_workers: int = 2) -> None:
    """A small realistic history: v1 deployed and completed with workers."""
    ledger.append(fleet, build.deploy("v1", "ci", "first release"))
    for i in range(n_workers):
        ledger.append(fleet, build.worker_start(f"w{i}", "v1", "platform"))
        ledger.append(fleet, build.worker_sessions(f"w{i}", "v1", i + 1, f"w{i}"))
    ledger.append(fleet, build.complete("v1", "ci"))


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
