"""A fleet driver that runs simulated workers as real local processes.

The workers (`python -m ledger.sim.worker`) are simulations: they hold calls
of random length and report into the ledger like real workers would, so the
demo and the tests can drive real processes and real signals. Production
fleets use another driver (`--driver openrtc`, or `--driver none` when the
platform moves the workers itself).

Workers run in their own session, so they outlive a driver that is killed: a
restarted driver finds them again through their lock files in `rundir` (a
held lock means alive; the file holds the pid to signal).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ledger.errors import InputError, RecordError
from ledger.names import is_worker_id, shown
from ledger.reporter import ReporterKey

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


@dataclass
class WorkerSettings:
    """How simulated workers behave: call arrival, length, failure rate per version."""

    arrival_rate: float = 2.0
    capacity: int = 8
    call_min: float = 1.0
    call_max: float = 4.0
    fail_rate: dict[str, float] = field(default_factory=dict)
    max_seconds: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WorkerSettings:
        """From a driver config file: `arrival_rate` (calls/s per worker), `call_seconds`
        ([min, max]), `fail_rate` ({version: share 0..1}), `capacity`, `max_seconds`."""
        known = {"arrival_rate", "call_seconds", "fail_rate", "capacity", "max_seconds", "rundir"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"the local driver has no setting {unknown[0]!r} (it knows {sorted(known)})")
        settings = cls()
        rate = options.get("arrival_rate", settings.arrival_rate)
        if not _number(rate) or rate < 0:
            raise InputError(f"arrival_rate must be a number of calls per second >= 0, not {rate!r}")
        seconds = options.get("call_seconds", [settings.call_min, settings.call_max])
        if (not isinstance(seconds, list) or len(seconds) != 2 or not all(map(_number, seconds))
                or not 0 < seconds[0] <= seconds[1]):
            raise InputError(f"call_seconds must be [min, max] with 0 < min <= max, not {seconds!r}")
        fail = options.get("fail_rate", {})
        if not isinstance(fail, dict) or not all(
                isinstance(k, str) and _number(v) and 0 <= v <= 1 for k, v in fail.items()):
            raise InputError(f"fail_rate must map versions to shares in 0..1, not {fail!r}")
        capacity = options.get("capacity", settings.capacity)
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise InputError(f"capacity must be a whole number >= 1, not {capacity!r}")
        limit = options.get("max_seconds", settings.max_seconds)
        if not _number(limit) or limit < 0:
            raise InputError(f"max_seconds must be a number >= 0, not {limit!r}")
        return cls(float(rate), capacity, float(seconds[0]), float(seconds[1]),
                   {k: float(v) for k, v in fail.items()}, float(limit))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class LocalProcessDriver:
    """Runs `python -m ledger.sim.worker` processes on this machine.

    With a `reporter`, each worker signs the facts it reports about itself with
    the reporter's key (handed to it as a path), so they pass an enforced ledger
    when the reporter is bound to the workers' ids.
    """

    def __init__(self, db: str, key: str, fleet: str, rundir: Path,
                 settings: WorkerSettings | None = None, *, reporter: ReporterKey | None = None):
        self.db, self.key, self.fleet = db, key, fleet
        self.reporter = reporter
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
            sys.executable, "-m", "ledger.sim.worker", "--db", self.db, "--key", self.key,
            "--fleet", self.fleet, "--worker-id", worker_id, "--version", version,
            "--rundir", str(self.rundir), "--arrival-rate", str(s.arrival_rate),
            "--capacity", str(s.capacity), "--call-min", str(s.call_min),
            "--call-max", str(s.call_max), "--fail-rate", str(s.fail_rate.get(version, 0.0)),
            "--max-seconds", str(s.max_seconds),
            *(self.reporter.argv() if self.reporter is not None else []),
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
