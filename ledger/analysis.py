"""Is the version in flight worse than the last good one? A pure comparison of session outcomes.

Two metrics are compared, each as a share of ended sessions: the error rate
(`sessions_error`) and the drop rate (`sessions_dropped`). The candidate (the
version in flight, or live) is taken over the last `window_s` seconds of
ledger time; the baseline (the last-good version) over the last `window_s`
seconds in which it reported. Each metric gets a one-sided two-proportion
z-test of "the candidate's rate is higher" (pooled variance, normal
approximation), and fails only when all of these hold:

- both sides have at least `min_sessions` ended sessions (absolute floor: no
  verdict on a handful of calls, where the normal approximation is poor);
- the p-value is at most 1 - confidence;
- the candidate's rate exceeds the baseline's by at least `min_increase`
  (a practical floor: a statistically clear but tiny increase is not worth
  a rollback).

Assumptions: sessions are independent Bernoulli trials with a constant rate
within a window. Repeated evaluation (one per report) inflates the false-positive
rate; `consecutive` (failing evaluations in a row before acting) is the guard
the rule states for that.

Records hold no floats, so the rule is kept in integers (basis points) and a
snapshot states rates in parts per million and the statistic and p-value as
decimal strings; a snapshot recomputes exactly from the records it names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.errors import InputError
from projections.sessions import Counts, SessionTotals

#: The longest window: what `SessionTotals` keeps by default, so no window is silently cut short.
WINDOW_LIMIT_S = 3600

#: The rule's integer fields, as recorded in `analysis.rule_set`.
RULE_FIELDS = ("window_s", "min_sessions", "confidence_bp", "min_increase_bp", "consecutive")
METRICS = (("error_rate", "error"), ("drop_rate", "dropped"))


@dataclass(frozen=True)
class Rule:
    """When the automation may roll a version back: thresholds, sample floor, window, confidence.

    `confidence_bp` and `min_increase_bp` are basis points (9900 = 99 %;
    500 = 5 percentage points) because records hold no floats.
    """

    window_s: int = 60
    min_sessions: int = 30
    confidence_bp: int = 9900
    min_increase_bp: int = 500
    consecutive: int = 2

    @property
    def alpha(self) -> float:
        return (10_000 - self.confidence_bp) / 10_000

    def to_fields(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in RULE_FIELDS}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Rule:
        return cls(**{name: int(record[name]) for name in RULE_FIELDS if name in record})


def validate_rule(window_s: int, min_sessions: int, confidence_bp: int, min_increase_bp: int,
                  consecutive: int) -> Rule:
    """A rule with every value in its sensible range, or InputError naming the bad one."""
    checks = (
        ("--window", window_s, 1, WINDOW_LIMIT_S, "seconds"),
        ("--min-sessions", min_sessions, 10, 10_000_000, "sessions"),
        ("--confidence", confidence_bp, 5_000, 9_999, "basis points (50% to 99.99%)"),
        ("--min-increase", min_increase_bp, 0, 10_000, "basis points"),
        ("--consecutive", consecutive, 1, 1_000, "evaluations"),
    )
    for flag, value, low, high, unit in checks:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{flag} must be between {low} and {high} {unit}, not {value!r}")
    return Rule(window_s, min_sessions, confidence_bp, min_increase_bp, consecutive)


def z_test(x_base: int, n_base: int, x_new: int, n_new: int) -> tuple[float, float]:
    """One-sided two-proportion z-test of "new rate > base rate": (z, p-value)."""
    if not n_base or not n_new:
        return 0.0, 1.0
    pooled = (x_base + x_new) / (n_base + n_new)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_base + 1 / n_new))
    if se == 0:
        return 0.0, 1.0
    z = (x_new / n_new - x_base / n_base) / se
    return z, 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class Metric:
    name: str
    baseline_ppm: int
    candidate_ppm: int
    z: float
    p_value: float
    fails: bool

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "baseline_ppm": self.baseline_ppm,
                "candidate_ppm": self.candidate_ppm, "z": f"{self.z:.4f}",
                "p_value": f"{self.p_value:.6g}", "fails": self.fails}


@dataclass(frozen=True)
class Analysis:
    """One comparison: the verdict (`fail`, `pass`, `insufficient`, `no_baseline`) and its evidence."""

    candidate: str
    baseline: str | None
    rule: Rule
    candidate_counts: Counts
    baseline_counts: Counts
    candidate_end: int
    baseline_end: int
    metrics: tuple[Metric, ...]
    verdict: str

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def summary(self) -> str:
        """One line for a record's `reason`."""
        if not self.metrics:
            return f"analysis of {self.candidate}: {self.verdict}"
        worst = max(self.metrics, key=lambda m: (m.fails, m.z))
        return (f"analysis: {self.candidate} {worst.name} {worst.candidate_ppm / 10_000:.1f}% vs "
                f"{self.baseline} {worst.baseline_ppm / 10_000:.1f}% "
                f"(n={self.candidate_counts.sessions}/{self.baseline_counts.sessions}, "
                f"z={worst.z:.2f}, p={worst.p_value:.2g}, "
                f"confidence {self.rule.confidence_bp / 100:g}%): {self.verdict}")

    def snapshot(self) -> dict[str, Any]:
        """The evidence as record fields (integers and strings only)."""
        return {
            "verdict": self.verdict,
            "rule": self.rule.to_fields(),
            "candidate": {"version": self.candidate, "window_end_s": self.candidate_end,
                          **self.candidate_counts.to_dict()},
            "baseline": {"version": self.baseline, "window_end_s": self.baseline_end,
                         **self.baseline_counts.to_dict()},
            "metrics": [m.to_dict() for m in self.metrics],
        }


