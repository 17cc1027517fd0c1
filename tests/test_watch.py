"""The rule on record, `ledger analyze`, and the watcher that rolls back on evidence (both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import commands as build
from ledger.analysis import Rule, recompute
from ledger.app import App, open_app
from ledger.decide import Deploy, Meta, SetRule
from ledger.gate import Complete, Rollback, RollbackRequest
from ledger.watch import ACTOR, Watcher
from tests.conftest import Env, run_cli
from tests.test_analysis import RULE


def v1_live_then_v2(app: App, rule: Rule = RULE, *, complete_v2: bool = False) -> None:
    """v1 deployed, completed, with a healthy baseline (200 sessions, 2% errors); v2 deployed."""
    service, ledger = app.service, app.ledger
    assert service.submit("prod", Deploy("v1", Meta("ci"))).accepted
    ledger.append("prod", build.worker_start("w1", "v1", "w1"))
    assert service.submit("prod", Complete("v1", Meta("ci"))).accepted
    assert service.submit("prod", SetRule(rule, Meta("sre", "roll back on evidence"))).accepted
    ledger.append("prod", build.worker_sessions("w1", "v1", 1, "w1", ok=100, error=2, dropped=0))
    ledger.append("prod", build.worker_sessions("w1", "v1", 1, "w1", ok=196, error=4, dropped=0))
    assert service.submit("prod", Deploy("v2", Meta("ci"))).accepted
    ledger.append("prod", build.worker_start("w2", "v2", "w2"))
    if complete_v2:
        ledger.append("prod", build.worker_exit("w1", "v1", 0, "w1", ok=196, error=4, dropped=0))
        assert service.submit("prod", Complete("v2", Meta("ci"))).accepted


def v2_reports(app: App, *steps: tuple[int, int, int]) -> None:
    for ok, error, dropped in steps:
        app.ledger.append("prod", build.worker_sessions("w2", "v2", 1, "w2", ok=ok, error=error,
                                                        dropped=dropped))


def rollbacks(app: App) -> list[dict[str, Any]]:
    return [r for r in app.ledger.records("prod") if r["event"] == "deployment.rolled_back"]


def test_rule_is_a_decision_through_the_gate(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    a = env.args()
    assert run_cli(capsys, "deploy", "v1", "--actor", "ci", "--fleet", "prod", *a).code == 0
    done = run_cli(capsys, "rule", "set", "--fleet", "prod", "--window", "120", "--min-sessions", "50",
                   "--confidence", "99.5", "--min-increase", "2.5", "--consecutive", "3",
                   "--actor", "sre", "--reason", "policy 7", *a)
    assert done.code == 0 and "appended prod seq 2" in done.out
    with env.open() as ledger:
        record = list(ledger.records("prod"))[-1]
    assert record["event"] == "analysis.rule_set" and record["actor"] == "sre"
    assert Rule.from_record(record) == Rule(120, 50, 9950, 250, 3)
    shown = run_cli(capsys, "rule", "show", "--fleet", "prod", "--json", *a)
    assert '"confidence_bp": 9950' in shown.out and '"seq": 2' in shown.out
    bad = run_cli(capsys, "rule", "set", "--fleet", "prod", "--consecutive", "0", "--actor", "sre", *a)
    assert bad.code == 2 and "--consecutive" in bad.err
    raw = run_cli(capsys, "append", "--fleet", "prod", *a, "--json",
                  '{"event":"analysis.rule_set","actor":"sre","target":"fleet","result":"success",'
                  '"window_s":0,"min_sessions":30,"confidence_bp":9900,"min_increase_bp":500,"consecutive":2}')
    assert raw.code == 2  # a raw append of the decision passes the same validation
    with env.open() as ledger:
        assert len(list(ledger.records("prod"))) == 2


def test_watcher_rolls_back_with_evidence_that_recomputes(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app)
        watcher = Watcher(app.service, "prod")
        v2_reports(app, (10, 10, 0))                 # below the minimum sample: no verdict
        assert watcher.poll() is None
        v2_reports(app, (20, 25, 1))                 # 56 sessions, 45% errors: fails once
        assert watcher.poll() is None                # consecutive = 2
        v2_reports(app, (22, 30, 2))
        action = watcher.poll()
        assert action is not None and action.kind == "rollback"
        assert watcher.poll() is None                # never twice
        found = rollbacks(app)
        assert len(found) == 1
        record = found[0]
        assert (record["actor"], record["cause"], record["version"], record["from_version"]) == \
            (ACTOR, "analysis", "v1", "v2")
        snapshot = record["analysis"]
        assert snapshot["verdict"] == "fail" and snapshot["candidate"]["sessions"] == 54
        assert snapshot["baseline"] == {**snapshot["baseline"], "version": "v1", "sessions": 200}
        stored = {k: v for k, v in snapshot.items() if k != "move_seq"}
        assert recompute(app.ledger.records("prod"), stored) == stored
        # restarted: folds its own rollback first, files nothing
        again = Watcher(app.service, "prod")
        assert again.poll() is None
        assert len(rollbacks(app)) == 1
    history = run_cli(capsys, "history", "--fleet", "prod", *env.args())
    assert "ledger-watch: analysis: v2 error_rate" in history.out


def test_two_watchers_racing_file_one_rollback(env: Env) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app)
        v2_reports(app, (20, 25, 1), (22, 30, 2))
        late = Watcher(app.service, "prod")
        for record in app.ledger.records("prod"):   # folded, then killed before acting
            late.analysis.apply(record)
        action = late.analysis.action()
        assert action is not None
        assert Watcher(app.service, "prod").poll() is not None
        late._roll_back(action)                     # the late one acts on its stale head
        assert late.outcomes[-1].replayed
        assert len(rollbacks(app)) == 1


def test_a_manual_rollback_makes_the_watcher_stand_down(env: Env) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app)
        watcher = Watcher(app.service, "prod")
        v2_reports(app, (20, 25, 1))
        assert watcher.poll() is None
        request = RollbackRequest("prod", "on-call", "errors up")
        assert app.service.submit("prod", Rollback(request, Meta("on-call", "errors up"),
                                                   external=True)).accepted
        v2_reports(app, (22, 30, 2), (23, 40, 3))   # the draining v2 keeps reporting failures
        assert watcher.poll() is None
        assert Watcher(app.service, "prod").poll() is None
        assert [r["actor"] for r in rollbacks(app)] == ["on-call"]


def test_a_pass_claimed_by_someone_else_does_not_stand_the_watcher_down(env: Env) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app)
        app.ledger.append("prod", {"event": "analysis.passed", "actor": "someone", "target": "fleet",
                                   "result": "success", "version": "v2", "move_seq": 7})
        v2_reports(app, (20, 25, 1), (22, 30, 2))
        watcher = Watcher(app.service, "prod")
        action = watcher.poll()
        assert action is not None and action.kind == "rollback" and action.move.seq == 7
        assert len(rollbacks(app)) == 1


def test_a_healthy_move_is_recorded_as_passed_once(env: Env) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app, complete_v2=True)
        watcher = Watcher(app.service, "prod")
        v2_reports(app, (58, 1, 0), (118, 2, 0))
        action = watcher.poll()
        assert action is not None and action.kind == "passed"
        assert watcher.poll() is None and Watcher(app.service, "prod").poll() is None
        passed = [r for r in app.ledger.records("prod") if r["event"] == "analysis.passed"]
        assert len(passed) == 1 and passed[0]["version"] == "v2" and not rollbacks(app)
        assert passed[0]["analysis"]["verdict"] == "pass"


def test_dry_run_writes_nothing(env: Env) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app, Rule(60, 30, 9900, 500, 1))
        v2_reports(app, (20, 25, 1))
        said: list[str] = []
        head = len(list(app.ledger.records("prod")))
        action = Watcher(app.service, "prod", dry_run=True, say=said.append).poll()
        assert action is not None and action.kind == "rollback"
        assert said and said[0].startswith("dry run: would record rollback for v2")
        assert len(list(app.ledger.records("prod"))) == head


def test_analyze_and_watch_commands(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with open_app(env.db, env.key) as app:
        v1_live_then_v2(app, Rule(60, 30, 9900, 500, 1))
        v2_reports(app, (20, 25, 1))
    a = [*env.args(), "--fleet", "prod"]
    table = run_cli(capsys, "analyze", *a)
    assert table.code == 0, table.err
    assert "v2 vs last-good v1" in table.out and "verdict: fail" in table.out
    data = run_cli(capsys, "analyze", "--json", *a)
    assert '"verdict": "fail"' in data.out
    watched = run_cli(capsys, "watch", "--until-verdict", "--driver", "none", "--interval", "0.01", *a)
    assert watched.code == 0, watched.err
    assert "watch: rolled back: analysis: v2 error_rate" in watched.out
    after = run_cli(capsys, "analyze", *a)   # the rollback to v1 is in flight: v1 has no baseline
    assert after.code == 0 and "v1 vs last-good (none)" in after.out and "no_baseline" in after.out
