"""The decision subcommands: `deploy`, `complete`, `fail`, `mark`, and `append` of decisions.

Each handler only parses, builds a command, submits it to the gate and
prints. One outcome, one way of saying it, whatever the command:

- accepted: `appended <fleet> seq N hash H` per record, exit 0;
- refused by a check: the refusal is recorded (`appended ...` names it), one
  line on stderr `ledger: <command> refused (<check>): <why>`, exit 1;
- malformed: one line on stderr, nothing written, exit 2;
- a repeated idempotency key: the first result again, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ledger.actors import ActorSigner, load_actor_signer
from ledger.api import Ledger, Receipt
from ledger.app import App, open_app
from ledger.decide import (
    Command,
    Complete,
    Deploy,
    Fail,
    Judge,
    Meta,
    Verdict,
    WorkerPlan,
    check_well_formed,
    command_event,
)
from ledger.envelope import MAX_EXPIRY_MINUTES
from ledger.errors import InputError, RecordError
from ledger.events import EVENT_TYPES
from ledger.gate import Outcome, Refused, command_from_record
from ledger.reporter import ReporterKey, reporter_key

Common = Callable[..., None]

VERDICTS = {"verified": Verdict.VERIFIED, "bad": Verdict.BAD, "cleared": Verdict.CLEARED}


def notice(message: str) -> None:
    print(f"ledger: {message}", file=sys.stderr)


def actor_signer(args: argparse.Namespace) -> ActorSigner | None:
    """The actor's signing key from `--actor-key` / `LEDGER_ACTOR_KEY`, acting as `--actor`."""
    path = getattr(args, "actor_key", None)
    if not path:
        return None
    return load_actor_signer(Path(path), getattr(args, "actor", None) or "unnamed")


def open_for(args: argparse.Namespace) -> App:
    app = open_app(args.db, args.key, projections=getattr(args, "projections", None), notice=notice,
                   signer=actor_signer(args))
    expires = getattr(args, "expires", None)
    if expires is not None:  # 0 is a value to refuse, not "the default"
        app.service.expiry_minutes = expires
    return app


def print_receipts(receipts: Sequence[Receipt]) -> None:
    if len(receipts) <= 10:
        for receipt in receipts:
            print(f"appended {receipt}")
    else:
        first, last = receipts[0], receipts[-1]
        print(f"appended {len(receipts)} records to {last.fleet}: seq {first.seq}..{last.seq}, "
              f"head {last.hash}")


def report(outcome: Outcome, what: str, key: str | None = None) -> int:
    """Print what the gate did; the exit code: 0 accepted, 1 refused (and recorded)."""
    if outcome.replayed:
        print(f"idempotency key {key!r} was used at seq {outcome.receipt.seq}: "
              "returning its result, writing nothing")
    else:
        print_receipts(outcome.receipts)
    decision = outcome.decision
    if isinstance(decision, Refused):
        print(f"ledger: {what} refused ({decision.check.value}): {decision.detail}", file=sys.stderr)
        return 1
    return 0


def meta(args: argparse.Namespace) -> Meta:
    return Meta(args.actor, args.reason, getattr(args, "idempotency_key", None))


def submit(args: argparse.Namespace, command: Command, what: str) -> int:
    with open_for(args) as app:
        return report(app.service.submit(args.fleet, command), what, command.meta.idempotency_key)


def deploy_command(args: argparse.Namespace) -> Deploy:
    plan = WorkerPlan(args.workers, args.drain_timeout) if args.drive else None
    return Deploy(args.version, meta(args), from_version=args.from_version, supersede=args.supersede,
                  plan=plan)


def cmd_deploy(args: argparse.Namespace) -> int:
    return submit(args, deploy_command(args), "deploy")


def cmd_complete(args: argparse.Namespace) -> int:
    return submit(args, Complete(args.version, meta(args), evidence=args.confirm), "complete")


def cmd_fail(args: argparse.Namespace) -> int:
    return submit(args, Fail(args.version, meta(args)), "fail")


def cmd_mark(args: argparse.Namespace) -> int:
    return submit(args, Judge(VERDICTS[args.verdict], args.version, meta(args)), f"mark {args.verdict}")


