"""The `rollback` and `drive` subcommands, and `deploy --drive`.

They join the ledger (where decisions are recorded), the projections (the
fleet's state at the head, to validate against) and a fleet driver (the real
worker processes). Exit codes as everywhere: 2 malformed, nothing written;
1 refused by a check (and recorded) or the fleet move failed; 0 done.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.app import open_app
from ledger.cli_decide import add_decision_options, deploy_command, notice, report
from ledger.decide import Accepted, Meta, Refused, Rollback, check_well_formed
from ledger.drive import Ending, Executor
from ledger.errors import InputError
from ledger.fleet import LocalProcessDriver, WorkerSettings, default_rundir
from ledger.rollback import RollbackRequest
from ledger.tracking import Tracker

Common = Callable[..., None]


def _say(line: str) -> None:
    print(f"  .. {line}", flush=True)


def _fail_rates(values: list[str]) -> dict[str, float]:
    rates = {}
    for value in values:
        version, sep, rate = value.partition("=")
        try:
            parsed = float(rate)
        except ValueError:
            parsed = -1.0
        if not sep or not version or not 0.0 <= parsed <= 1.0:
            raise InputError(f"--fail-rate takes VERSION=RATE with RATE in 0..1, not {value!r}")
        rates[version] = parsed
    return rates


def _call_seconds(value: str) -> tuple[float, float]:
    low, _, high = value.partition(":")
    try:
        pair = float(low), float(high or low)
    except ValueError:
        raise InputError(f"--call-seconds takes MIN:MAX seconds, not {value!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise InputError(f"--call-seconds takes 0 < MIN <= MAX, not {value!r}")
    return pair


class FleetSession:
    """The application (ledger, views, gate), a local driver and the executor, opened together."""

    def __init__(self, args: argparse.Namespace):
        self.app = open_app(args.db, args.key, projections=getattr(args, "projections", None),
                            notice=notice)
        try:
            self.ledger, self.views, self.service = self.app.ledger, self.app.views, self.app.service
            call_min, call_max = _call_seconds(args.call_seconds)
            settings = WorkerSettings(arrival_rate=args.arrival_rate, call_min=call_min,
                                      call_max=call_max, fail_rate=_fail_rates(args.fail_rate))
            assert self.ledger.signer is not None and self.ledger.signer.path is not None
            db = self.ledger.store.db
            rundir = Path(args.rundir) if args.rundir else default_rundir(db, str(self.ledger.signer.path))
            self.driver = LocalProcessDriver(db, str(self.ledger.signer.path), args.fleet, rundir, settings)
            self.tracker = Tracker(db, "fleet-driver")
        except BaseException:
            self.app.close()
            raise
        self.executor = Executor(self.service, self.driver, self.tracker, args.fleet,
                                 step_delay_s=args.step_delay, say=_say)

    def close(self) -> None:
        try:
            self.tracker.close()
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


def rollback_request(args: argparse.Namespace) -> RollbackRequest:
    return RollbackRequest(
        fleet=args.fleet, actor=args.actor, reason=args.reason, to_version=args.to,
        from_version=args.from_version, idempotency_key=args.idempotency_key,
        force_bad_target=args.force_bad_target, workers=args.workers,
        drain_timeout_s=args.drain_timeout,
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    request = rollback_request(args)
    command = Rollback(request, Meta(args.actor, args.reason, args.idempotency_key))
    check_well_formed(command)
    with FleetSession(args) as session:
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
    with FleetSession(args) as session:
        outcome = session.service.submit(args.fleet, command)
        code = report(outcome, "deploy", command.meta.idempotency_key)
        if code:
            return code
        return session.drive()


def add_driver_options(p: argparse.ArgumentParser) -> None:
    """Options of the local fleet driver and of the workers it starts."""
    p.add_argument("--workers", type=int, default=None,
                   help="workers of the new version to start (default: as many as run now)")
    p.add_argument("--drain-timeout", type=int, default=120, metavar="SECONDS",
                   help="record a drain as stuck after this long (the worker is left running)")
    p.add_argument("--rundir", default=None, help="local worker lock files and logs "
                   "(default <db>.run)")
    p.add_argument("--arrival-rate", type=float, default=2.0, help="new calls per second per worker")
    p.add_argument("--call-seconds", default="1:4", metavar="MIN:MAX", help="call length range")
    p.add_argument("--fail-rate", action="append", default=[], metavar="VERSION=RATE",
                   help="share of a version's calls that error out (repeatable)")
    p.add_argument("--step-delay", type=float, default=0.0, help=argparse.SUPPRESS)


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

    p = sub.add_parser("drive", help="carry out (or resume) the pending deploy or rollback")
    common(p)
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_driver_options(p)
    p.set_defaults(handler=cmd_drive)
