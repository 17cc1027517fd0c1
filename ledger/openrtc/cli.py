"""`ledger import-openrtc FILE... [--skip-bad] [--worker ID]`: OpenRTC audit logs into the ledger.

A thin shell over `ledger.openrtc.importer`; errors are `ledger.errors`
exceptions that `ledger.cli.main` maps to exit codes (a bad line without
`--skip-bad`: 2, nothing written). It never imports `openrtc` itself, so the
`ledger` command stays quick to start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.app import open_app
from ledger.cli_decide import actor_signer, add_reporter_options, notice, reporter_of
from ledger.openrtc.importer import ImportReport, import_files
from ledger.openrtc.mapping import REQUESTABLE_EVENTS

Common = Callable[..., None]


def cmd_import_openrtc(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    reporter = reporter_of(args)
    requester = actor_signer(args)
    with open_app(args.db, args.key, notice=notice) as app:
        report = import_files(app.ledger, args.fleet, paths, worker=args.worker, actor=args.actor,
                              skip_bad=args.skip_bad, service=app.service,
                              may_request=args.may_request,
                              reporter=reporter.load() if reporter is not None else None,
                              requester=requester)
    _print_report(report, args.fleet)
    return 0


def _print_report(report: ImportReport, fleet: str) -> None:
    for bad in report.bad:
        print(f"ledger: skipped bad line: {bad}", file=sys.stderr)
    for gap in report.gaps:
        print(f"ledger: gap: {gap}", file=sys.stderr)
    for note in report.late_starts:
        print(f"ledger: note: {note}", file=sys.stderr)
    print(f"read {report.events} OpenRTC event(s) and {report.sink_records} sink record(s); "
          f"{report.ignored_lines} other log line(s) passed over, {len(report.bad)} bad line(s) skipped")
    receipts = report.receipts
    where = f" (seq {receipts[0].seq}..{receipts[-1].seq})" if receipts else ""
    print(f"imported {report.imported} record(s) and {report.gaps_recorded} gap record(s) into fleet "
          f"{fleet}{where}; {report.duplicates} already in the ledger")
    if receipts:
        print(f"head {receipts[-1]}")


def register(subparsers: argparse._SubParsersAction[Any], common: Common) -> None:
    """Add `import-openrtc` to `ledger`."""
    p = subparsers.add_parser(
        "import-openrtc", help="import OpenRTC audit logs (openrtc.audit lines or JSON lines), once",
        description="Reads `audit {json}` lines of the openrtc.audit logger (any prefix) and JSON-lines "
                    "files of OpenRTC records or sink spools. Files are read in the order given (give "
                    "rotated logs oldest first). Re-importing adds nothing.")
    common(p)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--skip-bad", action="store_true",
                   help="import the good lines even if some lines are bad (each is reported)")
    p.add_argument("--worker", default=None,
                   help="the worker that wrote these logs: its drains, starts and exits are recorded "
                        "as its facts (without it every event is kept as audit.external)")
    p.add_argument("--actor", default="ledger-import",
                   help="actor of the gap records (default ledger-import)")
    p.add_argument("--may-request", action="append", default=[], choices=sorted(REQUESTABLE_EVENTS),
                   help="a decision these logs' pools may request: validated by the gate and recorded "
                        "as the ledger's own decision, or refused (default: kept as audit.external)")
    add_reporter_options(p)
    p.add_argument("--actor-key", default=argparse.SUPPRESS, metavar="PATH",
                   help="the private key of --actor that signs the requests these logs' pools made "
                        "(env LEDGER_ACTOR_KEY; an enforced ledger refuses them unsigned)")
    p.set_defaults(handler=cmd_import_openrtc)