def _ppm(x: int, n: int) -> int:
    return x * 1_000_000 // n if n else 0


def analyze(totals: SessionTotals, candidate: str, baseline: str | None, rule: Rule, *,
            candidate_end: int | None = None, baseline_end: int | None = None) -> Analysis:
    """Compare `candidate` with `baseline` under `rule` (window ends default to now and to the
    baseline's newest report)."""
    c_end = candidate_end if candidate_end is not None else totals.head_time or 0
    b_end = baseline_end if baseline_end is not None else totals.last_report.get(baseline or "", 0)
    cand = totals.window(candidate, rule.window_s, c_end)
    base = totals.window(baseline, rule.window_s, b_end) if baseline else Counts()
    if baseline is None:
        return Analysis(candidate, None, rule, cand, base, c_end, b_end, (), "no_baseline")
    metrics = []
    for name, field in METRICS:
        xb, xc = getattr(base, field), getattr(cand, field)
        z, p = z_test(xb, base.sessions, xc, cand.sessions)
        b_ppm, c_ppm = _ppm(xb, base.sessions), _ppm(xc, cand.sessions)
        fails = (min(base.sessions, cand.sessions) >= rule.min_sessions
                 and p <= rule.alpha and c_ppm - b_ppm >= rule.min_increase_bp * 100)
        metrics.append(Metric(name, b_ppm, c_ppm, z, p, fails))
    if min(base.sessions, cand.sessions) < rule.min_sessions:
        verdict = "insufficient"
    else:
        verdict = "fail" if any(m.fails for m in metrics) else "pass"
    return Analysis(candidate, baseline, rule, cand, base, c_end, b_end, tuple(metrics), verdict)


def recompute(records: Any, snapshot: Mapping[str, Any], bucket_s: int = 1) -> dict[str, Any]:
    """The snapshot an analysis of `records` (a chain from seq 1) gives, folded up to the last
    seq the snapshot names: equal to `snapshot` when the evidence is what it says."""
    last = max(int(snapshot["candidate"]["last_seq"]), int(snapshot["baseline"]["last_seq"]))
    totals = SessionTotals(bucket_s=bucket_s)
    for record in records:
        if record["seq"] > last:
            break
        totals.apply(record)
    rule = Rule(**snapshot["rule"])
    again = analyze(totals, snapshot["candidate"]["version"], snapshot["baseline"]["version"], rule,
                    candidate_end=snapshot["candidate"]["window_end_s"],
                    baseline_end=snapshot["baseline"]["window_end_s"])
    return again.snapshot()
