"""The main demo (`scripts/demo`): a bad deploy rolled back on a real local fleet.

v1 is deployed to two real worker processes and completes; v2 replaces it and
its calls start failing; `ledger rollback` goes back to v1 without being told
the version, drives the fleet (start v1 workers, drain v2 workers to zero
calls, confirm clean), and the ledger verifies. It runs the real `ledger`
commands in a fresh directory and prints each one before its output, so what
it shows is exactly what a user would type.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledger.api import Ledger
from ledger.sim.local_driver import LocalProcessDriver

#: The simulated fleet: calls of 1-3 s arriving 3/s per worker; v2 fails 60% of its calls.
SIMULATION = {"call_seconds": [1, 3], "arrival_rate": 3, "fail_rate": {"v2": 0.6}}
DRIVER = ["--driver", "local", "--driver-config", "sim.json"]


def run(workdir: Path, *argv: str, expect: int = 0) -> str:
    print(f"\n$ ledger {shlex.join(argv)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "ledger.cli", *argv], cwd=workdir, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(done.stdout)
    sys.stdout.flush()
    if done.returncode != expect:
        raise SystemExit(f"demo: `ledger {shlex.join(argv)}` exited {done.returncode}")
    return done.stdout


def session_errors(workdir: Path, version: str) -> tuple[int, int]:
    """(failed, total) sessions the version's workers last reported."""
    latest: dict[str, tuple[int, int]] = {}
    with Ledger.open(workdir / "ledger.db", writable=False) as ledger:
        for record in ledger.records("prod"):
            if record["event"] in ("worker.sessions", "worker.exited") and record.get("version") == version:
                latest[record["worker_id"]] = (record.get("failed_sessions", 0),
                                               record.get("total_sessions", 0))
    return sum(f for f, _ in latest.values()), sum(t for _, t in latest.values())


def watch_errors(workdir: Path, version: str, seconds: float) -> None:
    print(f"\n# watching {version}'s sessions for {seconds:.0f}s (from the workers' own reports)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(2)
        failed, total = session_errors(workdir, version)
        share = failed * 100 // total if total else 0
        print(f"  {version}: {failed} of {total} sessions failed ({share}%)", flush=True)


def stop_fleet(workdir: Path) -> None:
    driver = LocalProcessDriver("", "", "prod", workdir / "ledger.db.run")
    driver.stop_all()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            driver.is_alive(p.stem) for p in driver.rundir.glob("*.lock")):
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=None, help="work in this directory (default: a new temp dir)")
    parser.add_argument("--keep-running", action="store_true", help="leave the v1 workers running")
    args = parser.parse_args(argv)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="ledger-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = ["--fleet", "prod"]
    started = time.monotonic()
    try:
        (workdir / "sim.json").write_text(json.dumps(SIMULATION) + "\n")
        print(f"# the local driver's simulated workers (sim.json): {json.dumps(SIMULATION)}")
        run(workdir, "init", "--actor", "demo")
        run(workdir, "deploy", "v1", "--actor", "ci", "--reason", "release 1", "--drive",
            "--workers", "2", *DRIVER, *fleet)
        run(workdir, "deploy", "v2", "--actor", "ci", "--reason", "release 2", "--drive",
            *DRIVER, *fleet)
        watch_errors(workdir, "v2", 6)
        run(workdir, "rollback", "--actor", "on-call", "--reason", "elevated session errors",
            "--dry-run", *fleet)
        run(workdir, "rollback", "--actor", "on-call", "--reason", "elevated session errors",
            *DRIVER, *fleet)
        run(workdir, "fleet", *fleet)
        run(workdir, "history", *fleet)
        run(workdir, "last-good", *fleet)
        run(workdir, "feed", "--event", "deployment.rolled_back", *fleet)
        run(workdir, "verify")
        checkpoint = run(workdir, "checkpoint", *fleet)
        (workdir / "prod.checkpoint").write_text(checkpoint)
        run(workdir, "verify", "--checkpoint", "prod.checkpoint")
    finally:
        if not args.keep_running:
            print("\n# draining the demo fleet (the workers record their own exits)", flush=True)
            stop_fleet(workdir)
    print(f"\ndemo: done in {time.monotonic() - started:.0f}s; the ledger, its key and the "
          f"checkpoint are in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
