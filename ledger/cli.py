"""The `ledger` command: a thin shell over the Python API.

Errors are mapped to exit codes in one place (`main`): 2 for input the ledger
refuses (nothing written), 1 for history that fails verification (or a check
that refused the command, recorded), 3 for a question without an answer, 4 for
a storage fault (the ledger could not be read or written here), 70 for a bug.
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from ledger import (
    cli_actors,
    cli_analysis,
    cli_append,
    cli_decide,
    cli_evidence,
    cli_fleet,
    cli_ops,
    commands,
)
from ledger.actors import read_actor_public_key
from ledger.api import Ledger
from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.config import Config
from ledger.encoding import MAX_RECORD_BYTES, parse_record
from ledger.errors import InputError, LedgerError, UnknownFleetError
from ledger.feed import FeedFilter, feed, parse_time
from ledger.names import count_argument, escape_controls, seq_argument, shown
from ledger.openrtc import cli as openrtc_cli
from ledger.policy import POLICY_CHAIN
from ledger.postgres_url import redact, redact_text
from ledger.store import KEY_CHAIN, default_db, is_postgres, storage_errors, storage_fault
from projections import cli as projections_cli

Handler = Callable[[argparse.Namespace], int]

#: A bug of the ledger itself (sysexits' EX_SOFTWARE): never a verdict on the records.
EXIT_INTERNAL = 70


def one_line(message: object) -> str:
    """An error message as one terminal-safe line: control characters (newlines,
    escape sequences) in quoted user text are shown escaped, never sent raw, and
    any database password in it is replaced."""
    return escape_controls(redact_text(str(message)))


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ledger: {one_line(message)} (see `{self.prog} --help`)\n")


def _common(parser: argparse.ArgumentParser, *, fleet: bool = True) -> None:
    """The global options, accepted before or after the subcommand.

    Both places default to "not given" (SUPPRESS), so a value given before the
    subcommand survives the subcommand's own parse; `_fill_defaults` supplies
    the defaults afterwards.
    """
    parser.add_argument("--db", default=argparse.SUPPRESS, help="database file or postgresql:// URL "
                        "(env LEDGER_DB, default ./ledger.db)")
    parser.add_argument("--key", default=argparse.SUPPRESS, help="signing key file (env LEDGER_KEY, "
                        "default ./ledger.key)")
    if fleet:
        parser.add_argument("--fleet", default=argparse.SUPPRESS,
                            help="fleet (chain) name (env LEDGER_FLEET, default 'default')")


def _fill_defaults(args: argparse.Namespace) -> Config:
    """The command's one configuration, from its flags and the environment; the handlers read
    its values from `args` (db, key, fleet, projections, driver, driver_config)."""
    config = Config.load(vars(args), every_fleet=args.every_fleet_by_default)
    args.db, args.key, args.fleet = config.db, config.key, config.fleet
    args.projections, args.driver = config.projections, config.driver
    args.driver_config = config.driver_config
    args.actor_key = config.actor_key
    args.reporter, args.reporter_key = config.reporter, config.reporter_key
    args.config = config
    return config


def package_version() -> str:
    """The installed distribution's version (a source tree run in place says so)."""
    try:
        return metadata.version("deploy-ledger")
    except metadata.PackageNotFoundError:
        return "(not installed; running from a source tree)"


def _who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", required=True, help="who is doing this (recorded)")
    parser.add_argument("--reason", default=None, help="why (recorded)")


def _open(args: argparse.Namespace, *, writable: bool, read_only: bool | None = None) -> Ledger:
    return Ledger.open(args.db or default_db(), args.key, writable=writable, read_only=read_only)


def _write(args: argparse.Namespace, bodies: list[dict[str, Any]]) -> int:
    with _open(args, writable=True) as ledger:
        cli_decide.print_receipts(ledger.append_many(args.fleet, bodies))
    return 0


