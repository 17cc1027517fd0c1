"""`ledger serve`, `ledger report` and `ledger service token add`.

Registered with the other subcommands, but nothing web-related is imported
until `serve` runs: a base install keeps every other command, and `report`
and `token add` need only the standard library.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.config import tokens_file
from ledger.errors import InputError

Common = Callable[..., None]


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ledger.service.server import serve
    except ImportError as exc:
        raise InputError(f"`ledger serve` needs the service extra: pip install 'deploy-ledger[service]' "
                         f"({exc})") from None
    from ledger.service.config import ServiceConfig
    from ledger.store import default_db

    if args.tokens is None:
        raise InputError("`ledger serve` needs --tokens FILE (create one with "
                         "`ledger service token add NAME --tokens FILE`)")
    from ledger.service.tokens import read_tokens

    read_tokens(args.tokens)  # a bad file is refused now, not at the first request
    from ledger.api import Ledger

    Ledger.open(args.db or default_db(), args.key).close()  # no ledger, no key: one line, exit 2
    config = ServiceConfig(
        db=str(args.db or default_db()), key=str(args.key) if args.key else None,
        projections=args.projections, tokens=str(Path(args.tokens).resolve()),
        max_body_bytes=args.max_body_bytes, max_streams_per_token=args.max_streams_per_token,
        keepalive_s=args.keepalive, stream_lease_s=args.stream_lease)
    return serve(config, args.listen, workers=args.workers, shutdown_timeout=args.shutdown_timeout,
                 forwarded_allow_ips=args.forwarded_allow_ips)


def cmd_report(args: argparse.Namespace) -> int:
    from ledger.api import Ledger
    from ledger.service.report import gather, render_html
    from ledger.store import default_db
    from projections.runner import Projections

    kept = None
    if args.checkpoint:
        try:
            kept = Path(args.checkpoint).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read checkpoint {args.checkpoint}: {exc.strerror}") from None
    from ledger.errors import KeyFileError

    try:  # with the signing key the report signs a fresh checkpoint; without, it only verifies
        ledger = Ledger.open(args.db or default_db(), args.key, writable=True)
    except KeyFileError:
        ledger = Ledger.open(args.db or default_db(), args.key, writable=False)
    with ledger, Projections(ledger.store, notice=lambda m: print(f"ledger: {m}", file=sys.stderr)) as views:
        data = gather(ledger, views, args.fleet, checkpoint=kept)
    page = render_html(data)
    if args.out == "-":
        sys.stdout.write(page)
    else:
        Path(args.out).write_text(page, encoding="utf-8")
        print(f"wrote {args.out}: {len(data.changes)} changes, {data.verification.text}")
    return 0 if data.verification.ok else 1


def cmd_token_add(args: argparse.Namespace) -> int:
    from ledger.service.tokens import add_token, parse_roles

    secret = add_token(args.tokens, args.name, parse_roles(args.role))
    print(secret)
    print(f"ledger: stored the hash of token {args.name!r} ({args.role}) in {args.tokens}; "
          "the token is shown only now", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    p = sub.add_parser("serve", help="serve the ledger over HTTP (reads, commands, live feed, report)")
    common(p, fleet=False)
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0: any free port)")
    p.add_argument("--tokens", default=tokens_file(),
                   help="file of name:roles:sha256hex lines (env LEDGER_TOKENS)")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL: any number)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--max-streams-per-token", type=int, default=64)
    p.add_argument("--keepalive", type=float, default=15.0, help="seconds between stream keep-alives")
    p.add_argument("--stream-lease", type=float, default=30.0,
                   help="PostgreSQL: seconds a killed server's streams still count against their token")
    p.add_argument("--shutdown-timeout", type=int, default=5,
                   help="on SIGTERM, seconds to let requests and streams finish")
    p.add_argument("--forwarded-allow-ips", default=None,
                   help="trust X-Forwarded-* from these proxy addresses (behind a TLS proxy)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("report", help="write the compliance report of a fleet as one HTML file")
    common(p)
    p.add_argument("--out", required=True, help="output file (- for stdout)")
    p.add_argument("--checkpoint", default=None, help="a kept checkpoint to prove the ledger extends")
    p.set_defaults(handler=cmd_report)

    service = sub.add_parser("service", help="service administration (tokens)")
    service_sub = service.add_subparsers(dest="service_command", required=True,
                                         parser_class=type(service))
    token = service_sub.add_parser("token", help="bearer tokens for `ledger serve`")
    token_sub = token.add_subparsers(dest="token_command", required=True, parser_class=type(service))
    p = token_sub.add_parser("add", help="create a token: prints it once, stores its hash")
    p.add_argument("name")
    p.add_argument("--tokens", required=True, help="the tokens file (created if missing)")
    p.add_argument("--role", default="read", help="read, write or read,write (default read)")
    p.set_defaults(handler=cmd_token_add)
