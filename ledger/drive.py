"""The executor: carries out a recorded rollback (or driven deploy) on a fleet.

It follows the ledger with its own tracking position. The operation to carry
out is the move in flight (a `deployment.rolled_back`, or a `deployment.started`
with a worker plan) when it lies past that position; its record names the
workers to start and to drain, so the plan survives any crash. Each pass reconciles what the ledger
says was done with what the plan needs and does only what is missing:

1. start each planned worker of the target version that has not reported
   `worker.started` (a worker id already running refuses to start twice);
2. once they all report started, record `deployment.drain_started` for each
   worker of another version and ask the driver to drain it (a drain already
   recorded is only re-signalled, never re-recorded);
3. wait for each draining worker's `worker.exited`; a worker that vanished
   without reporting is recorded as exited with the sessions it last held
   (dropped calls); one that outlasts the drain timeout is recorded as
   `deployment.drain_stuck` and left running: a worker holding calls is never
   killed;
4. when every live worker runs the target and none is draining, record
   `rollback.completed` (or `deployment.completed`) and move the tracking
   position past the operation. If a drain is stuck, record `rollback.failed`.

Killed between any two steps and restarted, it resumes at the first missing
step and repeats nothing. If another deploy or rollback replaces the move (a
rollback of a deploy still in flight), it stops without another step and
leaves the newer move pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ledger import commands
from ledger.actors import ActorSigner
from ledger.decide import Complete, Fail, Meta, external_settlement, unclean_workers
from ledger.fleet import FleetDriver
from ledger.gate import FleetService, Outcome
from ledger.model import MoveKind
from ledger.reporter import report_fact
from ledger.rules import FleetHistory
from ledger.tracking import Tracker

TRIGGERS = ("deployment.rolled_back", "deployment.started")
DEFAULT_START_TIMEOUT_S = 60.0


class Ending(StrEnum):
    """How the executor's work on one move ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    #: Another deploy or rollback replaced the move; the newer one stays pending.
    SUPERSEDED = "superseded"


class SupersededError(Exception):
    """Another deploy or rollback replaced the move being carried out."""


#: Who the executor's records name when no signing actor drives.
DRIVER_ACTOR = "fleet-driver"

@dataclass
class Operation:
    """A fleet move to carry out, as its triggering record states it."""

    kind: MoveKind
    seq: int
    target: str
    from_version: str | None
    operation_id: str
    start_workers: list[str]
    drain_workers: list[str]
    drain_timeout_s: int
    #: The platform starts and drains the workers; the ledger only watches and settles.
    external: bool = False
    timestamp: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Operation | None:
        external = bool(record.get("external"))
        if record["event"] not in TRIGGERS or ("start_workers" not in record and not external):
            return None
        kind = MoveKind.ROLLBACK if record["event"] == "deployment.rolled_back" else MoveKind.DEPLOY
        name = record.get("rollback_id") or record.get("operation_id") or f"op{record['seq']}"
        return cls(kind, record["seq"], record["version"], record.get("from_version"), str(name),
                   list(record.get("start_workers", [])), list(record.get("drain_workers", [])),
                   int(record.get("drain_timeout_s", 120)), external, str(record.get("timestamp", "")))


@dataclass
class Steps:
    """What the ledger says was done for one operation so far."""

    started: set[str] = field(default_factory=set)
    drained: dict[str, str] = field(default_factory=dict)  # worker id -> drain timestamp
    exited: dict[str, int] = field(default_factory=dict)  # worker id -> sessions at exit
    stuck: set[str] = field(default_factory=set)
    cursor: int = 0

    def absorb(self, record: dict[str, Any]) -> None:
        worker = str(record.get("worker_id", ""))
        event = record["event"]
        if event == "worker.started":
            self.started.add(worker)
        elif event == "deployment.drain_started" and worker:
            self.drained.setdefault(worker, record["timestamp"])
        elif event == "worker.exited":
            self.exited[worker] = record["active_sessions"]
        elif event == "deployment.drain_stuck":
            self.stuck.add(worker)
        self.cursor = record["seq"]


def _age_seconds(timestamp: str) -> float:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