def append_records(args: argparse.Namespace, bodies: list[dict[str, Any]]) -> int:
    """Facts are appended in order and in batches; each decision among them passes the gate.

    Every body is checked for form before anything is written. A refused
    decision stops the run there (what came before it stays written) and exits 1.
    """
    if not any(_is_gated(body) for body in bodies):  # facts only: append_many checks all, then writes
        with Ledger.open(args.db, args.key) as ledger:
            print_receipts(ledger.append_many(args.fleet, bodies))
        return 0
    steps: list[Command | list[dict[str, Any]]] = []  # decisions, and runs of facts between them
    for number, body in enumerate(bodies, 1):
        where = f"record {number}" if len(bodies) > 1 else "record"
        if _is_gated(body):
            try:
                command = command_from_record(args.fleet, body)
                check_well_formed(command)
            except InputError as exc:
                raise RecordError(f"{where}: {exc}") from None
            steps.append(command)
            continue
        checked = Ledger.validate(body, where)
        if steps and isinstance(steps[-1], list):
            steps[-1].append(checked)
        else:
            steps.append([checked])
    keys = [step.meta.idempotency_key for step in steps
            if not isinstance(step, list) and step.meta.idempotency_key]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise RecordError(f"idempotency key {repeated[0]!r} is used by more than one decision in the input")
    with open_for(args) as app:
        for step in steps:
            if not isinstance(step, list):
                app.service.check_key(args.fleet, step)  # a key used by another command: exit 2 first
        for step in steps:
            if isinstance(step, list):
                print_receipts(app.ledger.append_many(args.fleet, step))
                continue
            code = report(app.service.submit(args.fleet, step), command_event(step),
                          step.meta.idempotency_key)
            if code:
                return code
    return 0


def _is_gated(body: dict[str, Any]) -> bool:
    event_type = EVENT_TYPES.get(str(body.get("event")))
    return event_type is not None and event_type.gated


def add_decision_options(p: argparse.ArgumentParser, *, reason_required: bool = False) -> None:
    p.add_argument("--actor", required=True, help="who is doing this (recorded)")
    p.add_argument("--reason", required=reason_required, default=None, help="why (recorded)")
    p.add_argument("--idempotency-key", default=None,
                   help="a retry with this key returns the first result and writes nothing new")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_signing_options(p)


def add_reporter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reporter", default=argparse.SUPPRESS, metavar="NAME",
                   help="the reporter actor that signs the worker facts written here (env LEDGER_REPORTER)")
    p.add_argument("--reporter-key", default=argparse.SUPPRESS, metavar="PATH",
                   help="the reporter's Ed25519 private key (OpenSSH, PEM or raw) (env LEDGER_REPORTER_KEY)")


def reporter_of(args: argparse.Namespace) -> ReporterKey | None:
    """The reporter `--reporter`/`--reporter-key` name, its key checked readable now (exit 2 if not)."""
    reporter = reporter_key(getattr(args, "reporter", None), getattr(args, "reporter_key", None))
    if reporter is not None:
        reporter.load()
    return reporter


def _expiry_minutes(text: str) -> int:
    """`--expires`: whole minutes within the envelope's limits, refused while parsing (exit 2)."""
    try:
        minutes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of minutes: {text!r}") from None
    if not 1 <= minutes <= MAX_EXPIRY_MINUTES:
        raise argparse.ArgumentTypeError(
            f"the expiry must be 1 to {MAX_EXPIRY_MINUTES} minutes, not {minutes}")
    return minutes


def add_signing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor-key", default=argparse.SUPPRESS, metavar="PATH",
                   help="the actor's Ed25519 private key (OpenSSH, PEM or raw) to sign the command "
                   "with (env LEDGER_ACTOR_KEY; needed once the policy is enforced)")
    p.add_argument("--expires", type=_expiry_minutes, default=None, metavar="MINUTES",
                   help="how long the signed command stays valid (default 10)")


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    p = sub.add_parser("complete", help="record that the deploy or rollback in flight completed (validated)")
    common(p)
    p.add_argument("version", help="the version the move in flight goes to")
    add_decision_options(p)
    p.add_argument("--confirm", default=None, metavar="EVIDENCE",
                   help="a rollback the ledger cannot see done: confirm it, with the evidence (recorded)")
    p.set_defaults(handler=cmd_complete)

    p = sub.add_parser("fail", help="record that the deploy or rollback in flight failed (validated)")
    common(p)
    p.add_argument("version", help="the version the move in flight goes to")
    add_decision_options(p, reason_required=True)
    p.set_defaults(handler=cmd_fail)

    p = sub.add_parser("mark", help="record a verdict on a version the fleet has seen (validated)")
    common(p)
    p.add_argument("verdict", choices=sorted(VERDICTS))
    p.add_argument("version")
    add_decision_options(p)
    p.set_defaults(handler=cmd_mark)
