"""Concurrent writers never fork a chain, and nothing acknowledged is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson

from tests.conftest import Env

WRITER = textwrap.dedent("""
    import sys
    from ledger import Ledger
    from ledger import commands
    db, key, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Ledger.open(db, key) as lg:
        for i in range(count):
            receipt = lg.append("prod", commands.worker_sessions(name, "v1", i, name))
            print(receipt.seq, receipt.hash, flush=True)
""")


def test_two_processes_appending_to_one_fleet_make_one_chain(env: Env) -> None:
    count = 150
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, env.db, str(env.key), name, str(count)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name in ("writer-a", "writer-b")
    ]
    acknowledged: dict[str, list[tuple[int, str]]] = {}
    for name, proc in zip(("writer-a", "writer-b"), writers, strict=True):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        acknowledged[name] = [(int(s), h) for s, h in (line.split() for line in out.decode().splitlines())]
        assert len(acknowledged[name]) == count

    with env.open(writable=False) as lg:
        report = lg.verify()
        records = list(lg.records("prod"))
    assert report.chains[0].count == 2 * count
    by_seq = {r["seq"]: r for r in records}
    for name, receipts in acknowledged.items():
        for seq, digest in receipts:
            assert by_seq[seq]["hash"] == digest
            assert by_seq[seq]["actor"] == name
    # each writer's records appear once each, in the order it wrote them
    for name in acknowledged:
        mine = [r["active_sessions"] for r in records if r["actor"] == name]
        assert mine == list(range(count))


def test_an_acknowledged_append_survives_the_process(env: Env) -> None:
    """The receipt is printed only after commit; a new process reads it back."""
    done = subprocess.run([sys.executable, "-c", WRITER, env.db, str(env.key), "solo", "1"],
                          capture_output=True, timeout=60, check=True)
    seq, digest = done.stdout.decode().split()
    with env.open(writable=False) as lg:
        stored = orjson.loads(next(lg.raw_records("prod")))
    assert (stored["seq"], stored["hash"]) == (int(seq), digest)


def test_sqlite_commits_are_fully_synchronous(sqlite_env: Env) -> None:
    """WAL with synchronous=FULL: every commit is fsynced before save() returns."""
    with sqlite_env.open() as lg, lg.store.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_four_processes_appending_a_thousand_each_make_one_chain(env: Env) -> None:
    count, names = 1000, [f"writer-{i}" for i in range(4)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, env.db, str(env.key), name, str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in names]
    acknowledged = set()
    for proc in writers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert len(lines) == count
        acknowledged |= {(int(s), h) for s, h in (line.split() for line in lines)}
    with env.open(writable=False) as lg:
        assert lg.verify().chains[0].count == 4 * count
        stored = {(r["seq"], r["hash"]) for r in lg.records("prod")}
        facts = [(r["actor"], r["active_sessions"]) for r in lg.records("prod")]
    assert stored == acknowledged
    assert sorted(facts) == sorted((n, i) for n in names for i in range(count))


BATCH_WRITER = textwrap.dedent("""
    import sys
    from ledger import Ledger
    from ledger import commands
    db, key, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Ledger.open(db, key) as lg:
        bodies = [commands.worker_sessions(name, "v1", i, name) for i in range(count)]
        for receipt in lg.append_many("prod", bodies, chunk=500):
            print(receipt.seq, receipt.hash)
""")


def test_batched_writers_racing_for_one_fleet_lose_nothing_and_double_nothing(env: Env) -> None:
    """Large batches take the pipelined path; a lost race falls back to the careful one."""
    count, names = 2600, ["batch-a", "batch-b"]
    writers = [subprocess.Popen([sys.executable, "-c", BATCH_WRITER, env.db, str(env.key), n, str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
    acknowledged = set()
    for proc in writers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        acknowledged |= {(int(s), h) for s, h in (line.split() for line in out.decode().splitlines())}
    assert len(acknowledged) == 2 * count
    with env.open(writable=False) as lg:
        assert lg.verify().chains[0].count == 2 * count
        assert {(r["seq"], r["hash"]) for r in lg.records("prod")} == acknowledged
        for name in names:
            mine = [r["active_sessions"] for r in lg.records("prod") if r["actor"] == name]
            assert mine == list(range(count))
