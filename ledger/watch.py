"""The watcher: follows a fleet's chain, analyses each move as reports arrive, and rolls back on evidence.

`FleetAnalysis` folds the chain (the fleet's state, the session totals, the
rule on record) in O(1) per record and says what the evidence calls for.
`Watcher` acts on it through the gate, as an actor of its own (`ledger-watch`):

- a move whose version fails the rule `consecutive` evaluations in a row is
  rolled back, with `cause: analysis` and the analysis snapshot in the
  `deployment.rolled_back` record;
- a move that completed and then passes is recorded as `analysis.passed`;
- either verdict is final for that move: a move already rolled back (by anyone)
  or passed is never judged again, and nothing is done while a rollback is in flight.

Why it never rolls back twice: it acts only at the head of the chain, after
folding every record there (a restarted watcher sees its own earlier rollback
before it could act again), and its rollback carries the idempotency key
`ledger-watch:<move seq>`, so even two watchers racing get one record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger import commands
from ledger.analysis import Analysis, Rule, analyze
from ledger.decide import Meta, Rollback
from ledger.gate import FleetService, Outcome
from ledger.model import Move, MoveKind
from ledger.rollback import RollbackRequest
from ledger.rules import FleetHistory, last_good
from projections.sessions import SessionTotals

ACTOR = "ledger-watch"


@dataclass(frozen=True)
class Action:
    """What the evidence calls for: `rollback` or `passed`, for the deploy at `move.seq`."""

    kind: str
    move: Move
    analysis: Analysis


class FleetAnalysis:
    """One fleet's chain folded for analysis: state, session totals, rule, verdicts so far."""

    def __init__(self, fleet: str, default_rule: Rule | None = None, *, actor: str = ACTOR):
        self.actor = actor                     # only its own verdicts settle a move
        self.state = FleetHistory(fleet)
        self.totals = SessionTotals()
        self.rule = default_rule or Rule()
        self.rule_seq: int | None = None
        self.move: Move | None = None          # the newest deploy: what is being judged
        self.judged: dict[int, str] = {}       # deploy seq -> rolled_back | passed | refused
        self.failing = 0                       # consecutive failing evaluations of self.move
        self.last: Analysis | None = None
        self._baseline: tuple[int, str | None] | None = None

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold the next record; evaluate when it added sessions."""
        self.state.apply(record)
        added = self.totals.apply(record)
        event = record.get("event")
        if event == "analysis.rule_set":
            self.rule, self.rule_seq, self.failing = Rule.from_record(record), int(record["seq"]), 0
        elif event == "deployment.started":
            flight = self.state.in_flight
            if flight is not None and flight.kind is MoveKind.DEPLOY:
                self.move, self.failing, self._baseline, self.last = flight, 0, None, None
        elif event == "deployment.rolled_back" and self.move is not None:
            if record.get("from_version") == self.move.version:
                self.judged.setdefault(self.move.seq, "rolled_back")
        elif event == "rollback.rejected" and record.get("actor") == self.actor and self.move is not None:
            self.judged.setdefault(self.move.seq, "refused")
        elif event == "analysis.passed" and record.get("actor") == self.actor:
            # a fact anyone may append: only the watcher's own verdict stands it down
            self.judged.setdefault(int(record["move_seq"]), "passed")
        if added and record.get("version") in self.subjects():
            self.evaluate()

    def subjects(self) -> tuple[str, ...]:
        """The candidate and baseline versions while a move is being judged, else nothing."""
        move = self.subject()
        if move is None:
            return ()
        baseline = self.baseline(move)
        return (move.version, baseline) if baseline else (move.version,)

    def subject(self) -> Move | None:
        """The deploy under judgement: in flight or live, not judged yet, no rollback in flight."""
        move, state = self.move, self.state
        if move is None or move.seq in self.judged:
            return None
        flight = state.in_flight
        if flight is not None:
            return move if flight.seq == move.seq else None  # a rollback (or another move) in flight
        return move if state.current == move.version else None

    def baseline(self, move: Move) -> str | None:
        """The last-good version the move's version is compared with (fixed per move)."""
        if self._baseline is None or self._baseline[0] != move.seq:
            found = last_good(self.state, leaving=move.version)
            self._baseline = (move.seq, found.version if found else None)
        return self._baseline[1]

    def evaluate(self) -> Analysis | None:
        move = self.subject()
        if move is None:
            return None
        analysis = analyze(self.totals, move.version, self.baseline(move), self.rule)
        self.failing = self.failing + 1 if analysis.failed else 0
        self.last = analysis
        return analysis

    def action(self) -> Action | None:
        """What to do now, at the head of the chain."""
        move, analysis = self.subject(), self.last
        if move is None or analysis is None or analysis.candidate != move.version:
            return None
        if analysis.failed and self.failing >= self.rule.consecutive:
            return Action("rollback", move, analysis)
        completed = self.state.in_flight is None and self.state.current == move.version
        if completed and analysis.verdict == "pass":
            return Action("passed", move, analysis)
        return None


