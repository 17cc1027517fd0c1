"""Random command sequences from two writers never make a bad or unfinished version last-good.

Two applications (`open_app`) over one database take turns submitting commands
(the second with views of its own, which lag until it asks them something),
valid and invalid: deploys (some superseding, some with a stale --from-version),
completions (some confirmed with evidence), failures, rollbacks, verdicts, raw
decision bodies as `ledger append` passes them, and worker facts. After every
step:

- the step wrote exactly what its outcome says: 1 record for a refusal or a
  fact, 1 for an accepted command (2 for a supersede), 0 for malformed input
  or a replayed idempotency key;
- an independent model, folded here from the raw feed (not the product's
  rules), says every decision in the feed was legal when it was written, and
  agrees with the views on the last-good version (plain, and for a rollback:
  leaving the current version), which has completed and is neither rolled
  back from nor marked bad (uncleared).

At the end, views rebuilt from nothing into a fresh file equal the caught-up views.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger import commands as build
from ledger.app import App, open_app
from ledger.decide import Complete, Deploy, Fail, Judge, Meta, Refused, Rollback, Verdict
from ledger.errors import InputError
from ledger.rollback import RollbackRequest
from projections.runner import Projections
from tests.conftest import _connect

FLEET = "prod"
VERSIONS = ["v1", "v2", "v3"]
WORKERS = ["w1", "w2", "w3"]
REFUSALS = ("rollback.rejected", "command.rejected")

Body = dict[str, Any]


def quiet(_message: str) -> None:
    return None


# -- the independent model, folded from the raw feed ----------------------------------------------


@dataclass
class Model:
    """What the feed says, by this test's own reading of the contract."""

    current: str | None = None
    flight: dict[str, Any] | None = None  # kind, version, from_version, seq
    known: set[str] = field(default_factory=set)
    completed_at: dict[str, int] = field(default_factory=dict)  # version -> latest completion seq
    bad: set[str] = field(default_factory=set)  # rolled back from, or marked bad; until cleared
    live: dict[str, tuple[str, bool]] = field(default_factory=dict)  # worker -> (version, draining)
    superseded: int | None = None  # move_seq of a move.superseded awaiting its deploy

    def good(self, version: str) -> bool:
        return version in self.completed_at and version not in self.bad

    def last_good(self, leaving: str | None = None) -> str | None:
        good = [v for v in self.completed_at if self.good(v) and v != leaving]
        return max(good, key=lambda v: self.completed_at[v], default=None)

    def apply(self, r: Body) -> None:
        """Fold one record, asserting that a decision was legal at the state before it."""
        event, seq, version = r["event"], r["seq"], r.get("version")
        where = f"seq {seq} {event} {version}"
        if self.superseded is not None:
            assert event == "deployment.started" and r.get("supersedes_seq") == self.superseded, where
            self.superseded = None
        if event == "deployment.started":
            assert self.flight is None, f"{where}: a move is in flight"
            assert r.get("supersedes_seq") is not None or version != self.current, f"{where}: already current"
            assert r.get("from_version") == self.current, where
            self.known.add(version)
            self.flight = {"kind": "deploy", "version": version, "seq": seq}
            self.current = version
        elif event == "move.superseded":
            assert self.flight is not None and r["move_seq"] == self.flight["seq"], where
            assert version == self.flight["version"], where
            self.flight, self.superseded = None, r["move_seq"]
        elif event in ("deployment.completed", "rollback.completed"):
            kind = "deploy" if event == "deployment.completed" else "rollback"
            assert self.flight is not None and (self.flight["kind"], self.flight["version"]) == (
                kind, version), f"{where}: not the move in flight {self.flight}"
            if kind == "rollback" and not r.get("operator_confirmed"):
                assert self.live and all(v == version and not d for v, d in self.live.values()), (
                    f"{where}: fleet not clean {self.live}")
            if r.get("operator_confirmed"):
                assert r.get("evidence"), where
            self.completed_at[version] = seq
            self.flight, self.current = None, version
        elif event in ("deployment.failed", "rollback.failed"):
            kind = "deploy" if event == "deployment.failed" else "rollback"
            assert self.flight is not None and (self.flight["kind"], self.flight["version"]) == (
                kind, version), f"{where}: not the move in flight {self.flight}"
            if kind == "rollback":
                self.current = self.flight["from_version"]  # the fleet did not confirm leaving it
            self.flight = None
        elif event == "deployment.rolled_back":
            source = r["from_version"]
            assert source == self.current and version != source, where
            assert self.good(version), f"{where}: target not good"
            assert self.flight is None or (self.flight["kind"], self.flight["version"]) == (
                "deploy", self.current), f"{where}: a move is in flight {self.flight}"
            self.known.update((version, source))
            self.bad.add(source)
            self.flight = {"kind": "rollback", "version": version, "from_version": source, "seq": seq}
            self.current = version
        elif event in ("version.verified", "version.marked_bad"):
            assert version in self.known, f"{where}: unknown version"
            if event == "version.marked_bad":
                self.bad.add(version)
        elif event == "version.cleared":
            assert version in self.bad, f"{where}: not bad"
            self.bad.discard(version)
        elif event == "worker.started":
            self.live[r["worker_id"]] = (version, False)
        elif event == "worker.sessions":
            draining = self.live.get(r["worker_id"], (version, False))[1]
            self.live[r["worker_id"]] = (version, draining)
        elif event == "deployment.drain_started" and "worker_id" in r:
            self.live[r["worker_id"]] = (version, True)
        elif event == "worker.exited":
            self.live.pop(r["worker_id"], None)
        else:
            assert event in REFUSALS, f"{where}: unexpected record"


