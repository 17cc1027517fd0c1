"""`ledger append --file F.jsonl`: a resumable, idempotent import of a JSON-lines file.

Every line has a stable identity: the file's SHA-256 and its line number,
stored in the record it becomes (`input_file`, `input_line`); a decision line
without an `idempotency_key` of its own gets one made of the same two. Lines
are written in order, facts a group at a time (each group one or more
transactions), decisions through the gate one by one, so whatever a killed run
left in the ledger is a prefix of the file: a re-run finds the last line
already in (one scan of the fleet's stored bytes) and goes on after it,
writing nothing twice. The command shows progress on a terminal and, when it
is interrupted or fails, says where it stopped and that running it again
resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from ledger.api import Ledger, Receipt
from ledger.cli_decide import open_for, report
from ledger.decide import Command, Meta, Rollback, check_well_formed, command_event
from ledger.encoding import parse_record
from ledger.errors import InputError, LedgerError, RecordError
from ledger.events import EVENT_TYPES
from ledger.gate import command_from_record

#: Fact lines written per `append_many` call: large enough to keep its signing
#: pipeline busy, small enough that progress and a resume point come often.
GROUP = 10_000


@dataclass(frozen=True)
class Line:
    """One line of the input file: where it is, and the record it asks for."""

    number: int
    body: dict[str, Any]


@dataclass(frozen=True)
class InputFile:
    """The file's identity (its SHA-256) and its non-blank lines, each parsed and checked."""

    path: Path
    digest: str
    lines: list[Line]

    @classmethod
    def read(cls, path: Path) -> InputFile:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        lines = [Line(number, parse_record(raw.rstrip(b"\r"), f"{path} line {number}"))
                 for number, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
        if not lines:
            raise RecordError(f"{path} holds no records")
        return cls(path, hashlib.sha256(data).hexdigest(), lines)

    def key(self, line: Line) -> str:
        """A decision line's idempotency key when it names none: the file and its place in it."""
        return f"file:{self.digest[:32]}:{line.number}"


def _is_gated(body: dict[str, Any]) -> bool:
    event_type = EVENT_TYPES.get(str(body.get("event")))
    return event_type is not None and event_type.gated


def _marked(body: dict[str, Any], source: InputFile, line: Line) -> dict[str, Any]:
    return {**body, "input_file": source.digest, "input_line": line.number}


def lines_already_in(ledger: Ledger, fleet: str, source: InputFile) -> int:
    """The last line of `source` the fleet already holds (0 if none): what a re-run skips."""
    return last_line_in(ledger, fleet, source)[0]


def last_line_in(ledger: Ledger, fleet: str, source: InputFile) -> tuple[int, Receipt | None]:
    """The last line of `source` the fleet holds, with the receipt of its record (0, None if none)."""
    if fleet not in ledger.fleets():
        return 0, None
    marker = b'"input_file":"' + source.digest.encode() + b'"'
    last, receipt = 0, None
    for data in ledger.raw_records(fleet):
        if marker in data:
            record = orjson.loads(data)
            number = record.get("input_line")
            if isinstance(number, int) and number > last:
                last, receipt = number, Receipt(fleet, int(record["seq"]), str(record["hash"]))
    return last, receipt


def plan(source: InputFile, fleet: str) -> list[Command | list[Line]]:
    """Decisions as commands and runs of fact lines between them; every line checked first."""
    steps: list[Command | list[Line]] = []
    for line in source.lines:
        where = f"{source.path} line {line.number}"
        if _is_gated(line.body):
            try:
                command = command_from_record(fleet, _marked(line.body, source, line))
                if command.meta.idempotency_key is None:
                    meta = command.meta
                    command = _with_key(command, Meta(meta.actor, meta.reason, source.key(line), meta.extra))
                check_well_formed(command)
            except InputError as exc:
                raise RecordError(f"{where}: {exc}") from None
            steps.append(command)
            continue
        Ledger.validate(_marked(line.body, source, line), where)
        if steps and isinstance(steps[-1], list):
            steps[-1].append(line)
        else:
            steps.append([line])
    return steps


def _with_key(command: Command, meta: Meta) -> Command:
    if isinstance(command, Rollback):
        request = replace(command.request, idempotency_key=meta.idempotency_key)
        return replace(command, request=request, meta=meta)
    return replace(command, meta=meta)


class Progress:
    """A one-line bar on a terminal's stderr; silent when stderr is piped."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if self.enabled and self.total:
            percent = done * 100 // self.total
            sys.stderr.write(f"\rappending [{'#' * (percent // 4):<25}] {percent:3d}% {done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")


def _groups(lines: list[Line]) -> Iterator[list[Line]]:
    for start in range(0, len(lines), GROUP):
        yield lines[start:start + GROUP]


_stop_requested: list[bool] = [False]


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends the run at the next group boundary, so "where it stopped" is exact."""
    _stop_requested[0] = True


def append_file(args: argparse.Namespace, path: Path) -> int:
    """Append the file's lines after the last one the fleet already holds; say where it stopped."""
    source = InputFile.read(path)
    steps = plan(source, args.fleet)
    keys = [step.meta.idempotency_key for step in steps if not isinstance(step, list)]
    repeated = sorted({key for key in keys if key and keys.count(key) > 1})
    if repeated:
        raise RecordError(f"idempotency key {repeated[0]!r} is used by more than one decision in {path}")
    _stop_requested[0] = False
    previous = signal.signal(signal.SIGTERM, _terminated)
    last_line, last_receipt = 0, None
    progress = Progress(len(source.lines))
    try:
        with open_for(args) as app:
            skip = lines_already_in(app.ledger, args.fleet, source)
            for step in steps:
                if not isinstance(step, list):
                    app.service.check_key(args.fleet, step)  # a key another command used: exit 2 first
            written = skipped = 0
            for step in steps:
                if isinstance(step, list):
                    fresh = [line for line in step if line.number > skip]
                    skipped += len(step) - len(fresh)
                    for group in _groups(fresh):
                        receipts: list[Receipt] = app.ledger.append_many(
                            args.fleet, [_marked(line.body, source, line) for line in group])
                        last_line, last_receipt = group[-1].number, receipts[-1]
                        written += len(group)
                        progress(written + skipped)
                        if _stop_requested[0]:
                            raise KeyboardInterrupt
                    continue
                outcome = app.service.submit(args.fleet, step)  # a decision already in replays
                code = report(outcome, command_event(step), step.meta.idempotency_key)
                last_receipt = outcome.receipt
                if code:
                    progress.close()
                    print(f"ledger: stopped at a refused decision; {_where(last_line, last_receipt)}",
                          file=sys.stderr)
                    return code
                written += 0 if outcome.replayed else 1
            progress.close()
    except KeyboardInterrupt:
        progress.close()
        where = _where_recorded(args, source, last_line, last_receipt)
        print(f"ledger: {path}: interrupted; {where}; run the same command again to resume",
              file=sys.stderr)
        return 130
    except LedgerError as exc:  # one line: the cause, then where the run stopped
        progress.close()
        where = _where_recorded(args, source, last_line, last_receipt)
        exc.args = (f"{exc}; {path}: {where}; run the same command again to resume",)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    head = f", head {last_receipt}" if last_receipt is not None else ""
    print(f"appended {written} record(s) from {path} ({len(source.lines)} line(s), "
          f"{skipped} already in the ledger){head}")
    return 0


def _where_recorded(args: argparse.Namespace, source: InputFile, line: int,
                    receipt: Receipt | None) -> str:
    """Where the run stopped, read back from the ledger.

    An interrupt can land while a group's transaction commits, so what this
    process last saw acknowledged may be one group short of what is stored;
    the ledger is the truth. If it cannot be read (the store is what failed),
    what was acknowledged is the best answer left.
    """
    try:
        ledger = Ledger.open(args.db, writable=False, read_only=False)
    except (LedgerError, OSError, KeyboardInterrupt):
        return _where(line, receipt)
    try:
        stored_line, stored_receipt = last_line_in(ledger, args.fleet, source)
    except (LedgerError, OSError, KeyboardInterrupt):
        return _where(line, receipt)
    finally:
        ledger.close()
    if stored_line >= line and stored_receipt is not None:
        return _where(stored_line, stored_receipt)
    return _where(line, receipt)


def _where(line: int, receipt: Receipt | None) -> str:
    if receipt is None:
        return "nothing new was written"
    return f"written through line {line} ({receipt})" if line else f"last written {receipt}"
