"""The `rollback` and `drive` subcommands, and `deploy --drive`.

They join the ledger (where decisions are recorded), the projections (the
fleet's state at the head, to validate against) and a fleet driver (the real
worker processes). Exit codes as everywhere: 2 malformed, nothing written;
1 refused by a check (and recorded) or the fleet move failed; 0 done.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.cli_decide import (
    add_decision_options,
    add_reporter_options,
    deploy_command,
    open_for,
    report,
    reporter_of,
)
from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.decide import Accepted, Meta, Refused, Rollback, check_well_formed
from ledger.drive import DRIVER_ACTOR, Ending, Executor
from ledger.drivers import DriverKind, DriverSettings, open_driver
from ledger.errors import InputError
from ledger.rollback import RollbackRequest
from ledger.tracking import Tracker

Common = Callable[..., None]


def _say(line: str) -> None:
    print(f"  .. {line}", flush=True)


class FleetSession:
    """The application (ledger, views, gate), the configured driver and the executor, opened together."""

    def __init__(self, args: argparse.Namespace):
        self.settings = DriverSettings.load(args.driver, args.driver_config)
        self.app = open_for(args)
        try:
            self.ledger, self.views, self.service = self.app.ledger, self.app.views, self.app.service
            assert self.ledger.signer is not None and self.ledger.signer.path is not None
            rundir = args.rundir or self.settings.options.get("rundir")
            reporter = reporter_of(args)
            self.driver = open_driver(self.settings, db=self.ledger.db,
                                      key=str(self.ledger.signer.path), fleet=args.fleet,
                                      rundir=Path(rundir) if rundir else None, reporter=reporter)
            self.tracker = Tracker(self.ledger.db, "fleet-driver")
        except BaseException:
            self.app.close()
            raise
        # An actor who signs drives on their own name: the settlements they cause are theirs.
        signer = self.service.signer
        self.executor = Executor(self.service, self.driver or WatchOnly(), self.tracker, args.fleet,
                                 actor=signer.name if signer is not None else DRIVER_ACTOR,
                                 step_delay_s=args.step_delay, say=_say,
                                 reporter=reporter.load() if reporter is not None else None)

    @property
    def external(self) -> bool:
        """No driver: the platform moves the workers; the ledger records and watches."""
        return self.driver is None

    def close(self) -> None:
        try:
            self.tracker.close()
            close = getattr(self.driver, "close", None)
            if close is not None:
                close()
        finally:
            self.app.close()

    def __enter__(self) -> FleetSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drive(self) -> int:
        outcome = self.executor.run_pending()
        if outcome is None:
            print("nothing to drive: no pending deploy or rollback")
            return 0
        return 0 if outcome is Ending.COMPLETED else 1


class WatchOnly:
    """The executor's driver under `--driver none`: it may watch, never start or drain."""

    def start_worker(self, worker_id: str, version: str) -> None:
        raise InputError("no fleet driver is configured (--driver none): the platform starts workers")

    def drain(self, worker_id: str) -> None:
        raise InputError("no fleet driver is configured (--driver none): the platform drains workers")

    def is_alive(self, worker_id: str) -> bool:
        return True