# -- steps: commands, raw decision bodies and facts -------------------------------------------

versions = st.sampled_from(VERSIONS)
maybe_version = st.none() | versions
keys = st.sampled_from([None] * 8 + ["k1", "k2"])
workers = st.sampled_from(WORKERS)


def _rollback(to: str | None, source: str | None, key: str | None) -> Rollback:
    request = RollbackRequest(FLEET, "oncall", "errors up", to_version=to, from_version=source,
                              idempotency_key=key)
    return Rollback(request, Meta("oncall", "errors up", key))


def _raw(event: str, key: str | None, **fields: Any) -> Body:
    body = {"event": event, "actor": "pool", "target": "fleet",
            "result": "failure" if event.endswith(".failed") else "success", **fields}
    return {**body, "idempotency_key": key} if key else body


deploys = st.builds(lambda v, s, f, k: Deploy(v, Meta("ci", None, k), from_version=f, supersede=s),
                    versions, st.booleans(), st.none() | st.none() | versions, keys)
completions = st.builds(lambda v, e, k: Complete(v, Meta("ci", None, k), evidence=e),
                        versions, st.none() | st.just("console shows it"), keys)
failures = st.builds(lambda v, k: Fail(v, Meta("ci", "broken", k)), versions, keys)
rollbacks = st.builds(_rollback, st.none() | st.none() | versions, st.none() | st.none() | versions, keys)
verdicts = st.builds(lambda verdict, v, k: Judge(verdict, v, Meta("qa", "why", k)),
                     st.sampled_from(list(Verdict)), versions, keys)
raw_decisions = st.one_of(
    st.builds(lambda v, f, k: _raw("deployment.rolled_back", k, version=v, from_version=f, reason="r"),
              versions, versions, keys),
    st.builds(lambda v, f, k: _raw("rollback.completed", k, version=v, from_version=f),
              versions, versions, keys),
    st.builds(lambda v, k: _raw("deployment.completed", k, version=v), versions, keys),
    st.builds(lambda v, k: _raw("deployment.started", k, version=v), versions, keys),
    # malformed: a plan in the body, or a refusal record
    st.builds(lambda v, f: _raw("deployment.rolled_back", None, version=v, from_version=f, reason="r",
                                start_workers=[f"{v}-x-1"], drain_workers=["w1"]), versions, versions),
    st.builds(lambda k: _raw("rollback.rejected", k or "k1", check="target_unknown", reason="r"), keys),
)
facts = st.one_of(
    st.builds(lambda w, v: build.worker_start(w, v, "platform"), workers, versions),
    st.builds(lambda w, v, k: {**build.worker_sessions(w, v, 1, w), **({"idempotency_key": k} if k else {})},
              workers, versions, keys),
    st.builds(lambda w, v: build.worker_drain(w, v, "executor"), workers, versions),
    st.builds(lambda w, v: build.worker_exit(w, v, 0, "executor"), workers, versions),
)


@dataclass(frozen=True)
class AtHead:
    """A command about the move in flight (or a bad version), named when it is submitted:
    random versions alone rarely hit the move in flight."""

    what: str  # "complete", "confirm", "fail", "clear", "raw-complete", "deploy-next"
    key: str | None = None


AT_HEAD = ["complete", "complete", "confirm", "fail", "clear", "raw-complete", *["deploy-next"] * 3]
at_head = st.builds(AtHead, st.sampled_from(AT_HEAD), keys)
#: Weighted by repetition: enough deploys and settlements of the move in flight to reach
#: completed versions, rollbacks and verdicts on them; some invalid commands of every kind.
steps = st.lists(st.one_of(at_head, deploys, at_head, rollbacks, at_head, verdicts, facts, at_head,
                           completions, failures, raw_decisions, facts, rollbacks),
                 min_size=12, max_size=40)


