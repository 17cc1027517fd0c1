"""Any input to the CLI: a documented exit code, at most one line on stderr, no
traceback, and the ledger unchanged unless the command succeeded.

Commands, options, JSON bodies (control characters, NUL, deep nesting, huge
integers, floats, non-ASCII keys), files and environment are drawn by
hypothesis and run in-process against a real ledger on each backend. A
command a check refused (exit 1) may leave exactly its recorded refusal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.store import KEY_CHAIN
from tests.conftest import Env, run_cli, seed

DOCUMENTED = {0, 1, 2, 3, 4}

texts = st.one_of(
    st.sampled_from(["v1", "v2", "prod", "ci", "w0", "../x", "", " ", "v1\n", "a\x00b", "\x1b[2J",
                     "é", "x" * 300, "ed25519:AAAA", "-", "--help"]),
    st.text(max_size=20),
)
names = st.one_of(st.sampled_from(["prod", "staging", "default", "prod\n", "../etc", "a" * 65]),
                  st.text(max_size=12))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=10),
              st.integers(min_value=-(2**70), max_value=2**70),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
events = st.sampled_from(["deployment.started", "deployment.completed", "worker.started",
                          "version.marked_bad", "key.rotated", "nope", ""])


@st.composite
def bodies(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["record", "record", "deep", "raw"]))
    if kind == "raw":
        return draw(st.text(max_size=40))
    body: dict[str, Any] = {"event": draw(events), "actor": draw(texts), "target": "fleet",
                            "result": draw(st.sampled_from(["success", "maybe"])),
                            "version": draw(texts)}
    extra = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    body.update(extra)
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))  # (integers beyond 64 bits too)
    if kind == "deep":  # deeper than orjson writes: spliced in as text
        depth = draw(st.integers(20, 1100))
        text = text[:-1] + ',"nested":' + "[" * depth + "]" * depth + "}"
    return text


def _no_nul(argv: list[str]) -> bool:
    return not any("\x00" in arg for arg in argv)  # no operating system passes one in an argument


@st.composite
def commands(draw: st.DrawFn) -> tuple[list[str], dict[str, str], bytes | None]:
    """(argv without --db/--key, environment, content of FILE if the argv names one)."""
    command = draw(st.sampled_from([
        "append", "append-file", "deploy", "complete", "worker", "mark", "feed", "verify", "history",
        "last-good", "fleet", "keys", "checkpoint", "init", "bogus"]))
    fleet = ["--fleet", draw(names)] if draw(st.booleans()) else []
    content: bytes | None = None
    if command == "append":
        argv = ["append", "--json", draw(bodies()), *fleet]
    elif command == "append-file":
        lines = draw(st.lists(bodies(), min_size=0, max_size=3))
        content = "\n".join(lines).encode() + draw(st.sampled_from([b"", b"\n", b"\xff\xfe"]))
        argv = ["append", "--file", "FILE", *fleet]
    elif command in ("deploy", "complete"):
        argv = [command, draw(texts), "--actor", draw(texts), *fleet]
    elif command == "worker":
        argv = ["worker", draw(st.sampled_from(["start", "sessions", "drain", "exit", "jump"])), draw(texts),
                "--version", draw(texts), "--actor", draw(texts), *fleet]
        if draw(st.booleans()):
            argv += ["--sessions", str(draw(st.integers(-(2**60), 2**60)))]
    elif command == "mark":
        argv = ["mark", draw(st.sampled_from(["verified", "bad", "cleared", "great"])), draw(texts),
                "--actor", draw(texts), "--reason", draw(texts), *fleet]
    elif command == "feed":
        argv = ["feed", *fleet, "--after", str(draw(st.integers(-5, 10)))]
        if draw(st.booleans()):
            argv += ["--since", draw(texts)]
    elif command == "verify":
        argv = ["verify"]
        if draw(st.booleans()):
            argv += ["--public-key", draw(st.sampled_from(["KEYFILE", "PUBFILE", "FILE"]) | texts)]
        if draw(st.booleans()):
            content = draw(st.binary(max_size=60))
            argv += ["--checkpoint", "FILE"]
    elif command in ("history", "last-good", "fleet"):
        argv = [command, *fleet, *draw(st.sampled_from([[], ["--json"]]))]
    elif command == "keys":
        argv = ["keys", draw(st.sampled_from(["show", "spin"]))]
    elif command == "checkpoint":
        argv = ["checkpoint", *fleet]
    elif command == "init":
        argv = ["init"]
    else:
        argv = [draw(texts)]
    environment: dict[str, str] = {}
    if draw(st.booleans()):
        environment["LEDGER_TRUST"] = draw(st.sampled_from(["KEYFILE", "PUBFILE", "nonsense", ""]))
    if draw(st.booleans()):
        environment["LEDGER_FLEET"] = draw(names.filter(lambda n: "\x00" not in n))  # no NUL in env
    if content is None and "FILE" in argv:
        content = draw(st.binary(max_size=40))
    return argv, environment, content


def snapshot(env: Env) -> dict[str, tuple[int, str]]:
    with env.open(writable=False) as lg:
        return {chain: (lg.head(chain).seq, lg.head(chain).hash)
                for chain in [KEY_CHAIN, *lg.fleets()]}


def recorded_refusal(env: Env, before: dict[str, tuple[int, str]],
                     after: dict[str, tuple[int, str]]) -> bool:
    """Whether the only change is one refusal record (`*.rejected`) on one chain: what
    exit 1 means when a check refused a well-formed command."""
    grown = [chain for chain in after if after[chain] != before.get(chain, (0, ""))]
    if len(grown) != 1 or after[grown[0]][0] != before.get(grown[0], (0, ""))[0] + 1:
        return False
    with env.open(writable=False) as lg:
        last = list(lg.records(grown[0], after[grown[0]][0] - 1))
    return len(last) == 1 and str(last[0]["event"]).endswith(".rejected")


@settings(max_examples=int(os.environ.get("LEDGER_TEST_CLI_EXAMPLES", "80")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=commands().filter(lambda case: _no_nul(case[0])))
def test_any_cli_input_exits_documented_in_one_line_and_writes_only_on_success(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        case: tuple[list[str], dict[str, str], bytes | None]) -> None:
    argv, environment, content = case
    if not (env.dir / "seeded").exists():
        with env.open() as lg:
            seed(lg)
        run_cli(capsys, "history", "--fleet", "prod", *env.args())  # views built: no notice later
        (env.dir / "seeded").touch()
    path = env.dir / "input.bin"
    path.write_bytes(content or b"")
    files = {"FILE": str(path), "KEYFILE": str(env.key), "PUBFILE": str(env.pub)}
    argv = [files.get(arg, arg) for arg in argv]
    for name, value in environment.items():
        monkeypatch.setenv(name, files.get(value, value))
    before = snapshot(env)
    try:
        try:
            result = run_cli(capsys, *argv, *env.args())
            code, err = result.code, result.err
        except SystemExit as exit_:  # argparse: usage errors and --help
            captured = capsys.readouterr()
            code, err = int(exit_.code or 0), captured.err
    finally:
        for name in environment:
            monkeypatch.delenv(name, raising=False)
    event(f"{argv[0][:12]!r} exit {code}")
    assert code in DOCUMENTED, (argv, code, err)
    assert "Traceback" not in err, err
    assert err.count("\n") <= 1, (argv, err)
    assert not any(ord(c) < 0x20 and c != "\n" for c in err), err
    after = snapshot(env)
    if code != 0:
        assert after == before or (code == 1 and recorded_refusal(env, before, after)), (argv, code, err)
    assert Path(env.key).exists()