def rollback_request(args: argparse.Namespace) -> RollbackRequest:
    return RollbackRequest(
        fleet=args.fleet, actor=args.actor, reason=args.reason, to_version=args.to,
        from_version=args.from_version, idempotency_key=args.idempotency_key,
        force_bad_target=args.force_bad_target, workers=args.workers,
        drain_timeout_s=args.drain_timeout,
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    request = rollback_request(args)
    with FleetSession(args) as session:
        # With no driver the platform moves the workers: the ledger records and watches.
        command = Rollback(request, Meta(args.actor, args.reason, args.idempotency_key),
                          external=session.external)
        check_well_formed(command)
        if args.dry_run:
            decision = session.service.preview(args.fleet, command)
            if isinstance(decision, Refused):
                print(f"ledger: rollback refused ({decision.check.value}): {decision.detail}",
                      file=sys.stderr)
                print("dry run: nothing written")
                return 1
            assert decision.plan is not None
            for line in decision.plan.describe():
                print(line)
            print("dry run: nothing written")
            return 0
        outcome = session.service.submit(args.fleet, command)
        code = report(outcome, "rollback", request.idempotency_key)
        if not code and isinstance(outcome.decision, Accepted) and outcome.decision.plan is not None:
            for line in outcome.decision.plan.describe():
                print(line)
        if code or args.no_drive:
            return code
        if outcome.replayed:  # the first attempt may have died mid-move: carry it on if so
            pending = session.executor.pending()
            if pending is None or pending.seq != outcome.receipt.seq:
                return code
        return session.drive()


def cmd_drive(args: argparse.Namespace) -> int:
    with FleetSession(args) as session:
        return session.drive()


def cmd_deploy_drive(args: argparse.Namespace) -> int:
    """`ledger deploy VERSION --drive`: the deploy passes the gate with its plan, then is carried out."""
    command = deploy_command(args)
    check_well_formed(command)
    if args.driver == DriverKind.NONE.value:
        raise InputError("--drive needs a fleet driver (--driver local or openrtc); with --driver none "
                         "record the deploy without --drive and let the platform move the workers")
    with FleetSession(args) as session:
        outcome = session.service.submit(args.fleet, command)
        code = report(outcome, "deploy", command.meta.idempotency_key)
        if code:
            return code
        return session.drive()


def _local_driver(args: argparse.Namespace) -> Any:
    """The local driver over the run directory a `--drive` used (its lock files say who runs)."""
    from ledger.sim.local_driver import LocalProcessDriver, default_rundir

    rundir = Path(args.rundir) if args.rundir else default_rundir(args.db, args.key)
    if not rundir.is_dir():
        raise InputError(f"no local workers: {rundir} does not exist (workers started by `--drive` "
                         "with the local driver keep their lock files there)")
    return LocalProcessDriver(args.db, args.key, args.fleet, rundir)


def cmd_workers(args: argparse.Namespace) -> int:
    """List the local workers a `--drive` started (a restarted driver adopts them by their lock
    files), or stop them: each drains (SIGTERM), lets its calls end and records its own exit."""
    driver = _local_driver(args)
    ids = sorted(p.stem for p in driver.rundir.glob("*.lock"))
    if args.action == "list":
        if wants_json(args):
            print_json([{"worker_id": w, "pid": driver.pid(w), "alive": driver.is_alive(w)} for w in ids])
            return 0
        for worker_id in ids:
            state = "running" if driver.is_alive(worker_id) else "gone"
            print(f"{worker_id}  pid {driver.pid(worker_id) or '-'}  {state}")
        if not ids:
            print(f"no local workers in {driver.rundir}")
        return 0
    chosen = args.workers or [w for w in ids if driver.is_alive(w)]
    unknown = [w for w in chosen if w not in ids]
    if unknown:
        raise InputError(f"no local worker {unknown[0]!r} in {driver.rundir}")
    for worker_id in chosen:
        driver.drain(worker_id)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(driver.is_alive(w) for w in chosen):
        time.sleep(0.2)
    still = [w for w in chosen if driver.is_alive(w)]
    for worker_id in chosen:
        print(f"{worker_id}: {'still draining' if worker_id in still else 'stopped'}")
    if still:
        print(f"ledger: {len(still)} worker(s) still hold calls after {args.timeout:.0f}s; they exit when "
              "their calls end", file=sys.stderr)
        return 3
    return 0


def add_driver_options(p: argparse.ArgumentParser) -> None:
    """Options of the local fleet driver and of the workers it starts."""
    p.add_argument("--workers", type=int, default=None,
                   help="workers of the new version to start (default: as many as run now)")
    p.add_argument("--drain-timeout", type=int, default=120, metavar="SECONDS",
                   help="record a drain as stuck after this long (the worker is left running)")
    p.add_argument("--driver", default=argparse.SUPPRESS, choices=[k.value for k in DriverKind],
                   help="what carries moves out: local (simulated worker processes), openrtc (pools "
                        "from your factory), none (the platform; the ledger watches) "
                        "(env LEDGER_DRIVER, default local)")
    p.add_argument("--driver-config", default=argparse.SUPPRESS, metavar="FILE",
                   help="the driver's settings as JSON (env LEDGER_DRIVER_CONFIG)")
    p.add_argument("--rundir", default=None, help="local worker lock files and logs "
                   "(default <db>.run)")
    p.add_argument("--step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    add_reporter_options(p)


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    p = sub.add_parser("rollback", help="roll the fleet back to the last-good version (validated)")
    common(p)
    p.add_argument("--to", default=None, metavar="VERSION",
                   help="the version to return to (default: the last-good version)")
    p.add_argument("--from-version", default=None, help="refuse unless the fleet runs this version")
    add_decision_options(p, reason_required=True)
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--force-bad-target", action="store_true",
                   help="allow a target that is not good (recorded in the event)")
    p.add_argument("--no-drive", action="store_true", help="record the rollback; do not drive it")
    add_driver_options(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("workers", help="list or stop the local workers a --drive started")
    common(p)
    p.add_argument("action", choices=["list", "stop"])
    p.add_argument("workers", nargs="*", metavar="WORKER",
                   help="stop only these (default: every one running)")
    p.add_argument("--rundir", default=None, help="their lock files and logs (default <db>.run)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long `stop` waits for the workers to finish their calls and exit")
    add_output_option(p)
    p.set_defaults(handler=cmd_workers)

    p = sub.add_parser("drive", help="carry out (or resume) the pending deploy or rollback")
    common(p)
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_driver_options(p)
    p.set_defaults(handler=cmd_drive)
