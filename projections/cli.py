"""The `history`, `last-good`, `fleet` and `projections` subcommands of `ledger`.

A thin shell over `Projections`: handlers return exit codes and raise
`ledger.errors` exceptions, which `ledger.cli.main` maps to exit codes in one
place (unknown fleet 2, verification fault 1, no last-good version 3).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.errors import NotFoundError
from ledger.names import escape_controls
from ledger.rules import STATUSES, LastGood
from ledger.store import default_db
from ledger.who import actors_summary, decisions_by_actor
from projections.runner import Projections

Common = Callable[..., None]


def _notice(message: str) -> None:
    print(f"ledger: {escape_controls(message)}", file=sys.stderr)


def _open(args: argparse.Namespace) -> Projections:
    return Projections.open(args.db or default_db(), args.projections, notice=_notice)


def _when(stamp: dict[str, Any] | None) -> str:
    """`seq 12 2026-11-26 10:40:52Z alice`: enough to find the record in the feed."""
    if not stamp:
        return "-"
    timestamp = str(stamp.get("timestamp") or "")
    short = timestamp[:19].replace("T", " ") + "Z" if timestamp else ""
    actor = f" {stamp['actor']}" if stamp.get("actor") else ""
    return f"seq {stamp['seq']} {short}{actor}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _flight(flight: dict[str, Any] | None) -> str:
    if not flight:
        return "none"
    source = f" from {flight['from_version']}" if flight.get("from_version") else ""
    return f"{flight['kind']} to {flight['version']}{source} since seq {flight['seq']}"


# -- history ---------------------------------------------------------------------


def _notes(entry: dict[str, Any]) -> str:
    notes = []
    for item in entry["rolled_back_from"][-1:]:
        outcome = f", {item['outcome']}" if item.get("outcome") not in (None, "pending") else ""
        notes.append(f"rolled back to {item['to_version']} at seq {item['seq']} by {item['actor']}"
                     f"{outcome}: {item.get('reason', '')}")
    bad = entry["bad"]
    if bad and bad.get("event") == "version.marked_bad":
        notes.append(f"marked bad at seq {bad['seq']} by {bad['actor']}: {bad.get('reason', '')}")
    if entry["restored"]:
        notes.append(f"cleared at seq {entry['restored']['seq']} by {entry['restored']['actor']}")
    if entry["verified"]:
        notes.append(f"verified at seq {entry['verified']['seq']}")
    if entry["failed"]:
        notes.append(f"failed at seq {entry['failed']['seq']}: {entry['failed'].get('reason', '')}")
    for item in entry["rolled_back_to"][-1:]:
        outcome = f", {item['outcome']}" if item.get("outcome") not in (None, "pending") else ""
        notes.append(f"returned to from {item['from_version']} at seq {item['seq']}{outcome}")
    drains = len(entry["drains"])
    if drains or entry["worker_drains"]:
        notes.append(f"drained ({drains} version-wide, {entry['worker_drains']} worker)")
    if entry["starts"] > 1:
        notes.append(f"started {entry['starts']} times")
    return "; ".join(notes)


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args) as views:
        answer = views.history(args.fleet)
        actors = actors_summary(views.store)
        if wants_json(args):
            who = decisions_by_actor(views.store, args.fleet)
    if wants_json(args):
        print_json({**answer, "actors": actors.to_dict(), "decisions": who})
        return 0
    print(f"fleet {answer['fleet']}: head seq {answer['head_seq']}, current {answer['current'] or '-'}, "
          f"in flight: {_flight(answer['in_flight'])}")
    rows = [["VERSION", "STATUS", "GOOD", "STARTED", "COMPLETED", "NOTES"]]
    for entry in answer["versions"]:
        rows.append([entry["version"], entry["status"], "yes" if entry["good"] else "no",
                     _when(entry["started"]), _when(entry["completed"]), _notes(entry)])
    print(_table(rows))
    unacted = answer.get("outside_decisions_not_acted_on") or {}
    if unacted.get("count"):
        seqs = ", ".join(str(n) for n in unacted["seqs"])
        print(f"{unacted['count']} decision(s) reported by outside systems were kept, not acted on "
              f"(audit.external at seq {seqs}; see `ledger feed --event audit.external`)")
    print(actors.note())
    return 0


# -- last-good -------------------------------------------------------------------


def cmd_last_good(args: argparse.Namespace) -> int:
    with _open(args) as views:
        answer: LastGood | None = views.last_good(args.fleet, args.leaving,
                                                  for_rollback=args.for_rollback)
        if answer is None and args.for_rollback:
            args.leaving = views.last_good_answer(args.fleet)["current"]
    if answer is None:
        other = f"other than {args.leaving} " if args.leaving else ""
        raise NotFoundError(
            f"fleet {args.fleet} has no last-good version: no version {other}has completed "
            "without being rolled back from or marked bad (see `ledger history`)")
    if wants_json(args):
        print_json({"fleet": args.fleet, **answer.to_dict()})
        return 0
    print(answer.version)
    if sys.stdout.isatty():
        verified = f", verified at seq {answer.verified_seq}" if answer.verified_seq else ""
        print(f"  good since seq {answer.evidence_seq} ({answer.evidence_event}){verified}; "
              f"leaving {answer.leaving or '-'}")
    return 0


# -- fleet -----------------------------------------------------------------------


def _worker_row(worker: dict[str, Any]) -> list[str]:
    if worker["exited"]:
        state = f"exited ({worker['exited'].get('dropped_sessions', 0)} dropped)"
    elif worker["stuck"]:
        state = "drain stuck"
    elif worker["draining"]:
        state = "draining"
    else:
        state = "serving"
    return [worker["worker_id"], worker["version"], state, str(worker["active_sessions"]),
            _when(worker["started"]), _when(worker["exited"])]


def cmd_fleet(args: argparse.Namespace) -> int:
    with _open(args) as views:
        answer = views.fleet(args.fleet)
    if wants_json(args):
        print_json(answer)
        return 0
    summary = answer["summary"]
    if not summary["live_workers"]:
        clean = "no live worker known (cannot say clean)"
    else:
        clean = "clean" if summary["clean"] else "NOT clean"
    print(f"fleet {answer['fleet']}: head seq {answer['head_seq']}, current {summary['current'] or '-'}, "
          f"{clean}; in flight: {_flight(summary['in_flight'])}")
    distribution = ", ".join(f"{v} x{n}" for v, n in summary["versions"].items()) or "none"
    print(f"live workers {summary['live_workers']} ({distribution}); draining {summary['draining']}; "
          f"sessions on non-current versions {summary['sessions_on_non_current']}; "
          f"dropped sessions {summary['dropped_sessions']}")
    if summary.get("not_current"):
        print(f"live workers not on {summary['current'] or '-'}: {', '.join(summary['not_current'])}")
    refused = summary.get("rollbacks_rejected", 0) + summary.get("commands_rejected", 0)
    if refused:
        print(f"refused decisions on record: {summary.get('rollbacks_rejected', 0)} rollback(s), "
              f"{summary.get('commands_rejected', 0)} other command(s)")
    header = ["WORKER", "VERSION", "STATE", "SESSIONS", "STARTED", "EXITED"]
    if answer["workers"]:
        print(_table([header, *map(_worker_row, answer["workers"])]))
    if answer["recent_exits"]:
        print("exited since the latest deploy or rollback started (newest first):")
        print(_table([header, *map(_worker_row, answer["recent_exits"])]))
    return 0


# -- projections -----------------------------------------------------------------


def cmd_catch_up(args: argparse.Namespace) -> int:
    with _open(args) as views:
        started = time.perf_counter()
        applied = views.catch_up()
        elapsed = time.perf_counter() - started
        print(f"projections caught up: {applied} new ledger records in {elapsed:.2f}s; "
              f"at notification {views.position()} ({views.where})")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    with _open(args) as views:
        started = time.perf_counter()
        applied = views.rebuild()
        elapsed = time.perf_counter() - started
        rate = f", {applied / elapsed:,.0f} records/s" if elapsed > 0 and applied else ""
        print(f"projections rebuilt from {applied} ledger records in {elapsed:.2f}s{rate} ({views.where})")
    return 0


# -- registration ----------------------------------------------------------------


def _views_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--projections", default=None, metavar="PATH|URL",
                        help="where the read models live: a SQLite file or a postgresql:// URL "
                             "(env LEDGER_PROJECTIONS; default <db>.projections.db beside a SQLite "
                             "ledger, tables deployledger_views_* in a PostgreSQL ledger's own schema)")


def register(subparsers: argparse._SubParsersAction[Any], common: Common) -> None:
    """Add `history`, `last-good`, `fleet` and `projections catch-up|rebuild` to `ledger`."""
    statuses = "; ".join(f"{name}: {meaning}" for name, meaning in STATUSES.items())
    p = subparsers.add_parser("history", help="every version of a fleet, with its status now",
                              description=f"Statuses - {statuses}.")
    common(p)
    _views_option(p)
    add_output_option(p)
    p.set_defaults(handler=cmd_history)

    p = subparsers.add_parser("last-good", help="the version a rollback returns to (exit 3 if none)")
    common(p)
    _views_option(p)
    leaving = p.add_mutually_exclusive_group()
    leaving.add_argument("--leaving", default=None, metavar="VERSION",
                         help="the newest good version other than this one")
    leaving.add_argument("--for-rollback", action="store_true",
                         help="leaving the fleet's current version: where a rollback would go")
    add_output_option(p)
    p.set_defaults(handler=cmd_last_good)

    p = subparsers.add_parser("fleet", help="the fleet's workers and whether it is clean")
    common(p)
    _views_option(p)
    add_output_option(p)
    p.set_defaults(handler=cmd_fleet)

    projections = subparsers.add_parser("projections", help="catch up or rebuild the read models")
    sub = projections.add_subparsers(dest="projections_command", required=True,
                                     parser_class=type(projections))
    p = sub.add_parser("catch-up", help="apply the ledger records the read models have not seen")
    common(p, fleet=False)
    _views_option(p)
    p.set_defaults(handler=cmd_catch_up)
    p = sub.add_parser("rebuild", help="rebuild the read models from the first ledger record")
    common(p, fleet=False)
    _views_option(p)
    p.set_defaults(handler=cmd_rebuild)

