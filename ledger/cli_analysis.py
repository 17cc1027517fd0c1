"""`ledger analyze`, `ledger rule set|show` and `ledger watch`: rolling back on evidence.

`analyze` reads only. `rule set` records the fleet's rollback rule through the
gate. `watch` follows the fleet and, when the rule fails, records a rollback
through the gate as `ledger-watch` (and drives it when a driver is configured).
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import Any

from ledger.analysis import Analysis, Rule, analyze, validate_rule
from ledger.cli_decide import add_decision_options, add_signing_options, open_for, report
from ledger.cli_fleet import FleetSession, add_driver_options
from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.decide import Meta, SetRule
from ledger.drivers import DriverKind
from ledger.errors import InputError, UnknownFleetError
from ledger.rules import last_good
from ledger.store import default_db
from ledger.watch import ACTOR, Action, FleetAnalysis, Watcher

Common = Callable[..., None]


def fold_fleet(args: argparse.Namespace) -> FleetAnalysis:
    from ledger.api import Ledger

    with Ledger.open(args.db or default_db(), args.key, writable=False) as ledger:
        if args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"unknown fleet {args.fleet!r}")
        folded = FleetAnalysis(args.fleet)
        for record in ledger.records(args.fleet):
            folded.apply(record)
    return folded


def fleet_analysis(folded: FleetAnalysis, window_s: int | None) -> Analysis | None:
    """The version in flight (or live) against its last-good baseline, under the rule on record."""
    state = folded.state
    flight = state.in_flight
    candidate = flight.version if flight is not None else state.current
    if candidate is None:
        return None
    found = last_good(state, leaving=candidate)
    rule = folded.rule
    if window_s is not None:
        rule = validate_rule(**{**rule.to_fields(), "window_s": window_s})
    return analyze(folded.totals, candidate, found.version if found else None, rule)


def _pct(ppm: int) -> str:
    return f"{ppm / 10_000:.1f}%"


def cmd_analyze(args: argparse.Namespace) -> int:
    folded = fold_fleet(args)
    analysis = fleet_analysis(folded, args.window)
    if analysis is None:
        raise InputError(f"fleet {args.fleet} runs no version yet: nothing to analyse")
    rule_from = f"rule at seq {folded.rule_seq}" if folded.rule_seq else "default rule (none recorded)"
    if wants_json(args):
        print_json({"fleet": args.fleet, "rule_seq": folded.rule_seq, **analysis.snapshot()})
        return 0
    rule = analysis.rule
    cand, base = analysis.candidate_counts, analysis.baseline_counts
    print(f"fleet {args.fleet}: {analysis.candidate} vs last-good {analysis.baseline or '(none)'}, "
          f"window {rule.window_s}s, {rule_from}")
    print(f"sessions: {analysis.candidate} {cand.sessions} (seq {cand.first_seq}..{cand.last_seq}), "
          f"{analysis.baseline or '-'} {base.sessions} (seq {base.first_seq}..{base.last_seq})")
    rows = [("METRIC", analysis.candidate, analysis.baseline or "-", "Z", "P-VALUE", "FAILS")]
    for m in analysis.metrics:
        rows.append((m.name, _pct(m.candidate_ppm), _pct(m.baseline_ppm), f"{m.z:.2f}",
                     f"{m.p_value:.3g}", "yes" if m.fails else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows if analysis.metrics else []:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"verdict: {analysis.verdict} (min {rule.min_sessions} sessions each side, confidence "
          f"{rule.confidence_bp / 100:g}%, min increase {rule.min_increase_bp / 100:g} points, "
          f"{rule.consecutive} failing evaluations in a row to act)")
    return 0


def _basis_points(text: str, flag: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} must be a percentage, not {text!r}") from None
    return round(value * 100)


def cmd_rule_set(args: argparse.Namespace) -> int:
    rule = validate_rule(args.window, args.min_sessions, _basis_points(args.confidence, "--confidence"),
                         _basis_points(args.min_increase, "--min-increase"), args.consecutive)
    command = SetRule(rule, Meta(args.actor, args.reason, args.idempotency_key))
    with open_for(args) as app:
        return report(app.service.submit(args.fleet, command), "rule set", args.idempotency_key)


def cmd_rule_show(args: argparse.Namespace) -> int:
    folded = fold_fleet(args)
    data: dict[str, Any] = {"fleet": args.fleet, "seq": folded.rule_seq, **folded.rule.to_fields()}
    if wants_json(args):
        print_json(data)
    else:
        where = f"recorded at seq {folded.rule_seq}" if folded.rule_seq else "default: none recorded"
        print(f"fleet {args.fleet} rollback rule ({where}): " + ", ".join(
            f"{k}={v}" for k, v in folded.rule.to_fields().items()))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow the fleet until interrupted (or, with --until-verdict, until it acted once)."""
    def say(line: str) -> None:
        print(f"watch: {line}", flush=True)

    stopping = False

    def stop_now(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_now)
    with FleetSession(args) as session:
        driven = args.driver != DriverKind.NONE.value
        watcher = Watcher(session.service, args.fleet, actor=args.actor, dry_run=args.dry_run,
                          external=not driven, say=say)
        acted: list[Action] = []

        def on_action(action: Action) -> None:
            acted.append(action)
            if action.kind == "rollback" and driven and not args.dry_run:
                session.drive()

        say(f"following fleet {args.fleet} as {args.actor}{' (dry run)' if args.dry_run else ''}")
        watcher.run(interval_s=args.interval,
                    stop=lambda: stopping or bool(args.until_verdict and acted), on_action=on_action)
    return 0


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    p = sub.add_parser("analyze", help="compare the version in flight (or live) with the last-good "
                                       "version's session outcomes")
    common(p)
    p.add_argument("--window", type=int, default=None, metavar="SECONDS",
                   help="window of ledger time (default: the rule's)")
    add_output_option(p)
    p.set_defaults(handler=cmd_analyze)

    rule = sub.add_parser("rule", help="the fleet's rollback rule (what `ledger watch` may do)")
    rule_sub = rule.add_subparsers(dest="rule_command", required=True)
    defaults = Rule()
    p = rule_sub.add_parser("set", help="record the fleet's rollback rule (validated, through the gate)")
    common(p)
    p.add_argument("--window", type=int, default=defaults.window_s, metavar="SECONDS")
    p.add_argument("--min-sessions", type=int, default=defaults.min_sessions,
                   help="no verdict before each side has this many ended sessions")
    p.add_argument("--confidence", default=str(defaults.confidence_bp / 100), metavar="PERCENT",
                   help="one-sided confidence that the new version is worse (default 99)")
    p.add_argument("--min-increase", default=str(defaults.min_increase_bp / 100), metavar="POINTS",
                   help="least increase of a rate, in percentage points (default 5)")
    p.add_argument("--consecutive", type=int, default=defaults.consecutive,
                   help="failing evaluations in a row before rolling back")
    add_decision_options(p)
    p.set_defaults(handler=cmd_rule_set)
    p = rule_sub.add_parser("show", help="the rule on record (or the default)")
    common(p)
    add_output_option(p)
    p.set_defaults(handler=cmd_rule_show)

    p = sub.add_parser("watch", help="follow the fleet; roll back on evidence as `ledger-watch`")
    common(p)
    p.add_argument("--dry-run", action="store_true", help="say what it would record; write nothing")
    p.add_argument("--actor", default=ACTOR, help=f"who the records name (default {ACTOR})")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between polls")
    p.add_argument("--until-verdict", action="store_true",
                   help="exit after the first rollback or pass it records")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_signing_options(p)
    add_driver_options(p)
    p.set_defaults(handler=cmd_watch)

