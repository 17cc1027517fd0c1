"""The fleet driver protocol, and a driver that runs real local worker processes.

A driver does three things and nothing else: start a worker of a version, ask
a worker to drain, and say whether a worker is still alive. What the workers
do (their sessions, their exits) they report into the ledger themselves; the
rollback executor reads that, so the ledger stays the system of record.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ledger.errors import RecordError
from ledger.names import is_worker_id, shown

WorkerFile = Literal["lock", "log"]


def worker_file(rundir: Path, worker_id: str, kind: WorkerFile) -> Path:
    """The lock or log file of a worker: `<rundir>/<worker id>.<kind>`, and nothing else.

    Worker ids come from records (a driven move's plan names the workers to
    start), so they are never trusted as path parts: only an id matching the
    worker id pattern (letters, digits, '.', '_', '-', not starting with '.')
    maps to a file name, which then lies directly in `rundir`.
    """
    if not is_worker_id(worker_id) or kind not in ("lock", "log"):
        raise RecordError(f"worker id {shown(worker_id)} cannot name a file: use letters, digits, "
                          "'.', '_' or '-', starting with a letter or digit, at most 64 characters")
    path = rundir / f"{worker_id}.{kind}"
    if path.parent != rundir or path.name.startswith("."):  # cannot happen for a valid id: checked anyway
        raise RecordError(f"worker id {shown(worker_id)} cannot name a file in {rundir}")
    return path


def default_rundir(db: str, key: str) -> Path:
    """Where local workers keep their lock files and logs: beside the ledger file,
    or beside the key when the ledger is a database server."""
    if db.startswith(("postgresql://", "postgres://")):
        return Path(f"{key}.run")
    return Path(f"{db}.run")


class FleetDriver(Protocol):
    """What the executor needs from a fleet of workers."""

    def start_worker(self, worker_id: str, version: str) -> None:
        """Start one worker of `version`; a worker id already running is left alone."""

    def drain(self, worker_id: str) -> None:
        """Ask a worker to stop taking calls and exit once its calls end. Never kills."""

    def is_alive(self, worker_id: str) -> bool:
        """Whether the worker's process is still running."""


@dataclass
class WorkerSettings:
    """How local workers behave: call arrival, length, failure rate per version."""

    arrival_rate: float = 2.0
    capacity: int = 8
    call_min: float = 1.0
    call_max: float = 4.0
    fail_rate: dict[str, float] = field(default_factory=dict)
    max_seconds: float = 0.0


class LocalProcessDriver:
    """Runs `python -m ledger.worker` processes on this machine.

    Workers run in their own session, so they outlive a driver that is killed:
    a restarted driver finds them again through their lock files in `rundir`
    (a held lock means alive; the file holds the pid to signal).
    """

    def __init__(self, db: str, key: str, fleet: str, rundir: Path,
                 settings: WorkerSettings | None = None):
        self.db, self.key, self.fleet = db, key, fleet
        self.rundir = rundir
        self.settings = settings or WorkerSettings()
        self._children: list[subprocess.Popen[bytes]] = []
        rundir.mkdir(parents=True, exist_ok=True)

    def _lock_path(self, worker_id: str) -> Path:
        return worker_file(self.rundir, worker_id, "lock")

    def start_worker(self, worker_id: str, version: str) -> None:
        log_path = worker_file(self.rundir, worker_id, "log")
        if self.is_alive(worker_id):
            return
        s = self.settings
        argv = [
            sys.executable, "-m", "ledger.worker", "--db", self.db, "--key", self.key,
            "--fleet", self.fleet, "--worker-id", worker_id, "--version", version,
            "--rundir", str(self.rundir), "--arrival-rate", str(s.arrival_rate),
            "--capacity", str(s.capacity), "--call-min", str(s.call_min),
            "--call-max", str(s.call_max), "--fail-rate", str(s.fail_rate.get(version, 0.0)),
            "--max-seconds", str(s.max_seconds),
        ]
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        with log:
            self._children.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True))

    def pid(self, worker_id: str) -> int | None:
        try:
            text = self._lock_path(worker_id).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def is_alive(self, worker_id: str) -> bool:
        self._children = [c for c in self._children if c.poll() is None]  # reap exited ones
        path = self._lock_path(worker_id)
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def drain(self, worker_id: str) -> None:
        pid = self.pid(worker_id)
        if pid is not None and self.is_alive(worker_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def stop_all(self) -> None:
        """Drain every worker this driver knows of (for tests and demo cleanup)."""
        for path in self.rundir.glob("*.lock"):
            if is_worker_id(path.stem):
                self.drain(path.stem)