# -- handlers --------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    if bool(args.admin) != bool(args.admin_key):
        raise InputError("--admin and --admin-key go together (the first admin's name and public key)")
    if args.admin_key:
        read_actor_public_key(args.admin_key)  # bad input stops init before anything exists
    with Ledger.init(args.db or default_db(), args.key, actor=args.actor or args.config.user,
                     reuse_key=args.reuse_key) as ledger:
        kid, public, _ = ledger.current_key()
        genesis = ledger.head(KEY_CHAIN)
        print(f"appended {KEY_CHAIN} seq {genesis.seq} hash {genesis.hash}")
        print(f"initialised ledger {ledger.label}")
        print(f"ledger id {ledger.ledger_id}")
        print(f"public key {public}")
        print(f"key id {kid}")
        print(f"anchor pinned at {ledger.pinned} (plain `ledger verify` trusts it)")
    if args.admin:
        return cli_actors.bootstrap(args, args.admin, args.admin_key)
    print(cli_actors.OPEN_MODE)
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    with _open(args, writable=False) as ledger:
        if args.vkey:
            for line in ledger.vkeys():
                print(line)
            return 0
        kid, public, since = ledger.current_key()
        if wants_json(args):
            print_json({"ledger_id": ledger.ledger_id, "current": {"kid": kid, "public_key": public,
                                                                   "since": since},
                        "history": ledger.key_history()})
            return 0
        print(f"ledger id {ledger.ledger_id}")
        print(f"current key {public} (id {kid}, since {since})")
        for record in ledger.key_history():
            print(f"  {record['timestamp']} {record['event']} {record['new_kid']} by {record['actor']}")
    return 0


def cmd_keys_export(args: argparse.Namespace) -> int:
    """The key chain as feed lines: what a reviewer needs, with the anchor, to check any proof."""
    with _open(args, writable=False) as ledger:
        out = sys.stdout.buffer
        for data in ledger.raw_records(KEY_CHAIN):
            out.write(data + b"\n")
        out.flush()
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    with _open(args, writable=True) as ledger:
        receipt = ledger.rotate_key(args.actor, args.reason)
        kid, public, _ = ledger.current_key()
        print(f"appended {receipt}")
        print(f"rotated: key {kid} signs from now on ({public})")
    return 0


def _read_append_input(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.json is not None:
        return [parse_record(args.json)]
    data = sys.stdin.buffer.read(MAX_RECORD_BYTES + 1)
    return [parse_record(data, "record on stdin")]


def cmd_append(args: argparse.Namespace) -> int:
    if args.file is not None:
        return cli_append.append_file(args, Path(args.file))
    return cli_decide.append_records(args, _read_append_input(args))


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.drive:
        return cli_fleet.cmd_deploy_drive(args)
    return cli_decide.cmd_deploy(args)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.action == "start":
        body = commands.worker_start(args.worker, args.version, args.actor, args.reason)
    elif args.action == "drain":
        body = commands.worker_drain(args.worker, args.version, args.actor, args.reason)
    elif args.sessions is None:
        raise InputError(f"`ledger worker {args.action}` needs --sessions N")
    elif args.action == "sessions":
        body = commands.worker_sessions(args.worker, args.version, args.sessions, args.actor)
    else:
        body = commands.worker_exit(args.worker, args.version, args.sessions, args.actor,
                                    args.reason, args.exit_code)
    if args.actor_key:  # a reporter's signed fact: checked against the policy, or refused
        with cli_decide.open_for(args) as app:
            return cli_decide.report(app.service.report(args.fleet, body), f"worker {args.action}")
    return _write(args, [body])


def cmd_feed(args: argparse.Namespace) -> int:
    where = FeedFilter(
        event=args.event, actor=args.actor, version=args.version,
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
    )
    with _open(args, writable=False) as ledger:
        own_chain = args.fleet in (KEY_CHAIN, POLICY_CHAIN)
        if not args.follow and not own_chain and args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"fleet {args.fleet!r} has no records in {ledger.label}")
        out = sys.stdout.buffer
        try:
            for data in feed(ledger, args.fleet, after=args.after, limit=args.limit, where=where,
                             follow=args.follow):
                out.write(data + b"\n")
                if args.follow:
                    out.flush()
        except KeyboardInterrupt:
            pass
        out.flush()
    return 0


