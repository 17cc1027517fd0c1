"""The everyday commands a newcomer reaches for: --version, options anywhere, -o json, wait,
backup and shell completion, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger import commands as build
from ledger.api import Ledger
from tests.conftest import Env, run_cli, run_process, seed, submit


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli(capsys, "--version")
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("ledger 0.")


@pytest.mark.parametrize("place", ["before", "after"])
def test_global_options_work_before_or_after_the_subcommand(env: Env, capsys: pytest.CaptureFixture[str],
                                                              place: str) -> None:
    with env.open() as lg:
        seed(lg)
    options = [*env.args(), "--fleet", "prod"]
    argv = [*options, "last-good"] if place == "before" else ["last-good", *options]
    result = run_cli(capsys, *argv)
    assert (result.code, result.out.splitlines()[0]) == (0, "v1")


def test_verify_still_covers_every_fleet_when_no_fleet_is_given(env: Env,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg, "a")
        seed(lg, "b")
    result = run_cli(capsys, "verify", *env.args(), "--public-key", str(env.pub))
    assert result.code == 0, result.err
    assert "fleet a" in result.out and "fleet b" in result.out


@pytest.mark.parametrize("command", [["history"], ["last-good"], ["fleet"], ["wait"], ["verify"],
                                     ["keys", "show"]], ids=" ".join)
def test_every_read_takes_dash_o_json(env: Env, capsys: pytest.CaptureFixture[str],
                                      command: list[str]) -> None:
    with env.open() as lg:
        seed(lg)
    fleet = ["--fleet", "prod"] if command != ["keys", "show"] else []
    result = run_cli(capsys, *command, *env.args(), *fleet, "-o", "json")
    assert result.code == 0, result.err
    assert isinstance(json.loads(result.out), dict)
    again = run_cli(capsys, *command, *env.args(), *fleet, "--json")
    assert json.loads(again.out) == json.loads(result.out) or command == ["wait"]


# -- wait ---------------------------------------------------------------------------------------------


def test_wait_with_nothing_in_flight_exits_0(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    result = run_cli(capsys, "wait", *env.args(), "--fleet", "prod")
    assert result.code == 0 and "nothing in flight" in result.out and "runs v1" in result.out


def test_wait_times_out_with_exit_3_while_the_move_is_in_flight(env: Env,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"))
    result = run_cli(capsys, "wait", *env.args(), "--fleet", "prod", "--timeout", "0.3")
    assert result.code == 3 and "deploy to v2 (seq 7) is still in flight" in result.out


@pytest.mark.parametrize(("settle", "code", "word"), [
    pytest.param(build.complete("v2", "ci"), 0, "completed", id="completed"),
    pytest.param({**build.complete("v2", "ci"), "event": "deployment.failed", "reason": "canary red",
                  "result": "failure"},
                 1, "failed", id="failed"),
])
def test_wait_returns_when_another_writer_settles_the_move(env: Env, settle: dict[str, object], code: int,
                                                           word: str) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"))
    waiter = subprocess.Popen([sys.executable, "-m", "ledger.cli", "wait", *env.args(), "--fleet", "prod",
                               "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(2.0)  # the waiter, a new process, reads the deploy in flight first
    with env.open() as lg:
        submit(lg, "prod", settle)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == code, err
    assert f"deploy to v2 (seq 7) {word}" in out


def test_wait_says_a_deploy_replaced_by_a_rollback_with_exit_1(env: Env,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
        submit(lg, "prod", build.deploy("v2", "ci"))
    # Late enough that the waiter, a new process, has read the deploy in flight first.
    threading.Timer(2.0, lambda: run_cli(capsys, "rollback", *env.args(), "--fleet", "prod", "--actor", "o",
                                         "--reason", "bad", "--no-drive")).start()
    done = run_process("wait", *env.args(), "--fleet", "prod", "--timeout", "30")
    assert done.returncode == 1 and b"deploy to v2 (seq 7) replaced" in done.stdout


# -- backup -------------------------------------------------------------------------------------------


def test_backup_copies_a_live_ledger_that_verifies_and_never_overwrites(sqlite_env: Env,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        tmp_path: Path) -> None:
    env = sqlite_env
    with env.open() as lg:
        seed(lg)
        out = tmp_path / "copy.db"
        writer = threading.Thread(target=lambda: lg.append_many(
            "prod", [build.worker_sessions("w0", "v1", i, "w0") for i in range(3000)]))
        writer.start()
        result = run_cli(capsys, "backup", str(out), *env.args())
        writer.join()
    assert result.code == 0, result.err
    assert f"to {out}: 1 fleet(s)" in result.out
    with Ledger.open(out, writable=False) as copy:
        report = copy.verify(public_key=str(env.pub))
        assert report.chains[0].count in (6, 6 + 3000)  # before or after the writer's one transaction
    again = run_cli(capsys, "backup", str(out), *env.args())
    assert again.code == 2 and "never overwrites" in again.err


def test_backup_of_postgresql_says_to_use_pg_dump(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "backup", str(tmp_path / "x.db"), "--db", "postgresql://u@127.0.0.1:1/db")
    assert result.code == 2 and "pg_dump" in result.err and not (tmp_path / "x.db").exists()


# -- completion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("words", "expected"), [
    pytest.param(["ledger", "roll"], {"rollback"}, id="subcommand"),
    pytest.param(["ledger", "rollback", "--dry"], {"--dry-run"}, id="option"),
    pytest.param(["ledger", "--db", "x.db", "las"], {"last-good"}, id="after-a-global-option"),
    pytest.param(["ledger", "mark", "cle"], {"cleared"}, id="choice"),
])
def test_bash_completion_completes_from_the_parser(words: list[str], expected: set[str]) -> None:
    script = run_process("completion", "bash").stdout.decode()
    line = " ".join(words)
    probe = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _ledger; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert set(done.stdout.split()) == expected, done.stderr


# -- show ---------------------------------------------------------------------------------------------


def test_show_prints_one_record_and_what_checking_it_alone_establishes(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    result = run_cli(capsys, "show", "prod", "3", *env.args())
    assert result.code == 0, result.err
    assert '"seq": 3' in result.out and '"event": "worker.sessions"' in result.out
    for check in ("bytes and hash", "signature", "key in force", "link to the record before",
                  "link from the record after"):
        assert f"ok  {check}:" in result.out
    assert "anchor: pinned at init" in result.out
    parsed = json.loads(run_cli(capsys, "show", "prod", "3", *env.args(), "-o", "json").out)
    assert parsed["verified"] is True and parsed["record"]["seq"] == 3


def test_show_of_a_missing_record_is_exit_3(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    result = run_cli(capsys, "show", "prod", "99", *env.args())
    assert result.code == 3 and "no record at seq 99" in result.err
    odd = run_cli(capsys, "show", "../prod", "1", *env.args())
    assert odd.code == 2 and "fleet name '../prod' is invalid" in odd.err


def test_show_of_a_tampered_record_says_which_check_failed_with_exit_1(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    rows = dict(env.tamper.rows())
    record = json.loads(rows[2])
    record["actor"] = "mallory"
    env.tamper.set_state(2, json.dumps(record, separators=(",", ":"), sort_keys=True).encode())
    result = run_cli(capsys, "show", "prod", "2", *env.args())
    assert result.code == 1
    assert "FAILED  hash: expected" in result.out


def test_a_row_stored_back_as_text_is_checked_not_crashed_on(sqlite_env: Env,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite keeps any type in any column: a hand edit that leaves the bytes as text must give a
    verdict (same content verifies, changed content is a hash fault), never an internal error."""
    import sqlite3

    env = sqlite_env
    with env.open() as lg:
        seed(lg)
    with sqlite3.connect(env.db) as c:
        c.execute("UPDATE stored_events SET state = CAST(state AS TEXT) WHERE originator_version = 2 "
                  "AND originator_id = 'fleet:prod'")
    assert run_cli(capsys, "verify", *env.args()).code == 0
    with sqlite3.connect(env.db) as c:
        c.execute("UPDATE stored_events SET state = replace(state, '\"ci\"', '\"cx\"') "
                  "WHERE originator_version = 1 AND originator_id = 'fleet:prod'")
    result = run_cli(capsys, "verify", *env.args())
    assert result.code == 1 and "hash at prod seq 1" in result.err
