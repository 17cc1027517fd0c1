"""Everyday operator commands: `wait` for a move, `backup` a SQLite ledger, shell `completion`.

They answer what deploy tooling and operators reach for around the ledger's
core commands: block until a rollout ends (with an exit code a pipeline can
act on), take a consistent copy of a live ledger for a reviewer, and complete
commands in a shell.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ledger.api import Ledger
from ledger.chain import GENESIS_PREV
from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.errors import InputError, NotFoundError, StorageError
from ledger.events import check_fleet_name
from ledger.model import Move, MoveKind, Settlement
from ledger.names import seq_argument
from ledger.rules import FleetHistory
from ledger.store import default_db, is_postgres
from ledger.verify import check_batch
from projections.runner import Projections

Common = Callable[..., None]

#: `ledger wait` exit codes beyond 0 (the move completed, or nothing is in flight).
WAIT_FAILED = 1  # the move failed, or was replaced before it completed
WAIT_TIMED_OUT = 3  # no answer yet: the move is still in flight


# -- wait ---------------------------------------------------------------------------------------


def move_ending(state: FleetHistory, move: Move) -> str | None:
    """How `move` ended by the fleet's state now: completed, failed, replaced; None while in flight."""
    flight = state.in_flight
    if flight is not None and flight.seq == move.seq:
        return None
    entry = state.versions.get(move.version)
    if entry is None:
        return "replaced"
    if move.kind is MoveKind.ROLLBACK:
        for item in entry.rolled_back_to:
            if item.seq == move.seq:
                outcome = item.outcome or Settlement.PENDING
                return "replaced" if outcome in (Settlement.SUPERSEDED, Settlement.PENDING) else outcome.value
        return "replaced"
    if entry.completed is not None and entry.completed.seq > move.seq:
        return "completed"
    if entry.failed is not None and entry.failed.seq > move.seq:
        return "failed"
    return "replaced"


def cmd_wait(args: argparse.Namespace) -> int:
    """Block until the move in flight ends; exit 0 completed, 1 failed or replaced, 3 timed out."""
    if args.timeout is not None and args.timeout < 0:
        raise InputError(f"--timeout must be 0 or more seconds, not {args.timeout}")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with Projections.open(args.db or default_db(), notice=lambda m: print(f"ledger: {m}", file=sys.stderr)) \
            as views:
        move = views.command_state(args.fleet, []).in_flight
        if move is None:
            return _say_wait(args, None, "none", views.command_state(args.fleet, []).current)
        with views.waiter() as waiter:
            while True:
                state = views.command_state(args.fleet, [move.version])
                ending = move_ending(state, move)
                if ending is not None:
                    return _say_wait(args, move, ending, state.current)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return _say_wait(args, move, "in_flight", state.current)
                waiter.wait(views.position(), min(remaining if remaining is not None else 1.0, 1.0))


def _say_wait(args: argparse.Namespace, move: Move | None, ending: str, current: str | None) -> int:
    code = {"none": 0, "completed": 0, "in_flight": WAIT_TIMED_OUT}.get(ending, WAIT_FAILED)
    if wants_json(args):
        print_json({"fleet": args.fleet, "move": move.to_dict() if move else None, "ending": ending,
                    "current": current})
    elif move is None:
        print(f"nothing in flight in fleet {args.fleet}; it runs {current or 'no version yet'}")
    elif ending == "in_flight":
        print(f"{move.describe()} is still in flight after {args.timeout}s")
    else:
        print(f"{move.describe()} {ending}; the fleet runs {current or '-'}")
    return code


# -- show -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordCheck:
    """What `ledger show` established about one record, checked alone."""

    name: str
    ok: bool
    detail: str


def check_one(ledger: Ledger, fleet: str, seq: int, data: bytes, anchor_raw: bytes) -> list[RecordCheck]:
    """Check one record as a feed consumer would: its bytes, hash and signature under a key of the
    verified key chain in force at its time, and its links to the records on either side."""
    verifier = ledger.verifier(anchor_raw)
    try:
        epochs = {e.kid: e for e in verifier.verify_keys()}
        keys = {kid: e.public_raw for kid, e in epochs.items()}
        infos, fault = check_batch(fleet, [(seq, data)], keys, verifier.ledger_id)
    finally:
        verifier.close()
    if fault is not None:
        _seq, check, expected, found, detail = fault
        return [RecordCheck(check, False, f"expected {expected}, found {found}" + (f" ({detail})" if detail
                                                                                  else ""))]
    _pos, prev, digest, kid, timestamp, _leaf, _event, _new, _sig = infos[0]
    epoch = epochs[kid]
    in_force = epoch.start <= timestamp and (epoch.end is None or timestamp <= epoch.end)
    checks = [RecordCheck("bytes and hash", True, f"canonical, hash {digest}"),
              RecordCheck("signature", True, f"by key {kid} of ledger {verifier.ledger_id}"),
              RecordCheck("key in force", in_force, f"{epoch.start}..{epoch.end or 'now'}")]
    before = next(ledger.records(fleet, after=seq - 2), None) if seq > 1 else None
    expected_prev = before["hash"] if before is not None else GENESIS_PREV
    checks.append(RecordCheck("link to the record before", prev == expected_prev,
                              f"prev {prev}" + ("" if prev == expected_prev else f", seq {seq - 1} is "
                                                                                 f"{expected_prev}")))
    after = next(ledger.records(fleet, after=seq), None)
    if after is not None:
        checks.append(RecordCheck("link from the record after", after.get("prev") == digest,
                                  f"seq {seq + 1} names prev {after.get('prev')}"))
    return checks


