"""Session outcomes per version and per time window, folded from worker reports in O(1) each.

Workers report cumulative counters of their ended sessions (`sessions_ok`,
`sessions_error`, `sessions_dropped` on `worker.sessions` and `worker.exited`).
Cumulative counters make reports idempotent: a lost report is made good by
the next, a repeated one adds nothing. This read model turns them into
deltas per worker (the increase since that worker's previous report; a
counter that went down means the worker's counters restarted, and its new
value is the delta) and adds each delta to its version's bucket of
`bucket_s` seconds of ledger time. A window's totals are the sum of the
buckets inside it, so folding a record costs the same at any chain length and
a window query costs at most `window / bucket_s` steps. Buckets older than
`keep_s` behind a version's newest are dropped: memory is bounded too.

It is kept in memory by whoever follows the chain (`ledger analyze`, the
watcher), which makes it trivially rebuildable from the records and keeps
its answer recomputable from the seq range an analysis names.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OUTCOME_FIELDS = ("sessions_ok", "sessions_error", "sessions_dropped")
REPORT_EVENTS = frozenset({"worker.sessions", "worker.exited"})


def ledger_seconds(timestamp: str) -> int:
    """Whole seconds since the epoch of a ledger timestamp (`YYYY-MM-DDTHH:MM:SS.ffffffZ`)."""
    return int(datetime.fromisoformat(timestamp).timestamp())


@dataclass
class Counts:
    """Sessions ended by outcome, and the first and last seq of the reports that added them."""

    ok: int = 0
    error: int = 0
    dropped: int = 0
    first_seq: int = 0
    last_seq: int = 0

    @property
    def sessions(self) -> int:
        return self.ok + self.error + self.dropped

    def add(self, ok: int, error: int, dropped: int, seq: int) -> None:
        self.ok += ok
        self.error += error
        self.dropped += dropped
        if not self.first_seq or seq < self.first_seq:
            self.first_seq = seq
        self.last_seq = max(self.last_seq, seq)

    def merge(self, other: Counts) -> None:
        if other.sessions:
            self.add(other.ok, other.error, other.dropped, other.first_seq)
            self.last_seq = max(self.last_seq, other.last_seq)

    def to_dict(self) -> dict[str, int]:
        return {"ok": self.ok, "error": self.error, "dropped": self.dropped,
                "sessions": self.sessions, "first_seq": self.first_seq, "last_seq": self.last_seq}


class SessionTotals:
    """Per-version, per-window totals of ended sessions, from one fleet's chain."""

    def __init__(self, bucket_s: int = 1, keep_s: int = 3600):
        if bucket_s < 1 or keep_s < bucket_s:
            raise ValueError("bucket_s must be >= 1 and keep_s >= bucket_s")
        self.bucket_s, self.keep_s = bucket_s, keep_s
        self.head_seq = 0
        self.head_time: int | None = None
        #: worker id -> its last cumulative (ok, error, dropped)
        self._last: dict[str, tuple[int, int, int]] = {}
        #: version -> deque of [bucket start (epoch s), Counts], oldest first
        self._buckets: dict[str, deque[tuple[int, Counts]]] = {}
        #: version -> all-time totals
        self.totals: dict[str, Counts] = {}
        #: version -> ledger time (epoch s) of its newest report that added sessions
        self.last_report: dict[str, int] = {}

    def apply(self, record: Mapping[str, Any]) -> int:
        """Fold the next record; returns the sessions it added (0 for any other record)."""
        seq = int(record.get("seq") or self.head_seq + 1)
        self.head_seq = seq
        stamp = record.get("timestamp")
        now = ledger_seconds(stamp) if isinstance(stamp, str) else self.head_time or 0
        self.head_time = now
        if record.get("event") not in REPORT_EVENTS:
            return 0
        if not any(name in record for name in OUTCOME_FIELDS):
            return 0
        worker, version = str(record.get("worker_id")), str(record.get("version"))
        before = self._last.get(worker, (0, 0, 0))
        counts = (_count(record, "sessions_ok", before[0]), _count(record, "sessions_error", before[1]),
                  _count(record, "sessions_dropped", before[2]))
        ok, error, dropped = (new - old if new >= old else new
                              for new, old in zip(counts, before, strict=True))
        self._last[worker] = counts
        added = ok + error + dropped
        if not added:
            return 0
        self.totals.setdefault(version, Counts()).add(ok, error, dropped, seq)
        start = now - now % self.bucket_s
        buckets = self._buckets.setdefault(version, deque())
        if not buckets or buckets[-1][0] < start:
            buckets.append((start, Counts()))
            while buckets and buckets[0][0] <= start - self.keep_s:
                buckets.popleft()
        buckets[-1][1].add(ok, error, dropped, seq)
        self.last_report[version] = now
        return added

    def apply_all(self, records: Iterable[Mapping[str, Any]]) -> SessionTotals:
        for record in records:
            self.apply(record)
        return self

    def window(self, version: str, seconds: int, end: int | None = None) -> Counts:
        """Sessions of `version` that ended in the `seconds` before `end` (default: its newest report).

        The window is whole buckets: those starting after `end - seconds` and not after `end`.
        """
        total = Counts()
        buckets = self._buckets.get(version)
        if not buckets:
            return total
        end = self.last_report.get(version, 0) if end is None else end
        for start, counts in reversed(buckets):
            if start > end:
                continue
            if start <= end - seconds:
                break
            total.merge(counts)
        return total


def _count(record: Mapping[str, Any], name: str, default: int) -> int:
    value = record.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