def resolve(step: Any, model: Model) -> Any:
    """The concrete command an `AtHead` step stands for, at the model's state now."""
    if not isinstance(step, AtHead):
        return step
    target = model.flight["version"] if model.flight else "v1"
    meta = Meta("ci", None if step.what != "fail" else "broken", step.key)
    if step.what == "deploy-next":
        names = [v for v in VERSIONS if v != model.current]
        return Deploy(names[len(model.completed_at) % len(names)], meta)
    if step.what == "complete":
        return Complete(target, meta)
    if step.what == "confirm":
        return Complete(target, meta, evidence="console shows it")
    if step.what == "fail":
        return Fail(target, meta)
    if step.what == "clear":
        return Judge(Verdict.CLEARED, min(model.bad, default="v1"), Meta("qa", "fixed", step.key))
    kind = model.flight["kind"] if model.flight else "deploy"
    event = "rollback.completed" if kind == "rollback" else "deployment.completed"
    source = {"from_version": model.flight.get("from_version", "v1")} if model.flight and kind == "rollback" \
        else ({"from_version": "v1"} if kind == "rollback" else {})
    return _raw(event, step.key, version=target, **source)


# -- running a sequence --------------------------------------------------------------------------


def expected_writes(outcome: Any) -> int:
    if outcome.replayed:
        return 0
    if isinstance(outcome.decision, Refused):
        return 1
    records = outcome.decision.records
    assert len(records) == (2 if records[0]["event"] == "move.superseded" else 1), records
    return len(records)


def run_step(app: App, step: Any) -> int:
    """Submit one step through `app`; return how many records it should have written."""
    try:
        if isinstance(step, Deploy | Complete | Fail | Judge | Rollback):
            return expected_writes(app.service.submit(FLEET, step))
        if step["event"].startswith(("worker.", "deployment.drain")):
            app.ledger.append(FLEET, step)
            return 1
        return expected_writes(app.service.submit_record(FLEET, step))
    except InputError:
        return 0


def views_answers(views: Projections) -> dict[str, Any]:
    plain, for_rollback = views.last_good(FLEET), views.last_good(FLEET, for_rollback=True)
    return {
        "history": views.history(FLEET),
        "last_good": plain.to_dict() if plain else None,
        "rollback_target": for_rollback.to_dict() if for_rollback else None,
        "fleet": views.fleet(FLEET),
    }


def check_sequence(db: str, key: Path, workdir: Path, sequence: list[Any]) -> None:
    Ledger.init(db, key, actor="test").close()
    model = Model()
    second_views = workdir / "second.projections.db"  # its own views: it must catch up before deciding
    with open_app(db, key, notice=quiet) as first, \
            open_app(db, key, projections=second_views, notice=quiet) as second:
        writers = (first, second)
        for number, step in enumerate(sequence):
            app = writers[number % 2]
            before = app.ledger.head(FLEET).seq
            wrote = run_step(app, resolve(step, model))
            new = list(app.ledger.records(FLEET, after=before))
            assert len(new) == wrote, (step, [r["event"] for r in new])
            for record in new:
                model.apply(record)
            if app.ledger.head(FLEET).seq == 0:
                continue
            answer = app.views.last_good(FLEET)
            assert (answer.version if answer else None) == model.last_good(), (number, step)
            if answer is not None:
                assert model.good(answer.version), answer
            target = app.views.last_good(FLEET, for_rollback=True)
            expected = model.last_good(leaving=model.current)
            assert (target.version if target else None) == expected, (number, step)
        if first.ledger.head(FLEET).seq == 0:
            return
        caught_up = views_answers(first.views)
        assert views_answers(second.views) == caught_up
        with Projections(first.ledger.store, workdir / "fresh.projections.db", notice=quiet) as fresh:
            fresh.rebuild()
            assert views_answers(fresh) == caught_up


SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(sequence=steps)
def test_two_writers_never_make_a_bad_or_unfinished_version_last_good_sqlite(sequence: list[Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="gate-prop-") as tmp:
        work = Path(tmp)
        check_sequence(str(work / "ledger.db"), work / "ledger.key", work, sequence)


@pytest.fixture(scope="module")
def pg_schemas(pg_url: str) -> Iterator[list[str]]:
    """Fresh schemas handed out one per example, dropped at the end."""
    made: list[str] = []
    yield made
    with _connect(pg_url) as c:
        for name in made:
            c.execute(f'DROP SCHEMA "{name}" CASCADE')


def new_schema(pg_url: str, made: list[str]) -> str:
    name = f"p_{uuid.uuid4().hex[:12]}"
    with _connect(pg_url) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
    made.append(name)
    return f"{pg_url}{'&' if '?' in pg_url else '?'}schema={name}"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_two_writers_never_make_a_bad_or_unfinished_version_last_good_postgres(
    pg_url: str, pg_schemas: list[str], sequence: list[Any]
) -> None:
    with tempfile.TemporaryDirectory(prefix="gate-prop-") as tmp:
        work = Path(tmp)
        db = new_schema(pg_url, pg_schemas)
        check_sequence(db, work / "ledger.key", work, sequence)
