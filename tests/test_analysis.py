"""The analysis: a pure comparison of session outcomes with a one-sided two-proportion z-test."""

from __future__ import annotations

import random

import pytest

from ledger.analysis import Rule, analyze, validate_rule, z_test
from ledger.errors import InputError
from projections.sessions import SessionTotals
from tests.test_session_outcomes import T0, report

RULE = Rule(window_s=60, min_sessions=30, confidence_bp=9900, min_increase_bp=500, consecutive=2)


def totals_of(base: tuple[int, int], new: tuple[int, int]) -> SessionTotals:
    """v1 ended base = (ok, error) sessions, v2 new = (ok, error), in one window."""
    totals = SessionTotals()
    totals.apply(report(1, T0, "a", "v1", ok=base[0], error=base[1]))
    totals.apply(report(2, T0 + 1, "b", "v2", ok=new[0], error=new[1]))
    return totals


def test_z_test_is_one_sided() -> None:
    z, p = z_test(5, 100, 30, 100)
    assert z > 4 and p < 1e-5
    z, p = z_test(30, 100, 5, 100)
    assert z < -4 and p > 0.99
    assert z_test(0, 100, 0, 100) == (0.0, 1.0)
    assert z_test(0, 0, 3, 10) == (0.0, 1.0)


def test_no_verdict_below_the_minimum_sample() -> None:
    analysis = analyze(totals_of((200, 0), (0, 29)), "v2", "v1", RULE)  # 29 of 29 failed
    assert analysis.verdict == "insufficient" and not analysis.failed
    assert not any(m.fails for m in analysis.metrics)
    assert analyze(totals_of((20, 0), (0, 100)), "v2", "v1", RULE).verdict == "insufficient"


def test_clearly_worse_fails_and_equal_passes() -> None:
    worse = analyze(totals_of((95, 5), (40, 60)), "v2", "v1", RULE)
    assert worse.verdict == "fail"
    error = worse.metrics[0]
    assert (error.name, error.baseline_ppm, error.candidate_ppm, error.fails) == \
        ("error_rate", 50_000, 600_000, True)
    assert worse.snapshot()["candidate"] == {"version": "v2", "window_end_s": T0 + 1, "ok": 40, "error": 60,
                                             "dropped": 0, "sessions": 100, "first_seq": 2, "last_seq": 2}
    assert analyze(totals_of((95, 5), (94, 6)), "v2", "v1", RULE).verdict == "pass"
    # significant but below the practical floor of 5 points
    small = analyze(totals_of((9900, 100), (9700, 300)), "v2", "v1", RULE)
    assert small.metrics[0].p_value < 0.001 and small.verdict == "pass"
    assert analyze(totals_of((95, 5), (40, 60)), "v2", None, RULE).verdict == "no_baseline"


def test_a_a_runs_stay_under_the_stated_false_positive_rate() -> None:
    """Both versions fail 10% of calls: over many windows the test says "worse" at most alpha of the time."""
    rng = random.Random(20261202)
    rule = Rule(window_s=60, min_sessions=30, confidence_bp=9500, min_increase_bp=0, consecutive=1)
    windows, n, rate, failed = 3000, 200, 0.10, 0
    for _ in range(windows):
        base = sum(rng.random() < rate for _ in range(n))
        new = sum(rng.random() < rate for _ in range(n))
        failed += analyze(totals_of((n - base, base), (n - new, new)), "v2", "v1", rule).failed
    assert failed / windows <= 0.05 + 3 * (0.05 * 0.95 / windows) ** 0.5
    assert failed > 0  # the test does fire at its stated rate, it is not simply blind


def test_rule_values_are_validated() -> None:
    assert validate_rule(60, 30, 9900, 500, 2) == RULE
    for bad in ((0, 30, 9900, 500, 2), (3601, 30, 9900, 500, 2), (60, 3, 9900, 500, 2),
                (60, 30, 10_000, 500, 2),
                (60, 30, 9900, -1, 2), (60, 30, 9900, 500, 0)):
        with pytest.raises(InputError):
            validate_rule(*bad)
