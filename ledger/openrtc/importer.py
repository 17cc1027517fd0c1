"""Import existing OpenRTC audit logs into a fleet's chain, once.

Two kinds of input, told apart per file by its first non-blank line:

- a log: lines of the `openrtc.audit` logger, `audit {json}` after whatever
  prefix the application's log format adds. Other lines (the rest of the
  application's log) are passed over; a line with the `audit {` marker that
  does not hold an OpenRTC record is bad.
- JSON lines (the first line starts with `{`): OpenRTC's flat records
  (`to_dict()` as a custom sink wrote them), or ledger records a
  `LedgerAuditSink` spooled (they carry `source_instance`/`source_digest`).
  Every non-blank line must be one of those.

A bad line is reported with its file and line number, and nothing is imported
unless `skip_bad` is set. OpenRTC's `seq` restarts at 1 in every process, so
the events of all files, in the order given, are split into process runs: a
run ends where `seq` is 1 again or repeats. A run's instance id is derived
from its first event, so importing the same file again, or a longer copy of
it, names the same instance. Missing numbers inside a run are reported and
recorded as `audit.gap` (events were lost); a run that starts above 1 is only
reported (its start may be in an older, rotated file). Each record is
identified by `(source_instance, source_digest)`; those the fleet already
holds are skipped, so a re-import adds nothing (the first import of an event
decides how it is recorded).

A log does not say which worker wrote it. Given `worker`, worker-level facts
(a drain, a start, an exit) are recorded as that worker's, exactly as the sink
records them; without it every event is kept as `audit.external`, which the
projections and the executor ignore: a historical drain of an unnamed pool
must not show up as a live draining worker in the fleet's state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from ledger.actors import ActorSigner
from ledger.api import Ledger, Receipt
from ledger.encoding import check_values
from ledger.errors import InputError, LedgerError, RecordError
from ledger.gate import FleetService
from ledger.openrtc.ledger_io import recorded_identities, write_in_order
from ledger.openrtc.mapping import (
    SOURCE,
    TRUSTED_EVENTS,
    Source,
    SourceEvent,
    SourceEventError,
    gap_record,
    identity,
    to_record,
)

MARKER = re.compile(r"(?:^|[\s:\]|>])audit (\{.*)$")
MAX_BAD_SHOWN = 20
CHUNK = 200
UNNAMED = "imported without --worker: the log does not say which worker; kept, not acted on"


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Parsed:
    """One record read from a file: an OpenRTC event, or a record a sink wrote."""

    path: str
    line: int
    event: SourceEvent | None = None
    record: dict[str, Any] | None = None


@dataclass
class Gap:
    path: str
    line: int
    instance: str
    first: int
    last: int

    def __str__(self) -> str:
        count = self.last - self.first + 1
        return (f"{self.path} line {self.line}: OpenRTC seq {self.first}..{self.last} missing "
                f"({count} event(s) lost) in process run {self.instance}")


@dataclass
class ImportReport:
    """What an import found and did."""

    events: int = 0
    sink_records: int = 0
    imported: int = 0
    duplicates: int = 0
    gaps: list[Gap] = field(default_factory=list)
    gaps_recorded: int = 0
    late_starts: list[str] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    ignored_lines: int = 0
    receipts: list[Receipt] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SourceEventError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SourceEventError(f"a JSON {type(value).__name__}, not an object")
    return value


def _from_json_line(path: str, number: int, text: str) -> Parsed:
    value = _json_object(text)
    if "source_instance" in value and "seq" not in value:
        if value.get("source") != SOURCE or identity(value) is None:
            raise SourceEventError("a sink record without source/source_instance/source_digest")
        try:
            check_values(value)
            Ledger.validate(value)
        except LedgerError as exc:
            raise SourceEventError(f"a sink record the ledger refuses: {exc}") from None
        return Parsed(path, number, record=value)
    return Parsed(path, number, event=SourceEvent.from_flat(value))


def read_file(path: Path, bad: list[BadLine]) -> tuple[list[Parsed], int]:
    """Records of one file in line order, and how many non-audit log lines were passed over."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    name = str(path)
    lines = raw.split(b"\n")
    first = next((line.strip() for line in lines if line.strip()), b"")
    json_lines = first.startswith(b"{")
    found: list[Parsed] = []
    ignored = 0
    for number, data in enumerate(lines, 1):
        try:
            text = data.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            bad.append(BadLine(name, number, f"not UTF-8 (byte 0x{data[exc.start]:02x})"))
            continue
        if not text.strip():
            continue
        try:
            if json_lines:
                found.append(_from_json_line(name, number, text.strip()))
                continue
            match = MARKER.search(text)
            if match is None:
                ignored += 1
                continue
            found.append(Parsed(name, number, event=SourceEvent.from_flat(_json_object(match.group(1)))))
        except SourceEventError as exc:
            bad.append(BadLine(name, number, str(exc)))
    return found, ignored


# -- process runs and gaps -------------------------------------------------------------------


