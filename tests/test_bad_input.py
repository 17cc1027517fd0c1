"""Bad input gets one clear line, exit 2, and the ledger unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.chain import Head
from ledger.names import CONTROL_RE
from tests.conftest import Env, run_cli, run_process, seed

GOOD = '{"event":"deployment.started","actor":"ci","target":"fleet","result":"success","version":"v9"}'


def head(env: Env) -> Head:
    with env.open(writable=False) as lg:
        return lg.head("prod")


CASES = [
    ("malformed-json", ["append", "--json", '{"event": '], "not valid JSON"),
    ("not-an-object", ["append", "--json", "[1]"], "must be a JSON object"),
    ("unknown-event", ["append", "--json", GOOD.replace("deployment.started", "deployment.exploded")],
     "unknown event type 'deployment.exploded'"),
    ("missing-version", ["append", "--json", GOOD.replace(',"version":"v9"', "")],
     "\"version\" is a required property"),
    ("missing-actor", ["append", "--json", GOOD.replace('"actor":"ci",', "")],
     "\"actor\" is a required property"),
    ("wrong-type", ["append", "--json", GOOD.replace('"v9"', "9")], "field 'version'"),
    ("negative-sessions", ["worker", "sessions", "w1", "--version", "v1", "--sessions", "-1",
                           "--actor", "w1"], "field 'active_sessions'"),
    ("caller-seq", ["append", "--json", GOOD[:-1] + ',"seq":99}'], "field 'seq' is set by the ledger"),
    ("caller-hash", ["append", "--json", GOOD[:-1] + ',"hash":"00"}'], "field 'hash' is set by"),
    ("caller-sig", ["append", "--json", GOOD[:-1] + ',"sig":"AA=="}'], "field 'sig' is set by"),
    ("float-field", ["append", "--json", GOOD[:-1] + ',"latency":0.5}'], "floats are not allowed"),
    ("too-big", ["append", "--json", GOOD[:-1] + ',"blob":"' + "x" * 70000 + '"}'],
     "the limit is 65536"),
    ("internal-event", ["append", "--json", '{"event":"key.rotated","actor":"x","target":"ledger",'
                        '"result":"success","public_key":"ed25519:' + "A" * 43 + '=",'
                        '"new_kid":"0011223344556677"}'], "written by the ledger itself"),
    ("bad-result", ["append", "--json", GOOD.replace('"success"', '"maybe"')], "field 'result'"),
    ("empty-actor", ["deploy", "v2", "--actor", ""], "needs --actor"),
    ("bad-fleet-name", ["deploy", "v2", "--actor", "ci", "--fleet", "../etc"], "fleet name"),
    ("missing-actor-flag", ["deploy", "v2"], "the following arguments are required: --actor"),
    ("fleet-trailing-newline", ["deploy", "v2", "--actor", "ci", "--fleet", "prod\n"],
     "fleet name 'prod\\n'"),
    ("fleet-too-long", ["deploy", "v2", "--actor", "ci", "--fleet", "p" * 65], "fleet name"),
    ("version-nul", ["append", "--json", GOOD.replace('"v9"', '"v\\u0000x"')], "control character"),
    ("version-nul-cli", ["deploy", "v\x00x", "--actor", "ci"], "version 'v\\x00x' is invalid"),
    ("version-path", ["deploy", "../v2", "--actor", "ci"], "version '../v2' is invalid"),
    ("version-newline", ["deploy", "v2\n", "--actor", "ci"], "version 'v2\\n' is invalid"),
    ("actor-escape-sequence", ["deploy", "v2", "--actor", "\x1b[2J"], "control character"),
    ("actor-trailing-space", ["deploy", "v2", "--actor", "ci "], "actor 'ci ' is invalid"),
    ("event-with-escape", ["append", "--json", GOOD.replace("deployment.started", "\\u001b[31m")],
     "control character"),
    ("nested-300", ["append", "--json", GOOD[:-1] + ',"x":' + "[" * 300 + "]" * 300 + "}"],
     "nested more than 32"),
    ("nested-2000", ["append", "--json", GOOD[:-1] + ',"x":' + "[" * 2000 + "]" * 2000 + "}"],
     "not valid JSON"),
    ("deep-float", ["append", "--json", GOOD[:-1] + ',"x":{"y":[1e3]}}'], "floats are not allowed"),
    ("deep-negative-huge-int", ["append", "--json", GOOD[:-1] + ',"x":[{"y":-9007199254740993}]}'],
     "outside"),
    ("non-ascii-top-key", ["append", "--json", GOOD[:-1] + ',"\u00e9":"x"}'], "not printable ASCII"),
    ("worker-id-path", ["worker", "start", "../../x", "--version", "v1", "--actor", "ci"],
     "field 'worker_id'"),
]


@pytest.mark.parametrize(("argv", "message"), [pytest.param(a, m, id=i) for i, a, m in CASES])
def test_bad_input_is_refused_and_nothing_is_written(
    env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with env.open() as lg:
        seed(lg)
    before = head(env)
    try:
        result = run_cli(capsys, *argv, *env.args(), "--fleet", "prod") if "--fleet" not in argv \
            else run_cli(capsys, *argv, *env.args())
        code, err = result.code, result.err
    except SystemExit as exit_:  # argparse usage errors
        code, err = int(exit_.code or 0), capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert not CONTROL_RE.search(err.rstrip("\n")), err
    assert head(env) == before


def test_jsonl_file_with_one_bad_line_writes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.dir / "batch.jsonl"
    path.write_text(GOOD + "\n" + GOOD + "\n" + GOOD.replace('"v9"', "1") + "\n")
    result = run_cli(capsys, "append", "--file", str(path), *env.args(), "--fleet", "prod")
    assert result.code == 2
    assert "line 3" in result.err or "record 3" in result.err
    with env.open(writable=False) as lg:
        assert lg.fleets() == []


@pytest.mark.parametrize("argv", [
    ["feed", "--fleet", "prod", "--after", "99999999999999999999"],
    ["feed", "--fleet", "prod", "--after", "-1"],
    ["show", "--fleet", "prod", "9223372036854775808"],
    ["prove", "--fleet", "prod", "--seq", "99999999999999999999"],
    ["approve", "99999999999999999999", "--actor", "a"],
    ["approve", "x1", "--actor", "a"],
    ["feed", "--fleet", "prod", "--limit", "-1"],
    ["feed", "--fleet", "prod", "--limit", "0"],
], ids=["feed-after-huge", "feed-after-negative", "show-huge", "prove-huge", "approve-huge", "approve-text",
        "feed-limit-negative", "feed-limit-zero"])
def test_a_position_no_store_can_hold_is_bad_input(sqlite_env: Env, argv: list[str]) -> None:
    """A seq beyond a signed 64-bit integer is refused while parsing, not by the database (exit 70)."""
    env = sqlite_env
    with env.open() as lg:
        seed(lg)
        before = [lg.head(fleet) for fleet in lg.fleets()]
    done = run_process(*argv, *env.args())
    assert done.returncode == 2, done.stderr
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    with env.open(writable=False) as lg:
        assert [lg.head(fleet) for fleet in lg.fleets()] == before


def test_non_utf8_stdin_is_refused(env: Env) -> None:
    done = run_process("append", *env.args(), "--fleet", "prod",
                       stdin=b'{"event":"deployment.started","actor":"\xff"}')
    assert done.returncode == 2
    assert b"not valid UTF-8" in done.stderr
    assert done.stderr.count(b"\n") == 1


@pytest.mark.parametrize("problem", ["missing", "unreadable", "garbage", "wrong-key"])
def test_key_problems_are_one_line_and_write_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path, problem: str
) -> None:
    with env.open() as lg:
        seed(lg)
    before = head(env)
    key = tmp_path / "other.key"
    if problem == "unreadable":
        key.mkdir()  # root reads any file, but nobody reads a directory as a key
    elif problem == "garbage":
        key.write_text("not a key")
    elif problem == "wrong-key":
        from ledger.keys import Signer, write_private_key

        write_private_key(key, Signer.generate())
    result = run_cli(capsys, "deploy", "v2", "--actor", "ci", "--fleet", "prod",
                     "--db", env.db, "--key", str(key))
    code, err = result.code, result.err
    assert code == 2
    assert err.count("\n") == 1
    expected = {"missing": "signing key not found", "unreadable": "cannot read signing key",
                "garbage": "not an unencrypted PEM private key",
                "wrong-key": "is not this ledger's signing key"}[problem]
    assert expected in err
    assert head(env) == before


def test_missing_database_is_an_error_for_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["feed"], ["verify"], ["deploy", "v1", "--actor", "x"]):
        result = run_cli(capsys, *argv, "--db", str(tmp_path / "nope.db"))
        assert result.code == 2
        assert "no ledger at" in result.err
        assert not (tmp_path / "nope.db").exists()
