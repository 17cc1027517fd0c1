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

from ledger.api import Ledger
from ledger.drive import Executor, deploy_record
from ledger.errors import HeadMovedError, InputError, LedgerError
from ledger.fleet import LocalProcessDriver, WorkerSettings, default_rundir
from ledger.rollback import Refusal, RollbackCommand, RollbackPlan, RollbackRequest
from ledger.rules import FleetHistory
from ledger.store import default_db
from ledger.tracking import Tracker
from projections.runner import Projections

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
    """The ledger, its projections, a local driver and the executor, opened together."""

    def __init__(self, args: argparse.Namespace):
        self.db = args.db or default_db()
        self.ledger = Ledger.open(self.db, args.key)
        self.views = Projections.open(self.db, getattr(args, "projections", None),
                                      notice=lambda m: print(f"ledger: {m}", file=sys.stderr))
        call_min, call_max = _call_seconds(args.call_seconds)
        settings = WorkerSettings(arrival_rate=args.arrival_rate, call_min=call_min,
                                  call_max=call_max, fail_rate=_fail_rates(args.fail_rate))
        assert self.ledger.signer is not None and self.ledger.signer.path is not None
        rundir = Path(args.rundir) if args.rundir else default_rundir(self.db, str(self.ledger.signer.path))
        self.driver = LocalProcessDriver(self.db, str(self.ledger.signer.path), args.fleet, rundir,
                                         settings)
        self.tracker = Tracker(self.db, "fleet-driver")
        self.executor = Executor(self.ledger, self.driver, self.views, self.tracker, args.fleet,
                                 step_delay_s=args.step_delay, say=_say)

    def close(self) -> None:
        self.tracker.close()
        self.views.close()
        self.ledger.close()

    def __enter__(self) -> FleetSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drive(self) -> int:
        outcome = self.executor.run_pending()
        if outcome is None:
            print("nothing to drive: no pending deploy or rollback")
            return 0
        return 0 if outcome == "completed" else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    request = RollbackRequest(
        fleet=args.fleet, actor=args.actor, reason=args.reason, to_version=args.to,
        from_version=args.from_version, idempotency_key=args.idempotency_key,
        force_bad_target=args.force_bad_target, workers=args.workers,
        drain_timeout_s=args.drain_timeout,
    )
    request.check_well_formed()
    with FleetSession(args) as session:
        command = RollbackCommand(session.ledger, session.views)
        if args.dry_run:
            return _print_decision(command.plan(request), dry_run=True)
        outcome = command.run(request)
        assert outcome.receipt is not None
        if outcome.replayed:
            print(f"idempotency key {request.idempotency_key!r} was used at seq {outcome.receipt.seq}: "
                  "returning its result, writing nothing")
        else:
            print(f"appended {outcome.receipt}")
        code = _print_decision(outcome.decision, dry_run=False)
        if code or args.no_drive:
            return code
        if outcome.replayed:  # the first attempt may have died mid-move: carry it on if so
            pending = session.executor.pending()
            if pending is None or pending.seq != outcome.receipt.seq:
                return code
        return session.drive()


def _print_decision(decision: RollbackPlan | Refusal, *, dry_run: bool) -> int:
    if isinstance(decision, Refusal):
        print(f"ledger: rollback refused ({decision.check}): {decision.reason}", file=sys.stderr)
        return 1
    for line in decision.describe():
        print(line)
    if dry_run:
        print("dry run: nothing written")
    return 0


def cmd_drive(args: argparse.Namespace) -> int:
    with FleetSession(args) as session:
        return session.drive()


def cmd_deploy_drive(args: argparse.Namespace) -> int:
    """`ledger deploy VERSION --drive`: record the deploy with its plan, then carry it out."""
    if not args.actor.strip():
        raise InputError("deploy needs a non-empty --actor")
    with FleetSession(args) as session:
        for _ in range(20):
            state = session.views.fleet_state(args.fleet) if args.fleet in session.ledger.fleets() \
                else None
            head = state.head_seq if state is not None else 0
            if state is not None and state.in_flight is not None:
                flight = state.in_flight
                raise InputError(f"a {flight['kind']} to {flight['version']} is in flight since "
                                 f"seq {flight['seq']}; finish it with `ledger drive`")
            body = deploy_record(state or FleetHistory(args.fleet), args.version, args.actor,
                                 args.reason, args.workers, args.drain_timeout)
            try:
                receipt = session.ledger.append(args.fleet, body, expect_seq=head)
            except HeadMovedError:
                continue
            print(f"appended {receipt}")
            return session.drive()
        raise LedgerError(f"fleet {args.fleet} kept moving; try again")


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
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--idempotency-key", default=None, help="a retry with this key writes nothing new")
    p.add_argument("--force-bad-target", action="store_true",
                   help="allow a target that is not good (recorded in the event)")
    p.add_argument("--no-drive", action="store_true", help="record the rollback; do not drive it")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_driver_options(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("drive", help="carry out (or resume) the pending deploy or rollback")
    common(p)
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_driver_options(p)
    p.set_defaults(handler=cmd_drive)
