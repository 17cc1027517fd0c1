"""The compliance report: one self-contained HTML page per fleet.

A reviewer asks "which version ran when, who changed it and why, what was
refused, were calls dropped, and can I trust this?". The page answers from
the ledger alone: a timeline drawn server-side as SVG (versions as bands,
deploys, rollbacks with their reason and actor, refusals, drains and dropped
calls as marks), the change population (every decision and refusal) as a
table with a CSV download in a `data:` URI, and the verification status
with the signed checkpoint it was checked against. Inline CSS and SVG, no
script, no network: the file can be mailed, archived and opened offline.
Standard library only, so `ledger report` runs on a base install.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

from ledger.api import Ledger
from ledger.errors import LedgerError, UnknownFleetError
from ledger.events import GATED_EVENTS
from projections.runner import Projections

#: Columns of the change population, in the table and the CSV.
COLUMNS = ("seq", "timestamp", "event", "version", "from_version", "actor", "reason", "result",
           "check", "hash")
MOVES = {"deployment.started": "deploy", "deployment.rolled_back": "rollback"}
WIDTH, LEFT, RIGHT = 1000, 90, 20
LANES = {"deploy": "deploys", "rollback": "rollbacks", "refusal": "refusals", "drain": "drains",
         "dropped": "dropped calls"}
PALETTE = ("#4e79a7", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#bab0ac")


def package_version() -> str:
    try:
        return metadata.version("deploy-ledger")
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class Band:
    """A version running the fleet (moving to it, or on it) from one time to the next."""

    version: str
    start: str
    end: str
    how: str  # deploy | rollback


@dataclass(frozen=True)
class Mark:
    """One event on the timeline."""

    kind: str  # deploy | rollback | refusal | drain | dropped | completed | failed
    seq: int
    timestamp: str
    label: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    text: str
    checkpoint: str | None


@dataclass
class ReportData:
    fleet: str
    generated: str
    head_seq: int
    current: str | None
    bands: list[Band] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    verification: Verification = Verification(False, "not checked", None)


def gather(ledger: Ledger, views: Projections | None, fleet: str, *,
           checkpoint: str | None = None) -> ReportData:
    """Everything the report shows, read from the ledger (and its views for the statuses).

    `checkpoint` is a kept checkpoint to prove the ledger extends; without it
    the report signs a fresh one after verifying (when the key is at hand).
    """
    if fleet not in ledger.fleets():
        raise UnknownFleetError(f"fleet {fleet!r} has no records")
    records = list(ledger.records(fleet))
    data = ReportData(fleet, records[-1]["timestamp"] if records else "", records[-1]["seq"], None)
    _timeline(data, records)
    data.changes = [{c: r.get(c, "") for c in COLUMNS} for r in records if r["event"] in GATED_EVENTS]
    if views is not None:
        history = views.history(fleet)
        data.current = history.get("current")
        data.versions = list(history.get("versions", []))
    data.verification = _verify(ledger, fleet, checkpoint)
    return data


def _timeline(data: ReportData, records: list[dict[str, Any]]) -> None:
    open_band: tuple[str, str, str] | None = None
    for r in records:
        event, seq, ts = r["event"], int(r["seq"]), r["timestamp"]
        version, actor = r.get("version", ""), r.get("actor", "")
        if event in MOVES:
            if open_band is not None:
                data.bands.append(Band(open_band[0], open_band[1], ts, open_band[2]))
            open_band = (version, ts, MOVES[event])
            if event == "deployment.rolled_back":
                label = (f"rollback {r.get('from_version')} \u2192 {version} by {actor}: "
                         f"{r.get('reason', '')}")
            else:
                label = f"deploy {version} by {actor}"
            data.marks.append(Mark(MOVES[event], seq, ts, label))
        elif event in ("rollback.rejected", "command.rejected"):
            what = r.get("command", "rollback")
            data.marks.append(Mark("refusal", seq, ts, f"{what} refused ({r.get('check')}) for {actor}"))
        elif event == "deployment.drain_started":
            data.marks.append(Mark("drain", seq, ts, f"drain {r.get('worker_id', 'fleet')} ({version})"))
        elif event == "worker.exited" and int(r.get("active_sessions", 0) or 0) > 0:
            data.marks.append(Mark("dropped", seq, ts, f"{r.get('worker_id')} exited dropping "
                                                       f"{r['active_sessions']} call(s)"))
        elif event in ("deployment.completed", "rollback.completed"):
            data.marks.append(Mark("completed", seq, ts, f"{event} {version}"))
        elif event in ("deployment.failed", "rollback.failed"):
            data.marks.append(Mark("failed", seq, ts, f"{event} {version}: {r.get('reason', '')}"))
    if open_band is not None and records:
        data.bands.append(Band(open_band[0], open_band[1], records[-1]["timestamp"], open_band[2]))


def _verify(ledger: Ledger, fleet: str, kept: str | None) -> Verification:
    try:
        report = ledger.verify(fleets=[fleet], checkpoint=kept, roots=True)
    except LedgerError as exc:
        return Verification(False, f"FAILED: {exc}", kept)
    chain = report.chains[0]
    text = f"verified {chain.count} records of fleet {fleet}, head {chain.head}"
    if kept is not None:
        return Verification(True, f"{text}; extends the kept checkpoint of {chain.checkpoint_size} records",
                            kept)
    try:
        note: str | None = ledger.checkpoint_of(report)  # of the history just verified
    except LedgerError:
        note = None  # no signing key here: the status stands on the verification alone
    return Verification(True, text, note)


# -- rendering ----------------------------------------------------------------------------------


def render_csv(data: ReportData) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in data.changes:
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue()


def _when(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _svg(data: ReportData) -> str:
    stamps = [_when(m.timestamp) for m in data.marks] + [_when(b.start) for b in data.bands] + \
        [_when(b.end) for b in data.bands]
    if not stamps:
        return '<p class="empty">No moves recorded yet.</p>'
    t0, t1 = min(stamps), max(stamps)
    span = (t1 - t0) or 1.0

    def x(ts: str) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (_when(ts) - t0) / span

    colours: dict[str, str] = {}
    rows = ("deploy", "rollback", "refusal", "drain", "dropped")
    label_y = 130 + 26 * len(rows)
    height = label_y + 18 * sum(1 for m in data.marks if m.kind == "rollback") + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of versions on {data.fleet}">',
             '<text x="4" y="44" class="lane">version</text>']
    for band in data.bands:
        colour = colours.setdefault(band.version, PALETTE[len(colours) % len(PALETTE)])
        x0, x1 = x(band.start), x(band.end)
        w = max(x1 - x0, 3.0)
        name = html.escape(band.version)
        parts.append(f'<g class="band {band.how}" data-version="{name}">'
                     f'<title>{name} from {band.start} to {band.end} ({band.how})</title>'
                     f'<rect x="{x0:.1f}" y="28" width="{w:.1f}" height="26" fill="{colour}" rx="3"/>'
                     f'<text x="{x0 + 4:.1f}" y="46" class="bandlabel">{name}</text></g>')
    for i, row in enumerate(rows):
        y = 90 + 26 * i
        parts.append(f'<text x="4" y="{y + 4}" class="lane">{LANES[row]}</text>'
                     f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" class="rule"/>')
    n_rollback = 0
    for mark in data.marks:
        if mark.kind not in rows:
            continue
        y = 90 + 26 * rows.index(mark.kind)
        mx = x(mark.timestamp)
        title = html.escape(f"seq {mark.seq} {mark.timestamp}: {mark.label}")
        up = f"{mx:.1f},{y - 7} {mx - 6:.1f},{y + 5} {mx + 6:.1f},{y + 5}"
        down = f"{mx:.1f},{y + 7} {mx - 6:.1f},{y - 5} {mx + 6:.1f},{y - 5}"
        shape = {"deploy": f'<polygon points="{up}"/>',
                 "rollback": f'<polygon points="{down}"/>',
                 "refusal": f'<path d="M{mx - 5:.1f},{y - 5}L{mx + 5:.1f},{y + 5}M{mx - 5:.1f},{y + 5}'
                            f'L{mx + 5:.1f},{y - 5}"/>',
                 "drain": f'<rect x="{mx - 4:.1f}" y="{y - 4}" width="8" height="8"/>',
                 "dropped": f'<circle cx="{mx:.1f}" cy="{y}" r="5"/>'}[mark.kind]
        parts.append(f'<g class="mark {mark.kind}" data-seq="{mark.seq}"><title>{title}</title>{shape}</g>')
        if mark.kind == "rollback":
            ly = label_y + 18 * n_rollback
            n_rollback += 1
            anchor = "end" if mx > WIDTH / 2 else "start"  # keep the label inside the picture
            parts.append(f'<text x="{mx:.1f}" y="{ly}" class="rollback-label" data-seq="{mark.seq}" '
                         f'text-anchor="{anchor}">'
                         f'seq {mark.seq}: {html.escape(mark.label)}</text>')
    parts.append(f'<text x="{LEFT}" y="{height - 4}" class="axis">{html.escape(_short(t0))}</text>'
                 f'<text x="{WIDTH - RIGHT}" y="{height - 4}" class="axis" text-anchor="end">'
                 f'{html.escape(_short(t1))}</text></svg>')
    return "".join(parts)


def _short(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}
pre{background:#f6f8fa;padding:8px;font-size:12px;overflow:auto}
svg .lane{font-size:11px;fill:#555}svg .rule{stroke:#ddd}svg .bandlabel{font-size:12px;fill:#fff}
svg .deploy{fill:#4e79a7}svg .rollback{fill:#e15759}svg .refusal{stroke:#b42318;stroke-width:2}
svg .drain{fill:#f28e2b}svg .dropped{fill:#b42318}svg .rollback-label{font-size:12px;fill:#b42318}
svg .axis{font-size:11px;fill:#555}svg .band.rollback rect{stroke:#e15759;stroke-width:2}
"""


