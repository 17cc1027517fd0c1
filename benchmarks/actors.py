"""What proving who did it costs: each figure a ratio against a baseline measured in the same run.

    python -m benchmarks.actors [--full] [--rollbacks N] [--reports N] [--decisions N] [--json]

Figures:

- ``signed-rollback``: p50 latency of a signed, gated rollback decision in an enforced
  ledger (the actor's envelope signed, then checked by the gate: signature, key, nonce,
  expiry, role) vs an unsigned rollback in an open ledger; the two are timed alternately,
  each on a fresh version deployed and completed (untimed) before it (goal <= 1.5).
- ``signed-report``: p50 latency of a worker fact signed by a reporter bound to the
  worker and checked by the gate (``ledger.reporter.report_fact``: signature, key, nonce,
  expiry, binding, and the write held to the policy position) in an enforced ledger vs
  the same fact appended unsigned in an open ledger; timed alternately (goal <= 2.0).
- ``verify-signed``: records/s of ``Ledger.verify()`` over a fleet of ``--decisions``
  signed decision records (each one actor signature to check, plus the ledger's own
  proof) vs the Ed25519 verify rate of ``cryptography`` on all cores, measured before
  and after (goal >= 0.8).

Every ledger is a real SQLite file in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BASELINE_SIGNATURES,
    Figure,
    Log,
    crypto_verify_rate,
    measured,
    parser_for,
    percentile,
    run_main,
)
from ledger import commands
from ledger.actors import ActorSigner
from ledger.api import Ledger
from ledger.app import App, open_app
from ledger.decide import Complete, Deploy, Meta, Rollback
from ledger.envelope import seal_envelope
from ledger.policy import POLICY_CHAIN
from ledger.policy_decide import AddActor, EnablePolicy
from ledger.reporter import report_fact
from ledger.rollback import RollbackRequest

QUICK = {"rollbacks": 60, "reports": 200, "decisions": 10_000}
FULL = {"rollbacks": 300, "reports": 1000, "decisions": 100_000}
FLEET = "bench"
CHUNK = 1000


def _ledger(root: Path, name: str) -> tuple[Path, Path]:
    db, key = root / f"{name}.db", root / f"{name}.key"
    Ledger.init(db, key, actor="bench").close()
    return db, key


@contextlib.contextmanager
def _open_and_enforced(root: Path, name: str, signer: ActorSigner | None = None) -> Iterator[tuple[App, App]]:
    """Two fresh ledgers, opened: one in open mode, one to enforce a policy on (its app signs as
    `signer`): the two sides of a signed-versus-unsigned figure."""
    open_db, open_key = _ledger(root, f"open-{name}")
    signed_db, signed_key = _ledger(root, f"enforced-{name}")
    with open_app(open_db, open_key, projections=root / f"open-{name}-views.db") as plain, \
            open_app(signed_db, signed_key, projections=root / f"enforced-{name}-views.db",
                     signer=signer) as enforced:
        yield plain, enforced


def _p50_ratio(signed: list[float], unsigned: list[float]) -> tuple[float, float, float]:
    """(signed p50 ms, unsigned p50 ms, their ratio)."""
    ours, baseline = percentile(signed, 0.5) * 1000, percentile(unsigned, 0.5) * 1000
    return ours, baseline, ours / baseline


def _enforce(app: App, admin: ActorSigner, *actors: tuple[ActorSigner, tuple[str, ...]]) -> None:
    service = app.service
    assert service.submit_policy(EnablePolicy(Meta(admin.name), admin=admin.name,
                                              admin_keys=(admin.public_raw,))).accepted
    for signer, roles in actors:
        command = AddActor(signer.name, (signer.public_raw,), roles, Meta(admin.name))
        assert service.submit_policy(command, signer=admin).accepted


def _cycle(app: App, version: str, previous: str | None, who: str) -> float:
    """Deploy and complete `version` (untimed), then roll it back (timed) and settle it."""
    service = app.service
    assert service.submit(FLEET, Deploy(version, Meta(who))).accepted
    assert service.submit(FLEET, Complete(version, Meta(who))).accepted
    if previous is None:
        return 0.0
    request = RollbackRequest(FLEET, who, "bench: roll back")
    start = time.perf_counter()
    outcome = service.submit(FLEET, Rollback(request, Meta(who, "bench: roll back")))
    elapsed = time.perf_counter() - start
    assert outcome.accepted, outcome.decision
    assert service.submit(FLEET, Complete(previous, Meta(who), evidence="bench")).accepted
    return elapsed


def figure_signed_rollback(root: Path, n: int, log: Log) -> Figure:
    # One actor who may deploy and roll back, so both ledgers run the same commands.
    admin, ops = ActorSigner.generate("admin"), ActorSigner.generate("ops")
    unsigned: list[float] = []
    signed: list[float] = []
    with _open_and_enforced(root, "decisions", ops) as (plain, enforced):
        _enforce(enforced, admin, (ops, ("deployer", "oncall")))
        _cycle(plain, "v0", None, ops.name)
        _cycle(enforced, "v0", None, ops.name)
        for i in range(1, n + 1):
            unsigned.append(_cycle(plain, f"v{i}", "v0", ops.name))
            signed.append(_cycle(enforced, f"v{i}", "v0", ops.name))
            if i % 20 == 0:
                log(f"signed-rollback: {i}/{n} pairs")
    ours, baseline, ratio = _p50_ratio(signed, unsigned)
    return Figure("signed-rollback", f"signed gated rollback decision, p50 of {n}", ours, baseline, "ms",
                  ratio, "<= 1.5", ratio <= 1.5,
                  "baseline: the same unsigned rollback through the gate of an open ledger")


def figure_signed_report(root: Path, n: int, log: Log) -> Figure:
    admin, reporter = ActorSigner.generate("admin"), ActorSigner.generate("pool-reporter")
    unsigned: list[float] = []
    signed: list[float] = []
    with _open_and_enforced(root, "facts") as (plain, enforced):
        _enforce(enforced, admin)
        bind = AddActor(reporter.name, (reporter.public_raw,), ("reporter",), Meta(admin.name),
                        workers=("w-*",))
        assert enforced.service.submit_policy(bind, signer=admin).accepted
        for i in range(n):
            body = commands.worker_sessions(f"w-{i % 8}", "v1", i % 5, reporter.name, ok=i, error=0,
                                            dropped=0)
            start = time.perf_counter()
            plain.ledger.append(FLEET, body)
            unsigned.append(time.perf_counter() - start)
            start = time.perf_counter()
            outcome = report_fact(enforced.service, FLEET, body, reporter)
            signed.append(time.perf_counter() - start)
            assert outcome.accepted, outcome.decision
            if (i + 1) % 100 == 0:
                log(f"signed-report: {i + 1}/{n} pairs")
    ours, baseline, ratio = _p50_ratio(signed, unsigned)
    return Figure("signed-report", f"reporter-signed worker fact, p50 of {n}", ours, baseline, "ms",
                  ratio, "<= 2.0", ratio <= 2.0,
                  "baseline: the same fact appended unsigned to an open ledger")


def _signed_decisions(ledger: Ledger, signer: ActorSigner, n: int, policy_seq: int) -> None:
    """`n` signed `version.verified` decisions, written in chunks as the gate would record them."""
    for start in range(0, n, CHUNK):
        bodies: list[dict[str, Any]] = []
        for i in range(start, min(n, start + CHUNK)):
            args = {"verdict": "version.verified", "version": "v1", "reason": f"check {i}"}
            signed = seal_envelope(signer, ledger=ledger.ledger_id, fleet=FLEET, action="mark", args=args,
                                   minutes=60)
            bodies.append({"event": "version.verified", "actor": signer.name, "target": "fleet",
                           "result": "success", "version": "v1", "reason": f"check {i}",
                           "actor_verified": True, "policy_seq": policy_seq, **signed.fields()})
        ledger._append_chunk(FLEET, [Ledger.validate(b, gated=True) for b in bodies])


def figure_verify_signed(root: Path, n: int, log: Log) -> Figure:
    db, key = _ledger(root, "verify")
    admin, dave = ActorSigner.generate("admin"), ActorSigner.generate("dave")
    with open_app(db, key, projections=root / "verify-views.db") as app:
        _enforce(app, admin, (dave, ("deployer",)))
        policy_seq = app.service.authority.policy().seq
        log(f"verify-signed: writing {n:,} signed decisions")
        _signed_decisions(app.ledger, dave, n, policy_seq)
    workers = os.cpu_count() or 1
    before = crypto_verify_rate(BASELINE_SIGNATURES, workers)
    with Ledger.open(db, key, writable=False) as ledger:
        public = ledger.current_key()[1]
        start = time.perf_counter()
        report = ledger.verify(public, all_signatures=False)
        elapsed = time.perf_counter() - start
        assert report.actors.signed_decisions == n, report.actors
        assert any(c.chain == FLEET for c in report.chains) and ledger.head(POLICY_CHAIN).seq > 0
    after = crypto_verify_rate(BASELINE_SIGNATURES, workers)
    rate, baseline = n / elapsed, (before + after) / 2
    ratio = rate / baseline
    return Figure("verify-signed", f"verify of {n:,} signed decisions", rate, baseline, "rec/s", ratio,
                  ">= 0.8", ratio >= 0.8,
                  f"baseline: Ed25519 verifies/s on {workers} core(s), one per record (the actor's)")


FIGURES = ("signed-rollback", "signed-report", "verify-signed")


def run(args: argparse.Namespace, log: Log) -> tuple[Sequence[Figure], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-actors-") as tmp:
        root = Path(tmp)
        log("measuring signed-rollback ...")
        first = measured(log, figure_signed_rollback(root, args.rollbacks, log))
        log("measuring signed-report ...")
        report = measured(log, figure_signed_report(root, args.reports, log))
        log("measuring verify-signed ...")
        second = measured(log, figure_verify_signed(root, args.decisions, log))
    return [first, report, second], {}


def build_parser() -> argparse.ArgumentParser:
    return parser_for("actors", __doc__ or "", {"rollbacks": "rollback pairs timed",
                                                "reports": "signed and unsigned fact pairs timed",
                                                "decisions": "signed decisions verified"}, QUICK, FULL)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, QUICK, FULL, run)


if __name__ == "__main__":
    raise SystemExit(main())