def cmd_show(args: argparse.Namespace) -> int:
    """One record, decoded, with what checking it alone establishes; exit 1 if a check fails."""
    check_fleet_name(args.fleet_name)
    if args.seq < 1:
        raise InputError(f"SEQ is a position from 1, not {args.seq}")
    with Ledger.open(args.db, writable=False) as ledger:
        rows = list(ledger.raw_records(args.fleet_name, args.seq - 1))[:1] if args.fleet_name in \
            ledger.fleets() else []
        if not rows or orjson.loads(rows[0]).get("seq") != args.seq:
            raise NotFoundError(f"fleet {args.fleet_name!r} has no record at seq {args.seq}")
        data = rows[0]
        anchor = ledger.trust_anchor(args.public_key)
        checks = check_one(ledger, args.fleet_name, args.seq, data, anchor.public_raw)
    record = orjson.loads(data)
    ok = all(check.ok for check in checks)
    if wants_json(args):
        print_json({"record": record, "verified": ok, "anchor": anchor.source,
                    "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks]})
    else:
        print(orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        for check in checks:
            print(f"{'ok' if check.ok else 'FAILED'}  {check.name}: {check.detail}")
        print(f"anchor: {anchor.source}, key {anchor.kid}")
    return 0 if ok else 1


# -- backup -------------------------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of a live SQLite ledger (WAL included) through SQLite's backup API."""
    source = args.db or default_db()
    if is_postgres(source):
        raise InputError("`ledger backup` copies a SQLite ledger; back up PostgreSQL with pg_dump")
    out = Path(args.out)
    if out.exists():
        raise InputError(f"{out} exists; choose a new file (a backup never overwrites)")
    if not Path(source).is_file():
        raise InputError(f"{source} is not a ledger file")
    try:
        with sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True) as src, \
                sqlite3.connect(out) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        out.unlink(missing_ok=True)
        raise StorageError(f"cannot back up {source} to {out}: {exc}") from None
    with Ledger.open(out, writable=False) as copy:
        heads = {fleet: copy.head(fleet) for fleet in copy.fleets()}
    total = sum(head.seq for head in heads.values())
    if wants_json(args):
        print_json({"backup": str(out), "fleets": {f: {"records": h.seq, "head": h.hash}
                                                     for f, h in heads.items()}})
        return 0
    print(f"backed up {source} to {out}: {len(heads)} fleet(s), {total} record(s)")
    for fleet, head in heads.items():
        print(f"  {fleet}: {head.seq} records, head {head.hash}")
    print(f"check it: ledger verify --db {out} --public-key <the ledger's public key>")
    return 0


# -- completion ---------------------------------------------------------------------------------


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash completion function for `ledger`, generated from its parser (zsh loads it via bashcompinit)."""
    words: dict[str, list[str]] = {}
    top: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                top.append(name)
                words[name] = _words(sub)
        else:
            top.extend(action.option_strings)
    cases = "\n".join(f"        {name}) opts=\"{' '.join(options)}\" ;;"
                      for name, options in sorted(words.items()))
    script = f'''_ledger() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} sub="" opts="" w
    local skip=""
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        if [ -n "$skip" ]; then skip=""; continue; fi
        case "$w" in --db|--key|--fleet) skip=1 ;; -*) ;; *) sub="$w"; break ;; esac
    done
    case "$sub" in
{cases}
        *) opts="{' '.join(top)}" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}}
complete -o default -F _ledger ledger
'''
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script


def _words(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices)
        elif action.option_strings:
            found.extend(action.option_strings)
        elif action.choices:
            found.extend(str(choice) for choice in action.choices)
    return found


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.root_parser, args.shell))
    return 0


def register(sub: argparse._SubParsersAction[Any], common: Common, root: argparse.ArgumentParser) -> None:
    p = sub.add_parser("wait", help="wait until the deploy or rollback in flight ends "
                                    "(exit 0 completed, 1 failed or replaced, 3 timed out)")
    common(p)
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up after this long")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_output_option(p)
    p.set_defaults(handler=cmd_wait)

    p = sub.add_parser("show", help="one record, decoded, with its verification status (checked alone)")
    common(p, fleet=False)
    p.add_argument("fleet_name", metavar="FLEET")
    p.add_argument("seq", type=seq_argument, metavar="SEQ")
    p.add_argument("--public-key", default=None, help="trusted public key or its file (default: as verify)")
    add_output_option(p)
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("backup", help="a consistent copy of a live SQLite ledger (SQLite's backup API)")
    common(p, fleet=False)
    p.add_argument("out", metavar="OUT", help="the new file to write (never overwritten)")
    add_output_option(p)
    p.set_defaults(handler=cmd_backup)

    p = sub.add_parser("completion", help="print a shell completion script: "
                                          "`source <(ledger completion bash)`")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(handler=cmd_completion, root_parser=root)
