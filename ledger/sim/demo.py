"""The main demo (`scripts/demo`): a bad deploy rolled back on evidence, by itself, on a real local fleet.

v1 is deployed to two real worker processes and completes; a rollback rule is
recorded; `ledger watch` follows the fleet; v2 replaces v1 and its calls start
failing; the watcher's analysis (v2's error rate against v1's, from the
workers' own outcome reports) fails the rule and it records the rollback with
the evidence, then drives the fleet back to v1 (start v1 workers, drain v2
workers to zero calls, confirm clean), and the ledger verifies. It runs the
real `ledger` commands in a fresh directory and prints each one before its
output, so what it shows is exactly what a user would type.

The ledger is enforced from `init`: alice (admin) registers two actors with
OpenSSH keys, dave the deployer and olga the on-call. Every decision is
signed by the actor who asks for it: dave's deploys, olga's rule, and the
rollback, which olga's watcher signs with her key; verify re-checks them all.
The local driver's workers sign the facts they report (starts, sessions,
exits) with the key of `fleet`, a reporter bound to the worker ids `v*`.
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

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.api import Ledger
from ledger.sim.local_driver import LocalProcessDriver

#: The simulated fleet: calls of 1-3 s arriving 3/s per worker; v2 fails 60% of its calls.
SIMULATION = {"call_seconds": [1, 3], "arrival_rate": 3, "fail_rate": {"v2": 0.6}}
DRIVER = ["--driver", "local", "--driver-config", "sim.json", "--reporter", "fleet",
          "--reporter-key", "fleet.ssh"]
#: The rollback rule the watcher applies: 30 s windows, 30 ended sessions a side at least,
#: 99% one-sided confidence, at least 10 points worse, two failing evaluations in a row.
RULE = ["--window", "30", "--min-sessions", "30", "--confidence", "99", "--min-increase", "10",
        "--consecutive", "2"]


def run(workdir: Path, *argv: str, expect: tuple[int, ...] = (0,)) -> str:
    print(f"\n$ ledger {shlex.join(argv)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "ledger.cli", *argv], cwd=workdir, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(done.stdout)
    sys.stdout.flush()
    if done.returncode not in expect:
        raise SystemExit(f"demo: `ledger {shlex.join(argv)}` exited {done.returncode}")
    return done.stdout


#: Who acts, and with which role (each gets an OpenSSH key pair in the work directory).
ACTORS = {"dave": "deployer", "olga": "oncall"}
#: The reporter the local driver's workers sign their facts with, bound to every worker id.
REPORTER = ["fleet", "--role", "reporter", "--worker", "v*"]


def write_ssh_key(path: Path, comment: str) -> None:
    """An Ed25519 key pair in the files `ssh-keygen -t ed25519` writes (private key, `.pub` line)."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.with_name(path.name + ".pub").write_bytes(line + f" {comment}\n".encode())


def as_actor(name: str) -> list[str]:
    return ["--actor", name, "--actor-key", f"{name}.ssh"]


def session_errors(workdir: Path, version: str) -> tuple[int, int]:
    """(errored, ended) sessions of the version, from its workers' latest cumulative reports."""
    latest: dict[str, tuple[int, int]] = {}
    with Ledger.open(workdir / "ledger.db", writable=False) as ledger:
        for record in ledger.records("prod"):
            if record["event"] in ("worker.sessions", "worker.exited") and record.get("version") == version:
                error = record.get("sessions_error", 0)
                ended = error + record.get("sessions_ok", 0) + record.get("sessions_dropped", 0)
                latest[record["worker_id"]] = (error, ended)
    return sum(f for f, _ in latest.values()), sum(t for _, t in latest.values())


def signed_facts(workdir: Path) -> tuple[int, int]:
    """(signed and verified, all) worker facts of the fleet."""
    with Ledger.open(workdir / "ledger.db", writable=False) as ledger:
        facts = [r for r in ledger.records("prod") if str(r["event"]).startswith("worker.")]
    return sum(1 for r in facts if r.get("actor_verified") is True), len(facts)


def watch_errors(workdir: Path, version: str, seconds: float) -> None:
    print(f"\n# watching {version}'s sessions for {seconds:.0f}s (from the workers' own reports)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(2)
        failed, total = session_errors(workdir, version)
        share = failed * 100 // total if total else 0
        print(f"  {version}: {failed} of {total} ended sessions errored ({share}%)", flush=True)


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
        for name in ("alice", *ACTORS, "fleet"):
            write_ssh_key(workdir / f"{name}.ssh", f"{name}@example.com")
        print("# OpenSSH Ed25519 keys (as `ssh-keygen -t ed25519` writes them): alice.ssh, dave.ssh, "
              "olga.ssh, fleet.ssh and their .pub files")
        run(workdir, "init", "--actor", "alice", "--admin", "alice", "--admin-key", "alice.ssh.pub")
        for name, role in ACTORS.items():
            run(workdir, "actors", "add", name, "--public-key", f"{name}.ssh.pub", "--role", role,
                *as_actor("alice"))
        run(workdir, "actors", "add", *REPORTER, "--public-key", "fleet.ssh.pub", *as_actor("alice"))
        run(workdir, "deploy", "v1", *as_actor("dave"), "--reason", "release 1", "--drive",
            "--workers", "2", *DRIVER, *fleet)
        run(workdir, "rule", "set", *RULE, *as_actor("olga"), "--reason", "roll back on evidence",
            *fleet)
        watch_argv = ["watch", "--until-verdict", *as_actor("olga"), *DRIVER, *fleet]
        print(f"\n$ ledger {shlex.join(watch_argv)} &    # its output is shown when it exits", flush=True)
        watcher = subprocess.Popen([sys.executable, "-m", "ledger.cli", *watch_argv], cwd=workdir,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watch_errors(workdir, "v1", 6)  # v1's baseline
        # The watcher may roll back v2 while this deploy is still in flight: the drive then
        # ends with the move replaced (exit 1), which is the point.
        run(workdir, "deploy", "v2", *as_actor("dave"), "--reason", "release 2", "--drive",
            *DRIVER, *fleet, expect=(0, 1))
        try:
            output, _ = watcher.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            watcher.kill()
            output, _ = watcher.communicate()
            raise SystemExit(f"demo: the watcher did not act within 90 s:\n{output}") from None
        print(f"\n# ledger watch (exited {watcher.returncode}):\n{output}", end="", flush=True)
        run(workdir, "fleet", *fleet)
        run(workdir, "history", *fleet)
        run(workdir, "last-good", *fleet)
        rolled = run(workdir, "feed", "--event", "deployment.rolled_back", *fleet)
        record = json.loads(rolled.splitlines()[0])
        print(f"\n# the rollback was signed by {record['actor']} (key {record['actor_kid']}, "
              f"verified by the gate: {record['actor_verified']}); `ledger verify` checks it again below")
        signed, facts = signed_facts(workdir)
        print(f"# {signed} of {facts} worker facts were signed by the reporter fleet (bound to v*) and "
              "verified by the gate")
        run(workdir, "actors", "list")
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
