"""The group committer on real ledgers (SQLite file, PostgreSQL schema): concurrent reports share
transactions, each is answered with its own records in its own order, a refused report fails
alone, and a report carrying OpenRTC identities is stored once even when two committers (two
server processes' worth) take it at the same time."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from ledger import commands as build
from ledger.errors import HeadMovedError, RecordError
from ledger.openrtc.mapping import SOURCE
from ledger.service.commit import GroupCommitter, ReportResult
from tests.conftest import Env

FLEET = "prod"


def keyed(n: int, instance: str = "host-a/1/0001") -> dict[str, Any]:
    return {**build.worker_sessions("w1", "v1", n, "platform"), "source": SOURCE,
            "source_instance": instance, "source_digest": f"{n:064x}"}


def committer(env: Env) -> GroupCommitter:
    return GroupCommitter(lambda: env.open())


def test_concurrent_reports_share_commits_and_each_gets_its_own_receipts(env: Env) -> None:
    gate = threading.Event()
    first = threading.Event()
    writer = committer(env)

    def hold_the_first_commit() -> None:  # the rest queue up meanwhile: one group
        if not first.is_set():
            first.set()
            gate.wait(10)

    writer.on_commit = hold_the_first_commit
    reports = [[build.worker_sessions(f"w{i}", "v1", j, "platform") for j in range(1 + i % 3)]
               for i in range(30)]

    async def run() -> list[ReportResult]:
        head = asyncio.ensure_future(writer.submit(FLEET, reports[0], 0))
        while not first.is_set():
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(writer.submit(FLEET, r, 0)) for r in reports[1:]]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(head, *rest)

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert writer.commits == 2 and writer.reports == 30  # the first alone, the 29 others together
    seqs = [r.seq for result in results for r in result.receipts]
    assert seqs == list(range(1, sum(len(r) for r in reports) + 1))  # in arrival order, no gaps
    with env.open(writable=False) as lg:
        stored = list(lg.records(FLEET))
    for result, sent in zip(results, reports, strict=True):  # each answer names its own records
        assert len(result.receipts) == len(sent) and result.duplicates == 0
        for receipt, body in zip(result.receipts, sent, strict=True):
            record = stored[receipt.seq - 1]
            assert record["hash"] == receipt.hash and record["target"] == body["target"]
            assert record["active_sessions"] == body["active_sessions"]


def test_a_refused_report_fails_alone_and_its_group_commits(env: Env) -> None:
    writer = committer(env)
    good = [[build.worker_sessions("w1", "v1", i, "platform")] for i in range(5)]
    bad = [build.worker_sessions("w1", "v1", 9, "platform"), {"event": "worker.sessions"}]

    async def run() -> list[ReportResult | BaseException]:
        jobs = [writer.submit(FLEET, r, 0) for r in good[:2]] + [writer.submit(FLEET, bad, 0)]
        jobs += [writer.submit(FLEET, r, 0) for r in good[2:]]
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    refused = results[2]
    assert isinstance(refused, RecordError) and str(refused).startswith("record 2")
    landed = [r for r in results if isinstance(r, ReportResult)]
    assert sorted(x.seq for r in landed for x in r.receipts) == [1, 2, 3, 4, 5]
    with env.open(writable=False) as lg:
        assert sorted(r["active_sessions"] for r in lg.records(FLEET)) == [0, 1, 2, 3, 4]  # not 9


def test_two_committers_store_a_retried_report_once(env: Env) -> None:
    """Two writers (as in two server processes) given the same identities at once: each
    identity is stored once, and every report is told how many it already found."""
    with env.open() as lg:
        lg.append(FLEET, build.worker_start("w1", "v1", "platform"))
    writers = [committer(env), committer(env)]
    rounds = 6
    batches = [[keyed(n) for n in range(r * 5, r * 5 + 5)] for r in range(rounds)]

    async def run() -> list[ReportResult]:
        jobs = [w.submit(FLEET, batch, 0) for batch in batches for w in writers]  # each batch twice
        return await asyncio.gather(*jobs)

    started = time.monotonic()
    try:
        results = asyncio.run(run())
    finally:
        for w in writers:
            w.close()
    assert time.monotonic() - started < 60
    assert sum(len(r.receipts) for r in results) == rounds * 5
    assert sum(r.duplicates for r in results) == rounds * 5
    with env.open(writable=False) as lg:
        digests = [r["source_digest"] for r in lg.records(FLEET) if "source_digest" in r]
    assert sorted(digests) == sorted(f"{n:064x}" for n in range(rounds * 5))


def test_append_many_at_a_head_writes_only_there(env: Env) -> None:
    with env.open() as lg:
        lg.append(FLEET, build.worker_start("w1", "v1", "platform"))
        bodies = [build.worker_sessions("w1", "v1", n, "platform") for n in range(3)]
        with pytest.raises(HeadMovedError):
            lg.append_many(FLEET, bodies, expect_seq=0)  # the head is at 1: nothing written
        assert lg.head(FLEET).seq == 1
        assert [r.seq for r in lg.append_many(FLEET, bodies, expect_seq=1)] == [2, 3, 4]
        with pytest.raises(ValueError, match="one transaction"):
            lg.append_many(FLEET, bodies, chunk=2, expect_seq=4)
        assert lg.head(FLEET).seq == 4
