"""Fleet histories as tables, shared by the rules tests and the projection tests.

Each case is a list of (fleet, body) in ledger order: the rules tests fold
them as plain records, and the projection tests append them to a real ledger
and ask the read models, so both must give the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import commands as build

Body = dict[str, Any]
Step = tuple[str, Body]
A, B = "prod-eu", "prod-us"


def deploy(version: str, source: str | None = None) -> Body:
    return build.deploy(version, "ci", f"release {version}", source)


def complete(version: str) -> Body:
    return build.complete(version, "ci")


def rollback(to: str, source: str, reason: str = "elevated session errors") -> Body:
    return {"event": "deployment.rolled_back", "actor": "on-call", "target": "fleet",
            "result": "success", "version": to, "from_version": source, "reason": reason}


def rollback_done(to: str, source: str) -> Body:
    return {"event": "rollback.completed", "actor": "driver", "target": "fleet",
            "result": "success", "version": to, "from_version": source}


def rollback_failed(to: str, source: str) -> Body:
    return {"event": "rollback.failed", "actor": "driver", "target": "fleet", "result": "failure",
            "version": to, "from_version": source, "reason": "drain timed out"}


def rejected(check: str = "target_not_good") -> Body:
    return {"event": "rollback.rejected", "actor": "on-call", "target": "fleet",
            "result": "rejected", "check": check, "reason": "try it"}


def deploy_failed(version: str) -> Body:
    return {"event": "deployment.failed", "actor": "driver", "target": "fleet", "result": "failure",
            "version": version, "reason": "workers did not start"}


def drain_version(version: str) -> Body:
    return {"event": "deployment.drain_started", "actor": "driver", "target": "fleet",
            "result": "success", "version": version}


def verified(version: str) -> Body:
    return build.verdict("version.verified", version, "qa", "canary healthy")


def marked_bad(version: str) -> Body:
    return build.verdict("version.marked_bad", version, "qa", "memory leak")


def cleared(version: str) -> Body:
    return build.verdict("version.cleared", version, "release-manager", "fixed config, cleared")


def start(worker: str, version: str) -> Body:
    return build.worker_start(worker, version, "platform")


def sessions(worker: str, version: str, n: int) -> Body:
    return build.worker_sessions(worker, version, n, worker)


def drain(worker: str, version: str) -> Body:
    return build.worker_drain(worker, version, "driver")


def exited(worker: str, version: str, n: int = 0) -> Body:
    return build.worker_exit(worker, version, n, "driver")


def on(fleet: str, *bodies: Body) -> list[Step]:
    return [(fleet, body) for body in bodies]


def released(*versions: str, fleet: str = A) -> list[Step]:
    """Each version deployed and completed, in order."""
    steps: list[Step] = []
    for version in versions:
        steps += on(fleet, deploy(version), complete(version))
    return steps


@dataclass(frozen=True)
class LastGoodCase:
    """After `steps`, the last-good version of `fleet` when leaving `leaving` is `expected`."""

    id: str
    steps: Sequence[Step]
    expected: str | None
    leaving: str | None = None
    fleet: str = A
    #: versions that must not be last-good whatever version is left
    never: tuple[str, ...] = ()
    #: the seq of the record that made `expected` good, when the case pins it
    evidence_seq: int | None = None
    for_rollback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


V3_ROLLED_BACK = [*released("v1", "v2", "v3"), *on(A, rollback("v2", "v3"))]
V2_REDEPLOYED = [*released("v1", "v2"), *on(A, rollback("v1", "v2"), rollback_done("v1", "v2"),
                                            deploy("v2"), complete("v2"), verified("v2"))]

LAST_GOOD_CASES = [
    LastGoodCase("v1-completed-is-last-good", released("v1"), "v1", evidence_seq=2),
    LastGoodCase("v1-completed-rollback-from-v1-has-nowhere-to-go", released("v1"), None,
                 leaving="v1"),
    LastGoodCase("v2-started-not-completed-rollback-from-v2-is-v1",
                 [*released("v1"), *on(A, deploy("v2", "v1"))], "v1", leaving="v2", never=("v2",),
                 evidence_seq=2),
    LastGoodCase("v2-started-not-completed-plain-is-v1",
                 [*released("v1"), *on(A, deploy("v2", "v1"))], "v1"),
    LastGoodCase("v2-started-for-rollback-is-v1",
                 [*released("v1"), *on(A, deploy("v2", "v1"))], "v1", for_rollback=True),
    LastGoodCase("v3-rolled-back-to-v2-next-is-v1", V3_ROLLED_BACK, "v1", leaving="v2",
                 never=("v3",)),
    LastGoodCase("v3-rolled-back-plain-is-v2", V3_ROLLED_BACK, "v2", never=("v3",)),
    LastGoodCase("v3-rolled-back-v4-started-is-v2",
                 [*V3_ROLLED_BACK, *on(A, rollback_done("v2", "v3"), deploy("v4", "v2"))], "v2",
                 leaving="v4", never=("v3",)),
    LastGoodCase("v3-rolled-back-v4-completed-is-v2",
                 [*V3_ROLLED_BACK, *on(A, rollback_done("v2", "v3"), deploy("v4", "v2"),
                                       complete("v4"))], "v2", leaving="v4", never=("v3",)),
    LastGoodCase("v3-returns-after-recorded-clearing",
                 [*V3_ROLLED_BACK, *on(A, rollback_done("v2", "v3"), deploy("v4", "v2"),
                                       cleared("v3"))], "v3", leaving="v2", evidence_seq=10),
    LastGoodCase("v3-not-back-without-clearing-even-when-verified",
                 [*V3_ROLLED_BACK, *on(A, rollback_done("v2", "v3"), verified("v3"),
                                       deploy("v4", "v2"))], "v1", leaving="v2", never=("v3",)),
    LastGoodCase("started-drained-abandoned-never-good",
                 [*released("v1"), *on(A, deploy("v2"), start("w2", "v2"), drain_version("v2"),
                                    drain("w2", "v2"), exited("w2", "v2"), deploy("v3"))],
                 "v1", leaving="v3", never=("v2", "v3")),
    LastGoodCase("abandoned-stays-not-good-after-later-release",
                 [*released("v1"), *on(A, deploy("v2"), drain_version("v2")), *released("v3")],
                 "v1", leaving="v3", never=("v2",)),
    LastGoodCase("worker-records-alone-never-make-good",
                 on(A, start("w1", "v9"), sessions("w1", "v9", 4), drain("w1", "v9"),
                    exited("w1", "v9")), None, never=("v9",)),
    LastGoodCase("workers-all-on-new-version-is-not-completion",
                 [*released("v1"), *on(A, start("w1", "v1"), deploy("v2"), start("w2", "v2"),
                                    sessions("w2", "v2", 3), drain("w1", "v1"), exited("w1", "v1"))],
                 "v1", leaving="v2", never=("v2",)),
    LastGoodCase("two-fleets-independent-eu",
                 [*released("v1", fleet=A), *released("v1", "v2", fleet=B), *on(B, deploy("v3"))],
                 "v1", fleet=A, never=("v2", "v3")),
    LastGoodCase("two-fleets-independent-us",
                 [*released("v1", fleet=A), *released("v1", "v2", fleet=B), *on(B, deploy("v3"))],
                 "v2", leaving="v3", fleet=B),
    LastGoodCase("two-fleets-rollback-in-one-only",
                 [*released("v1", "v2", fleet=A), *released("v1", "v2", fleet=B),
                  *on(A, rollback("v1", "v2"))],
                 "v2", fleet=B),
    LastGoodCase("two-fleets-rollback-in-one-only-other-side",
                 [*released("v1", "v2", fleet=A), *released("v1", "v2", fleet=B),
                  *on(A, rollback("v1", "v2"))],
                 "v1", fleet=A, never=("v2",)),
    LastGoodCase("redeployed-after-rollback-completed-verified-stays-bad", V2_REDEPLOYED, "v1",
                 never=("v2",)),
    LastGoodCase("redeployed-after-rollback-good-after-clearing",
                 [*V2_REDEPLOYED, *on(A, cleared("v2"))], "v2", evidence_seq=10),
    LastGoodCase("redeployed-after-rollback-cleared-rollback-from-it-is-v1",
                 [*V2_REDEPLOYED, *on(A, cleared("v2"))], "v1", for_rollback=True),
    LastGoodCase("cleared-before-redeploy-good-again-from-old-completion",
                 [*released("v1", "v2"), *on(A, rollback("v1", "v2"), rollback_done("v1", "v2"),
                                             cleared("v2"))], "v2", leaving="v1", evidence_seq=7),
    LastGoodCase("marked-bad-excluded",
                 [*released("v1", "v2"), *on(A, marked_bad("v1"))], None, leaving="v2",
                 never=("v1",)),
    LastGoodCase("marked-bad-then-cleared",
                 [*released("v1", "v2"), *on(A, marked_bad("v1"), cleared("v1"))], "v1",
                 leaving="v2", evidence_seq=6),
    LastGoodCase("marked-bad-before-it-was-ever-deployed",
                 [*on(A, marked_bad("v2")), *released("v1", "v2")], "v1", never=("v2",)),
    LastGoodCase("verified-alone-never-makes-good",
                 [*released("v1"), *on(A, deploy("v2"), verified("v2"))], "v1", never=("v2",)),
    LastGoodCase("verified-adds-evidence",
                 [*released("v1", "v2"), *on(A, verified("v1"))], "v1", leaving="v2",
                 extra={"verified_seq": 5}),
    LastGoodCase("newest-is-the-latest-to-run-the-fleet-not-the-previous-entry",
                 [*released("v1", "v2", "v3"), *on(A, rollback("v1", "v3"), rollback_done("v1", "v3")),
                  *released("v4")], "v1", leaving="v4", never=("v3",)),
    LastGoodCase("rollback-failed-leaves-source-current-retry-targets-v1",
                 [*released("v1", "v2"), *on(A, rollback("v1", "v2"), rollback_failed("v1", "v2"))],
                 "v1", for_rollback=True, never=("v2",)),
    LastGoodCase("deploy-failed-rollback-from-it-is-v1",
                 [*released("v1"), *on(A, deploy("v2"), deploy_failed("v2"))], "v1",
                 for_rollback=True, never=("v2",)),
    LastGoodCase("rejected-rollback-changes-nothing",
                 [*released("v1", "v2"), *on(A, rejected())], "v1", for_rollback=True),
]


@dataclass(frozen=True)
class StatusCase:
    id: str
    steps: Sequence[Step]
    statuses: dict[str, str]
    current: str | None
    in_flight: tuple[str, str] | None  # (kind, version)


STATUS_CASES = [
    StatusCase("rolling-out", [*released("v1"), *on(A, deploy("v2"))],
               {"v1": "superseded", "v2": "rolling_out"}, "v2", ("deploy", "v2")),
    StatusCase("live-and-superseded", released("v1", "v2"), {"v1": "superseded", "v2": "live"},
               "v2", None),
    StatusCase("abandoned", [*released("v1"), *on(A, deploy("v2"), deploy("v3"))],
               {"v1": "superseded", "v2": "abandoned", "v3": "rolling_out"}, "v3", ("deploy", "v3")),
    StatusCase("rollback-in-flight", V3_ROLLED_BACK,
               {"v1": "superseded", "v2": "rolling_out", "v3": "rolled_back"}, "v2",
               ("rollback", "v2")),
    StatusCase("rollback-completed", [*V3_ROLLED_BACK, *on(A, rollback_done("v2", "v3"))],
               {"v1": "superseded", "v2": "live", "v3": "rolled_back"}, "v2", None),
    StatusCase("rollback-failed", [*V3_ROLLED_BACK, *on(A, rollback_failed("v2", "v3"))],
               {"v1": "superseded", "v2": "superseded", "v3": "rolled_back"}, "v3", None),
    StatusCase("rolled-back-mid-rollout",
               [*released("v1"), *on(A, deploy("v2"), rollback("v1", "v2"), rollback_done("v1", "v2"))],
               {"v1": "live", "v2": "rolled_back"}, "v1", None),
    StatusCase("rolled-back-cleared-completed-before", [*V3_ROLLED_BACK, *on(A, cleared("v3"))],
               {"v3": "superseded"}, "v2", ("rollback", "v2")),
    StatusCase("rolled-back-mid-rollout-cleared",
               [*released("v1"), *on(A, deploy("v2"), rollback("v1", "v2"), cleared("v2"))],
               {"v2": "abandoned"}, "v1", ("rollback", "v1")),
    StatusCase("marked-bad-live", [*released("v1"), *on(A, marked_bad("v1"))], {"v1": "marked_bad"},
               "v1", None),
    StatusCase("deploy-failed", [*released("v1"), *on(A, deploy("v2"), deploy_failed("v2"))],
               {"v1": "superseded", "v2": "failed"}, "v2", None),
    StatusCase("redeploy-rolling-out-while-bad", [*V3_ROLLED_BACK, *on(A, deploy("v3"))],
               {"v3": "rolling_out", "v2": "superseded"}, "v3", ("deploy", "v3")),
    StatusCase("completion-ends-any-flight", [*released("v1"), *on(A, deploy("v2"), complete("v1"))],
               {"v1": "live", "v2": "abandoned"}, "v1", None),
]


@dataclass(frozen=True)
class FleetCase:
    id: str
    steps: Sequence[Step]
    summary: dict[str, Any]
    workers: dict[str, tuple[str, bool, int]]  # live worker -> (version, draining, sessions)
    exits: tuple[str, ...] = ()


FLEET_CASES = [
    FleetCase("empty-of-workers", released("v1"),
              {"live_workers": 0, "versions": {}, "draining": 0, "sessions_on_non_current": 0,
               "clean": False}, {}),
    FleetCase("clean-on-current",
              [*released("v1"), *on(A, start("w1", "v1"), start("w2", "v1"), sessions("w1", "v1", 3))],
              {"live_workers": 2, "versions": {"v1": 2}, "draining": 0, "sessions_on_non_current": 0,
               "clean": True}, {"w1": ("v1", False, 3), "w2": ("v1", False, 0)}),
    FleetCase("mid-rollout-draining-old",
              [*released("v1"), *on(A, start("w1", "v1"), start("w2", "v1"), sessions("w1", "v1", 3),
                                     sessions("w2", "v1", 2), deploy("v2"), start("w3", "v2"),
                                     drain("w1", "v1"), drain("w1", "v1"))],
              {"live_workers": 3, "versions": {"v1": 2, "v2": 1}, "draining": 1,
               "sessions_on_non_current": 5, "clean": False},
              {"w1": ("v1", True, 3), "w2": ("v1", False, 2), "w3": ("v2", False, 0)}),
    FleetCase("version-wide-drain-marks-its-workers",
              [*released("v1"), *on(A, start("w1", "v1"), start("w2", "v1"), deploy("v2"),
                                     start("w3", "v2"), drain_version("v1"))],
              {"live_workers": 3, "draining": 2, "clean": False},
              {"w1": ("v1", True, 0), "w2": ("v1", True, 0), "w3": ("v2", False, 0)}),
    FleetCase("old-exited-clean-again",
              [*released("v1"), *on(A, start("w1", "v1"), sessions("w1", "v1", 2), deploy("v2"),
                                     start("w2", "v2"), drain("w1", "v1"), sessions("w1", "v1", 0),
                                     exited("w1", "v1"), complete("v2"))],
              {"live_workers": 1, "versions": {"v2": 1}, "draining": 0, "sessions_on_non_current": 0,
               "clean": True, "dropped_sessions": 0}, {"w2": ("v2", False, 0)}, exits=("w1",)),
    FleetCase("exit-with-sessions-is-dropped-calls",
              [*released("v1"), *on(A, start("w1", "v1"), exited("w1", "v1", 4))],
              {"live_workers": 0, "dropped_sessions": 4, "clean": False}, {}, exits=("w1",)),
    FleetCase("stale-version-worker-unclean",
              [*released("v1", "v2"), *on(A, start("w1", "v1"))],
              {"live_workers": 1, "versions": {"v1": 1}, "clean": False}, {"w1": ("v1", False, 0)}),
    FleetCase("exits-before-the-latest-move-are-not-listed",
              [*released("v1"), *on(A, start("w1", "v1"), exited("w1", "v1")), *released("v2")],
              {"live_workers": 0}, {}),
]


# -- random histories (for hypothesis) ----------------------------------------------

VERSIONS = ("v1", "v2", "v3", "v4")
WORKERS = ("w1", "w2", "w3")


def random_bodies() -> Any:
    """A hypothesis strategy of schema-valid bodies over a few versions and workers."""
    from hypothesis import strategies as st

    version = st.sampled_from(VERSIONS)
    worker = st.sampled_from(WORKERS)
    count = st.integers(0, 5)
    return st.one_of(
        st.builds(deploy, version),
        st.builds(complete, version),
        st.builds(complete, version),
        st.builds(rollback, version, version),
        st.builds(rollback_done, version, version),
        st.builds(rollback_failed, version, version),
        st.builds(deploy_failed, version),
        st.builds(verified, version),
        st.builds(marked_bad, version),
        st.builds(cleared, version),
        st.builds(drain_version, version),
        st.builds(start, worker, version),
        st.builds(sessions, worker, version, count),
        st.builds(drain, worker, version),
        st.builds(exited, worker, version, count),
        st.builds(rejected),
    )


def random_steps(max_size: int = 40) -> Any:
    """A hypothesis strategy of (fleet, body) steps over two fleets."""
    from hypothesis import strategies as st

    return st.lists(st.tuples(st.sampled_from((A, B)), random_bodies()), min_size=1, max_size=max_size)