def idempotency_key(move: Move) -> str:
    return f"{ACTOR}:{move.seq}"


class Watcher:
    """Follow a fleet and act on its analysis through the gate (or only say what it would do)."""

    def __init__(self, service: FleetService, fleet: str, *, actor: str = ACTOR, dry_run: bool = False,
                 external: bool = False, say: Callable[[str], None] = lambda _line: None):
        self.service, self.fleet, self.actor = service, fleet, actor
        self.dry_run, self.external, self.say = dry_run, external, say
        self.analysis = FleetAnalysis(fleet, actor=actor)
        self.position = 0
        self.outcomes: list[Outcome] = []

    def poll(self) -> Action | None:
        """Fold every new record, then act once at the head; returns what it did (or would do)."""
        for record in self.service.ledger.records(self.fleet, after=self.position):
            self.analysis.apply(record)
            self.position = int(record["seq"])
        action = self.analysis.action()
        if action is None:
            return None
        if self.dry_run:
            self.say(f"dry run: would record {action.kind} for {action.move.version} "
                     f"(deploy at seq {action.move.seq}): {action.analysis.summary()}")
            self.analysis.judged[action.move.seq] = action.kind  # said once, not at every poll
            return action
        if action.kind == "rollback":
            self._roll_back(action)
        else:
            self._passed(action)
        return action

    def _roll_back(self, action: Action) -> None:
        move, analysis = action.move, action.analysis
        snapshot = {**analysis.snapshot(), "move_seq": move.seq}
        key = idempotency_key(move)
        reason = analysis.summary()
        request = RollbackRequest(self.fleet, self.actor, reason, from_version=move.version,
                                  idempotency_key=key)
        meta = Meta(self.actor, reason, key, extra={"cause": "analysis", "analysis": snapshot})
        outcome = self.service.submit(self.fleet, Rollback(request, meta, external=self.external))
        self.outcomes.append(outcome)
        verdict = "rolled back" if outcome.accepted else f"rollback refused ({outcome.check})"
        self.say(f"{verdict}: {reason}; recorded at seq {outcome.receipt.seq}")

    def _passed(self, action: Action) -> None:
        move, analysis = action.move, action.analysis
        body = commands.record("analysis.passed", self.actor, "fleet", version=move.version,
                               move_seq=move.seq, reason=analysis.summary(),
                               analysis={**analysis.snapshot(), "move_seq": move.seq})
        receipt = self.service.ledger.append(self.fleet, body)
        self.say(f"passed: {analysis.summary()}; recorded at seq {receipt.seq}")

    def run(self, *, interval_s: float = 0.2, stop: Callable[[], bool] = lambda: False,
            on_action: Callable[[Action], None] | None = None) -> None:
        """Poll until `stop()` says so."""
        while not stop():
            action = self.poll()
            if action is not None and on_action is not None:
                on_action(action)
            time.sleep(interval_s)