class Executor:
    """Carries out the fleet moves the ledger records, through a driver."""

    def __init__(self, service: FleetService, driver: FleetDriver, tracker: Tracker,
                 fleet: str, *, actor: str = DRIVER_ACTOR, poll_s: float = 0.2,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S, step_delay_s: float = 0.0,
                 say: Callable[[str], None] = lambda _line: None, reporter: ActorSigner | None = None):
        self.service, self.driver, self.tracker = service, driver, tracker
        #: Signs the worker facts this executor records (drains asked, workers gone), if given.
        self.reporter = reporter
        self.ledger, self.states = service.ledger, service.states
        self.fleet, self.actor, self.poll_s = fleet, actor, poll_s
        self.start_timeout_s, self.step_delay_s, self._say = start_timeout_s, step_delay_s, say
        self._last_said = ""
        self._settled_at = 0

    def say(self, line: str) -> None:
        """Progress for the person waiting: each line once, not once per poll."""
        if line != self._last_said:
            self._last_said = line
            self._say(line)

    # -- finding work ---------------------------------------------------------------

    def pending(self) -> Operation | None:
        """The driven move in flight that this executor has not settled, if any.

        The fleet's state names the record that started the move in flight, so
        finding it costs the same at any ledger size; the tracking position
        says which moves this executor has already seen to an end.
        """
        flight = self.states.fleet_state(self.fleet).in_flight
        if flight is None or flight.seq <= self.tracker.position(self.fleet):
            return None
        record = next(self.ledger.records(self.fleet, after=flight.seq - 1), None)
        return None if record is None else Operation.from_record(record)

    def run_pending(self) -> Ending | None:
        """Carry out the pending operation, if any; return how it ended."""
        operation = self.pending()
        if operation is None:
            return None
        return self.carry_out(operation)

    # -- carrying out ------------------------------------------------------------------

    def _record(self, body: dict[str, Any]) -> int:
        """Append a fact the executor observed or caused (a drain, an exit); signed by the
        reporter if there is one (a refused one is recorded as refused)."""
        if self.reporter is not None:
            receipt = report_fact(self.service, self.fleet, body, self.reporter).receipt
        else:
            receipt = self.ledger.append(self.fleet, body)
        self._pause()
        return receipt.seq

    def _settle(self, command: Complete | Fail) -> Outcome:
        """Submit the move's completion or failure to the gate, like any other decision."""
        outcome = self.service.submit(self.fleet, command)
        self._pause()
        return outcome

    def _pause(self) -> None:
        if self.step_delay_s:
            time.sleep(self.step_delay_s)  # lets tests kill the executor between two steps

    def _catch_up(self, op: Operation, steps: Steps) -> None:
        for record in self.ledger.records(self.fleet, after=max(steps.cursor, op.seq)):
            steps.absorb(record)

    def carry_out(self, op: Operation) -> Ending:
        """Carry the move out, or stop the moment another move replaces it."""
        steps = Steps()
        self._catch_up(op, steps)
        self.say(f"{op.kind.value} {op.operation_id}: {op.from_version or '(nothing)'} -> {op.target}")
        try:
            if op.external:
                outcome = self._watch(op, steps)
            else:
                outcome = self._start(op, steps) or self._drain(op, steps) or self._finish(op, steps)
        except SupersededError as exc:
            self.say(str(exc))
            self.tracker.advance(self.fleet, op.seq)  # the newer move stays pending
            return Ending.SUPERSEDED
        self.tracker.advance(self.fleet, self._settled_at)
        return outcome

    def _ours(self, op: Operation) -> FleetHistory:
        """The fleet's state, provided `op` is still the move in flight."""
        state = self.states.fleet_state(self.fleet)
        flight = state.in_flight
        if flight is None or flight.seq != op.seq:
            now = flight.describe() if flight else "none"
            raise SupersededError(f"{op.kind.value} {op.operation_id} is no longer in flight (now: {now}); "
                                  "stopping without another step")
        return state

    def _start(self, op: Operation, steps: Steps) -> Ending | None:
        for worker_id in op.start_workers:
            if worker_id not in steps.started:
                self.driver.start_worker(worker_id, op.target)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            self._ours(op)
            self._catch_up(op, steps)
            missing = [w for w in op.start_workers if w not in steps.started]
            if not missing:
                return None
            if time.monotonic() > deadline:
                return self._fail(op, f"workers {', '.join(missing)} did not start within "
                                      f"{self.start_timeout_s:.0f}s")
            self.say(f"waiting for {len(missing)} {op.target} worker(s) to start")
            time.sleep(self.poll_s)

    def _to_drain(self, op: Operation, state: FleetHistory) -> dict[str, str]:
        """Worker id -> version of every worker to see out: the plan's, any straggler of
        another version, and any worker already draining (an earlier move drained it)."""
        wanted = {w: "" for w in op.drain_workers}
        for worker in state.workers.values():
            if worker.version != op.target or worker.draining:
                wanted[worker.worker_id] = worker.version
        for worker_id in wanted:
            if not wanted[worker_id]:
                live = state.workers.get(worker_id)
                wanted[worker_id] = live.version if live else (op.from_version or op.target)
        return wanted

    def _drain(self, op: Operation, steps: Steps) -> Ending | None:
        while True:
            state = self._ours(op)
            self._catch_up(op, steps)
            waiting: list[str] = []
            for worker_id, version in sorted(self._to_drain(op, state).items()):
                if worker_id in steps.exited:
                    continue
                live = state.workers.get(worker_id)
                drained_at = steps.drained.get(worker_id)
                if drained_at is None and live is not None and live.draining and live.drain_started:
                    drained_at = live.drain_started.timestamp  # drained before this move began
                if drained_at is None:
                    if live is None and not self.driver.is_alive(worker_id):
                        continue  # gone before the operation: nothing to drain
                    body = commands.worker_drain(worker_id, version, self.actor,
                                                 f"{op.kind.value} to {op.target}")
                    body["operation_id"] = op.operation_id
                    self._record(body)
                    self.driver.drain(worker_id)
                    self._catch_up(op, steps)
                    waiting.append(worker_id)
                    continue
                if not self.driver.is_alive(worker_id):
                    self._catch_up(op, steps)
                    if worker_id not in steps.exited:
                        sessions = live.active_sessions if live else 0
                        body = commands.worker_exit(worker_id, version, sessions, self.actor,
                                                    "exited without reporting")
                        body["result"] = "failure" if sessions else "success"
                        self._record(body)
                    continue
                self.driver.drain(worker_id)  # harmless again; covers a restart mid-step
                if _age_seconds(drained_at) > op.drain_timeout_s and worker_id not in steps.stuck:
                    self._record(commands.record(
                        "deployment.drain_stuck", self.actor, worker_id, result="failure",
                        worker_id=worker_id, version=version,
                        active_sessions=live.active_sessions if live else 0,
                        timeout_s=op.drain_timeout_s, operation_id=op.operation_id))
                    self._catch_up(op, steps)
                waiting.append(worker_id)
            if not waiting:
                return None
            if all(w in steps.stuck for w in waiting):
                stuck = ", ".join(f"{w} ({state.workers[w].active_sessions if w in state.workers else '?'}"
                                  " sessions)" for w in waiting)
                return self._fail(op, f"drain stuck past {op.drain_timeout_s}s: {stuck}; left running")
            held = sum(state.workers[w].active_sessions for w in waiting if w in state.workers)
            self.say(f"draining {len(waiting)} worker(s), {held} call(s) still in flight")
            time.sleep(self.poll_s)

    def _watch(self, op: Operation, steps: Steps) -> Ending:
        """A rollback the platform carries out: wait for the fleet to show it done (or the
        drain timeout to pass), then settle it through the gate."""
        while True:
            state = self._ours(op)
            self._catch_up(op, steps)
            command = external_settlement(state, self.actor, datetime.now(UTC))
            if command is not None:
                outcome = self._settle(command)
                self._settled_at = outcome.receipt.seq
                done = isinstance(command, Complete) and outcome.accepted
                self.say(f"{op.kind.value} {'completed' if done else 'failed'}: {command.meta.reason}")
                return Ending.COMPLETED if done else Ending.FAILED
            waiting = unclean_workers(state, op.target)
            self.say(f"watching the platform's {op.kind.value} to {op.target}: waiting for "
                     f"{', '.join(waiting) or 'a worker of ' + op.target}")
            time.sleep(self.poll_s)

    def _finish(self, op: Operation, steps: Steps) -> Ending:
        self._catch_up(op, steps)
        state = self._ours(op)
        unclean = unclean_workers(state, op.target)
        if unclean:
            return self._fail(op, f"fleet not clean: {', '.join(unclean)}")
        dropped = sum(steps.exited.values())  # calls held by workers that exited during the move
        outcome = self._settle(Complete(op.target, Meta(self.actor, "fleet clean"), op.kind,
                                        op.from_version, dropped_calls=dropped))
        self._settled_at = outcome.receipt.seq
        if not outcome.accepted:
            self.say(f"{op.kind.value} completion refused: {outcome.check}")
            return Ending.FAILED
        self.say(f"fleet clean: {len(state.workers)} worker(s) on {op.target}, "
                 f"{dropped} dropped call(s)")
        return Ending.COMPLETED

    def _fail(self, op: Operation, reason: str) -> Ending:
        self._ours(op)
        outcome = self._settle(Fail(op.target, Meta(self.actor, reason), op.kind, op.from_version))
        self._settled_at = outcome.receipt.seq
        self.say(f"{op.kind.value} failed: {reason}")
        return Ending.FAILED
