"""The demo behind `scripts/demo`: a deploy recorded, verified and checkpointed.

It runs the real `ledger` commands in a fresh directory, printing each command
before its output, so what it shows is exactly what a user would type.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def run(workdir: Path, *argv: str, expect: int = 0) -> str:
    print(f"\n$ ledger {shlex.join(argv)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "ledger.cli", *argv], cwd=workdir,
                          capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    if done.returncode != expect:
        raise SystemExit(f"demo: `ledger {shlex.join(argv)}` exited {done.returncode}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=None, help="work in this directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="ledger-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = ["--fleet", "prod"]
    run(workdir, "init", "--actor", "demo")
    run(workdir, "deploy", "v1", "--actor", "ci", "--reason", "first release", *fleet)
    for worker in ("w1", "w2"):
        run(workdir, "worker", "start", worker, "--version", "v1", "--actor", "platform", *fleet)
    run(workdir, "complete", "v1", "--actor", "ci", *fleet)
    run(workdir, "feed", "--limit", "2", *fleet)
    run(workdir, "verify")
    checkpoint = run(workdir, "checkpoint", *fleet)
    (workdir / "prod.checkpoint").write_text(checkpoint)
    run(workdir, "verify", "--checkpoint", "prod.checkpoint")
    print(f"\ndemo: done; the ledger, its key and the checkpoint are in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