def _cell(column: str, value: Any) -> str:
    text = html.escape(str(value))
    if column == "hash" and len(text) > 12:  # the CSV has it whole
        return f'<td title="{text}"><code>{text[:12]}\u2026</code></td>'
    return f"<td>{text}</td>"


def render_html(data: ReportData, *, csv_href: str | None = None) -> str:
    """The page. `csv_href` adds a link to the served CSV beside the embedded one."""
    e = html.escape
    csv_text = render_csv(data)
    data_uri = "data:text/csv;base64," + base64.b64encode(csv_text.encode()).decode()
    v = data.verification
    status = f'<p class="{"ok" if v.ok else "bad"}" id="verification">{e(v.text)}</p>'
    note = (f"<p>Checked against this signed checkpoint (keep it; `ledger verify --checkpoint` proves "
            f"a later ledger extends it):</p><pre id=\"checkpoint\">{e(v.checkpoint)}</pre>"
            if v.checkpoint else "<p>No checkpoint: the signing key was not at hand.</p>")
    versions = "".join(
        f"<tr><td>{e(str(x.get('version')))}</td><td>{e(str(x.get('status')))}</td>"
        f"<td>{'yes' if x.get('good') else 'no'}</td></tr>" for x in data.versions)
    rows = "".join("<tr>" + "".join(_cell(c, row[c]) for c in COLUMNS) + "</tr>" for row in data.changes)
    served = f' or <a href="{e(csv_href)}">from the server</a>' if csv_href else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Compliance report: fleet {e(data.fleet)}</title><style>{_CSS}</style></head>
<body>
<h1>Compliance report: fleet {e(data.fleet)}</h1>
<p>Head seq {data.head_seq} at {e(data.generated)}; current version {e(str(data.current or '-'))}.
Generated by deploy-ledger {e(package_version())}.</p>
<h2>Verification</h2>{status}{note}
<h2>Timeline</h2>
{_svg(data)}
<h2>Versions</h2>
<table id="versions"><tr><th>version</th><th>status</th><th>good</th></tr>{versions}</table>
<h2>Change population ({len(data.changes)} decisions and refusals)</h2>
<p><a id="csv" download="{e(data.fleet)}-changes.csv" href="{data_uri}">Download as CSV</a>{served}</p>
<table id="changes"><tr>{''.join(f'<th>{c}</th>' for c in COLUMNS)}</tr>{rows}</table>
</body></html>
"""
