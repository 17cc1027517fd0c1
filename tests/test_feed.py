"""The audit feed: records from a cursor, filtered, and followed live."""

from __future__ import annotations

import subprocess
import sys
import time

import jsonschema
import orjson
import pytest

from ledger import commands as build
from ledger.schemas import all_schemas
from tests.conftest import Env, run_cli, seed, submit


def lines(out: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.splitlines()]


def test_feed_prints_every_record_in_order_with_chain_fields(env: Env,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    result = run_cli(capsys, "feed", *env.args(), "--fleet", "prod")
    records = lines(result.out)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    validator = jsonschema.Draft202012Validator(all_schemas()["record.json"])
    prev = "0" * 64
    for record in records:
        validator.validate(record)
        assert record["prev"] == prev
        prev = str(record["hash"])


@pytest.mark.parametrize(
    ("flags", "expected_seqs"),
    [
        pytest.param(["--after", "4"], [5, 6, 7], id="after"),
        pytest.param(["--limit", "2"], [1, 2], id="limit"),
        pytest.param(["--after", "1", "--limit", "2"], [2, 3], id="after-limit"),
        pytest.param(["--event", "worker.started"], [2, 4], id="event"),
        pytest.param(["--actor", "w1"], [5], id="actor"),
        pytest.param(["--version", "v2"], [7], id="version"),
        pytest.param(["--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02"], [], id="time-window"),
    ],
)
def test_feed_filters(env: Env, capsys: pytest.CaptureFixture[str], flags: list[str],
                      expected_seqs: list[int]) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"))
    result = run_cli(capsys, "feed", *env.args(), "--fleet", "prod", *flags)
    assert result.code == 0
    assert [r["seq"] for r in lines(result.out)] == expected_seqs


def test_feed_since_until_select_by_timestamp(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
        records = list(lg.records("prod"))
    middle = str(records[2]["timestamp"])
    result = run_cli(capsys, "feed", *env.args(), "--fleet", "prod", "--since", middle)
    assert next(r["seq"] for r in lines(result.out)) <= 3
    assert all(str(r["timestamp"]) >= middle for r in lines(result.out))


def test_feed_of_unknown_fleet_is_an_error(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "feed", *env.args(), "--fleet", "nowhere")
    assert result.code == 2 and "fleet 'nowhere' has no records" in result.err


def test_feed_follow_prints_new_records_as_they_land(env: Env) -> None:
    with env.open() as lg:
        seed(lg)
    follower = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "feed", *env.args(), "--fleet", "prod", "--after", "6",
         "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        with env.open() as lg:
            receipt = submit(lg, "prod", build.deploy("v2", "ci"))[-1]
        assert follower.stdout is not None
        line = follower.stdout.readline()
        record = orjson.loads(line)
        assert (record["seq"], record["hash"]) == (receipt.seq, receipt.hash)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