class _ProgressBar:
    """A one-line progress bar on a terminal; silent when stderr is piped."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = done * 100 // total
        if percent != self.last:
            self.last = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\rverifying [{bar:<25}] {percent:3d}% {done}/{total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last >= 0:
            sys.stderr.write("\r" + " " * 70 + "\r")


def cmd_verify(args: argparse.Namespace) -> int:
    if args.bundle:
        return cli_evidence.cmd_verify_bundle(args)
    checkpoint = None
    if args.checkpoint:
        try:
            checkpoint = Path(args.checkpoint).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"cannot read checkpoint {shown(args.checkpoint)}: {exc}") from None
    fleets = [args.fleet] if args.fleet else None
    progress = _ProgressBar()
    with _open(args, writable=False) as ledger:
        if args.fleet and args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"fleet {args.fleet!r} has no records in {ledger.label}")
        anchor = ledger.trust_anchor(args.public_key)
        if not wants_json(args):
            print(f"anchor: {anchor.describe()}")
        try:
            report = ledger.verify(fleets=fleets, checkpoint=checkpoint, progress=progress,
                                   anchor=anchor, all_signatures=args.all_signatures)
        finally:
            progress.close()
    if wants_json(args):
        print_json({"anchor": anchor.describe(), "ledger_id": report.ledger_id, "keys": len(report.keys),
                    "fleets": [{"fleet": c.chain, "records": c.count, "head": c.head,
                                "extends_checkpoint_of": c.checkpoint_size} for c in report.chains],
                    "actors": {"authenticated": report.actors.enforced, "since": report.actors.since,
                               "signed_decisions": report.actors.signed.commands,
                               "signed_facts": report.actors.signed.facts,
                               "summary": report.actors.describe()}})
        return 0
    for chain in report.chains:
        extra = ""
        if chain.checkpoint_size is not None:
            extra = f", extends checkpoint of {chain.checkpoint_size} records"
        print(f"verified {chain.count} records in fleet {chain.chain}, head {chain.head}{extra}")
    if not report.chains:
        print(f"verified key chain of {len(report.keys)} key(s); no fleet records yet")
    print(report.actors.describe())
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with _open(args, writable=True, read_only=True) as ledger:  # signs, but writes no record
        if args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"fleet {args.fleet!r} has no records in {ledger.label}")
        sys.stdout.write(ledger.checkpoint(args.fleet, args.public_key))
    return 0


# -- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ledger", description="Signed, hash-chained deploy ledger.")
    parser.add_argument("--version", action="version", version=f"ledger {package_version()}")
    _common(parser)
    parser.set_defaults(every_fleet_by_default=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("init", help="create the ledger and its signing key")
    _common(p, fleet=False)
    p.add_argument("--actor", default=None, help="who creates the ledger (default: your login name)")
    p.add_argument("--reuse-key", action="store_true",
                   help="sign the new ledger with the existing key file (refused otherwise)")
    p.add_argument("--admin", default=None, help="enforce the policy from the start, with this first admin")
    p.add_argument("--admin-key", default=None, metavar="PATH",
                   help="the first admin's public key (ed25519:..., or an ssh-ed25519 .pub file)")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_init)

    keys = sub.add_parser("keys", help="show or rotate the signing key")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=OneLineParser)
    p = keys_sub.add_parser("show", help="print the current public key and the key history")
    _common(p, fleet=False)
    add_output_option(p)
    p.add_argument("--vkey", action="store_true",
                   help="print a C2SP signed-note verifier key per key of the chain, for checkpoints")
    p.set_defaults(handler=cmd_keys_show)
    p = keys_sub.add_parser("export", help="print the key chain (@keys) as JSON lines")
    _common(p, fleet=False)
    p.set_defaults(handler=cmd_keys_export)
    p = keys_sub.add_parser("rotate", help="introduce a new key, signed by the old one")
    _common(p, fleet=False)
    _who(p)
    p.set_defaults(handler=cmd_keys_rotate)

    p = sub.add_parser("append", help="append records given as JSON (decisions among them pass the gate)")
    _common(p)
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--json", help="one record as a JSON object")
    source.add_argument("--file", help="a JSON-lines file of records")
    p.set_defaults(handler=cmd_append)

    p = sub.add_parser("deploy", help="start moving the fleet to a version (validated)")
    _common(p)
    p.add_argument("version")
    p.add_argument("--from-version", default=None, help="refuse unless the fleet runs this version")
    cli_decide.add_decision_options(p)
    p.add_argument("--supersede", action="store_true",
                   help="replace the deploy or rollback in flight (its end is recorded first)")
    p.add_argument("--drive", action="store_true",
                   help="start workers of VERSION, drain the others, confirm the fleet clean")
    cli_fleet.add_driver_options(p)
    p.set_defaults(handler=cmd_deploy)

    cli_decide.register(sub, _common)

    p = sub.add_parser("worker", help="record a worker fact")
    _common(p)
    p.add_argument("action", choices=["start", "sessions", "drain", "exit"])
    p.add_argument("worker")
    p.add_argument("--version", required=True)
    p.add_argument("--sessions", type=int, default=None, help="active sessions (sessions, exit)")
    p.add_argument("--exit-code", type=int, default=None)
    _who(p)
    cli_decide.add_signing_options(p)
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("feed", help="print records as JSON lines from a cursor")
    _common(p)
    p.add_argument("--after", type=seq_argument, default=0, help="start after this seq")
    p.add_argument("--limit", type=count_argument, default=None, help="print at most this many records")
    p.add_argument("--event", default=None)
    p.add_argument("--actor", default=None)
    p.add_argument("--version", default=None, help="records naming this version")
    p.add_argument("--since", default=None, help="RFC 3339 time, inclusive")
    p.add_argument("--until", default=None, help="RFC 3339 time, inclusive")
    p.add_argument("--follow", action="store_true", help="keep printing new records")
    p.set_defaults(handler=cmd_feed)

    p = sub.add_parser("verify", help="verify every hash, link and signature")
    _common(p, fleet=False)
    p.add_argument("--fleet", default=argparse.SUPPRESS, help="only this fleet (default: every fleet)")
    p.set_defaults(every_fleet_by_default=True)
    p.add_argument("--public-key", default=None,
                   help="trusted public key or its file (default: env LEDGER_TRUST, else the key "
                   "pinned by `ledger init` in ~/.config/deploy-ledger/trust/)")
    p.add_argument("--checkpoint", default=None, help="also prove the ledger extends this checkpoint")
    add_output_option(p)
    p.add_argument("--all-signatures", action="store_true",
                   help="check every record's signature (default: those that carry the proof)")
    p.add_argument("--bundle", default=None, metavar="DIR",
                   help="verify an exported bundle instead, with no database (needs --public-key)")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("checkpoint", help="print a signed checkpoint of a fleet's chain")
    _common(p)
    p.add_argument("--public-key", default=None)
    p.set_defaults(handler=cmd_checkpoint)

    projections_cli.register(sub, _common)
    cli_fleet.register(sub, _common)
    cli_analysis.register(sub, _common)
    openrtc_cli.register(sub, _common)
    from ledger.service import cli as service_cli  # light: the web stack loads only for `serve`

    service_cli.register(sub, _common)
    cli_evidence.register(sub, _common)
    cli_actors.register(sub, _common)
    cli_ops.register(sub, _common, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _fill_defaults(args)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LedgerError as exc:
        print(f"ledger: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("ledger: interrupted; nothing more was written", file=sys.stderr)
        return 130
    except storage_errors() as exc:
        # Last resort: a storage failure that no layer below put into words.
        db = getattr(args, "db", None) or default_db()
        fault = storage_fault(exc, redact(db), "use", path=None if is_postgres(db) else Path(db))
        print(f"ledger: {one_line(fault)}", file=sys.stderr)
        return fault.exit_code
    except Exception as exc:  # one line instead of a traceback, always
        print(f"ledger: internal error ({type(exc).__name__}: {one_line(exc)[:300]}); "
              "please report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