@dataclass
class Run:
    """The events of one OpenRTC process, as the logs hold them."""

    items: list[Parsed] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)

    @property
    def instance(self) -> str:
        first = self.items[0].event
        assert first is not None
        return f"import/{first.digest[:24]}"


def split_runs(items: Iterable[Parsed]) -> list[Run]:
    """A new run where `seq` is 1 again or repeats (a new process's AuditLog)."""
    runs: list[Run] = []
    for item in items:
        assert item.event is not None
        seq = item.event.seq
        if not runs or seq in runs[-1].seqs or (seq == 1 and runs[-1].items):
            runs.append(Run())
        runs[-1].items.append(item)
        runs[-1].seqs.add(seq)
    return runs


def find_gaps(run: Run) -> list[Gap]:
    """Missing seq numbers between the lowest and highest of a run, at the line after them."""
    ordered = sorted(run.seqs)
    line_of: dict[int, Parsed] = {}
    for item in run.items:
        assert item.event is not None
        line_of.setdefault(item.event.seq, item)
    gaps = []
    for low, high in pairwise(ordered):
        if high > low + 1:
            where = line_of[high]
            gaps.append(Gap(where.path, where.line, run.instance, low + 1, high - 1))
    return gaps


# -- importing ----------------------------------------------------------------------------------


def plan_import(paths: Sequence[Path], *, worker: str | None = None, actor: str = "ledger-import",
                skip_bad: bool = False, trusted: Iterable[str] = TRUSTED_EVENTS,
                may_request: Iterable[str] = ()) -> tuple[list[dict[str, Any]], ImportReport]:
    """Read every file and build the records to append, in order (nothing written).

    Raises `RecordError` naming every bad line (up to `MAX_BAD_SHOWN`) unless `skip_bad`.
    """
    report = ImportReport()
    items: list[Parsed] = []
    for path in paths:
        found, ignored = read_file(path, report.bad)
        items.extend(found)
        report.ignored_lines += ignored
    if report.bad and not skip_bad:
        shown = "; ".join(str(b) for b in report.bad[:MAX_BAD_SHOWN])
        more = f" (and {len(report.bad) - MAX_BAD_SHOWN} more)" if len(report.bad) > MAX_BAD_SHOWN else ""
        raise RecordError(f"{len(report.bad)} bad line(s), nothing imported (--skip-bad imports the rest): "
                          f"{shown}{more}")
    bodies: list[dict[str, Any]] = []
    events = [item for item in items if item.event is not None]
    acted_on = frozenset(trusted) if worker else frozenset()
    for run in split_runs(events):
        source = Source(worker, run.instance)
        gaps = {gap.first: gap for gap in find_gaps(run)}
        report.gaps.extend(gaps.values())
        low = min(run.seqs)
        if low > 1:
            head = run.items[0]
            report.late_starts.append(f"{head.path} line {head.line}: process run {run.instance} starts "
                                      f"at OpenRTC seq {low} (earlier events are in another file, or lost)")
        emitted_gaps: set[int] = set()
        for item in run.items:
            assert item.event is not None
            for first, gap in gaps.items():
                if first not in emitted_gaps and item.event.seq > gap.last:
                    emitted_gaps.add(first)
                    bodies.append(gap_record(source, gap.first, gap.last, actor=actor,
                                             reason=f"OpenRTC seq {gap.first}..{gap.last} missing "
                                                    f"before {gap.path} line {gap.line}"))
            bodies.append(to_record(item.event, source, acted_on, untrusted_reason=UNNAMED,
                                    may_request=may_request))
            report.events += 1
    for item in items:
        if item.record is not None:
            bodies.append(item.record)
            report.sink_records += 1
    return bodies, report


def import_files(ledger: Ledger, fleet: str, paths: Sequence[Path], *, worker: str | None = None,
                 actor: str = "ledger-import", skip_bad: bool = False,
                 service: FleetService | None = None, may_request: Iterable[str] = (),
                 reporter: ActorSigner | None = None, requester: ActorSigner | None = None,
                 ) -> ImportReport:
    """Append what the files hold and the fleet does not, in order; return what happened.

    Decisions the files' pools requested (`may_request`) pass `service`, the gate,
    signed by `requester` if given (an enforced ledger refuses them unsigned). With
    a `reporter`, every fact is signed in its name and checked by the gate too
    (`ledger.reporter`): a fact about a worker outside its binding is refused and
    recorded.
    """
    bodies, report = plan_import(paths, worker=worker, actor=actor, skip_bad=skip_bad,
                                 may_request=may_request)
    seen = recorded_identities(ledger, fleet)
    fresh = []
    for body in bodies:
        key = identity(body)
        if key is not None and key in seen:
            report.duplicates += 1
            continue
        if key is not None:
            seen.add(key)
        fresh.append(body)
    report.gaps_recorded = sum(1 for body in fresh if body["event"] == "audit.gap")
    report.imported = len(fresh) - report.gaps_recorded
    if fresh:
        report.receipts = write_in_order(ledger, service, fleet, fresh, CHUNK, reporter=reporter,
                                         requester=requester)
    return report
