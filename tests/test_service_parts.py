"""The service's parts without a server: tokens, command bodies, CloudEvents, the report's
verification status and `ledger serve`'s refusals (all standard library)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ledger import commands as build
from ledger.decide import Deploy, Judge, Rollback, Verdict
from ledger.errors import InputError
from ledger.service.bodies import command_from_body
from ledger.service.cloudevents import to_cloudevent
from ledger.service.tokens import Role, TokenStore, add_token, digest_of, read_tokens
from tests.conftest import Env, run_process, submit


def test_tokens_are_stored_hashed_with_roles_and_found_by_secret(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    secret = add_token(path, "ci", frozenset({Role.READ, Role.WRITE}))
    assert secret not in path.read_text() and digest_of(secret) in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    store = TokenStore(path)
    token = store.find(secret)
    assert token is not None and token.name == "ci" and token.roles == {Role.READ, Role.WRITE}
    assert store.find(secret + "x") is None
    later = add_token(path, "reader", frozenset({Role.READ}))  # picked up without a restart
    assert store.find(later) is not None
    with pytest.raises(InputError, match="already"):
        add_token(path, "ci", frozenset({Role.READ}))
    path.write_text(path.read_text() + "legacy:" + "a" * 64 + "\n")  # name:sha256hex is a read token
    assert read_tokens(path)[-1].roles == {Role.READ}
    for bad in ("x:read", "x:admin:" + "a" * 64, "bad name:read:" + "a" * 64):
        (tmp_path / "bad").write_text(bad + "\n")
        with pytest.raises(InputError):
            read_tokens(tmp_path / "bad")


def test_command_bodies_build_the_clis_commands_and_refuse_typos() -> None:
    deploy = command_from_body("prod", {"command": "deploy", "version": "v2", "actor": "ci",
                                        "from_version": "v1", "supersede": True}).command
    assert isinstance(deploy, Deploy) and deploy.supersede and deploy.from_version == "v1"
    rollback = command_from_body("prod", {"command": "rollback", "actor": "o", "reason": "r", "to": "v1",
                                          "drain_timeout": 30}).command
    assert isinstance(rollback, Rollback) and rollback.request.to_version == "v1"
    assert rollback.request.drain_timeout_s == 30 and rollback.request.fleet == "prod"
    mark = command_from_body("prod", {"command": "mark", "verdict": "cleared", "version": "v1",
                                      "actor": "qa", "reason": "fixed"}).command
    assert isinstance(mark, Judge) and mark.verdict is Verdict.CLEARED
    for body, why in [({"command": "deploy", "version": "v2", "actor": "ci", "supersed": True}, "unknown"),
                      ({"command": "deploy", "version": 2, "actor": "ci"}, "string"),
                      ({"command": "rollback", "actor": "o", "reason": "r", "workers": True}, "integer"),
                      ({"command": "fail", "version": "v2", "actor": "ci"}, "reason"),
                      ({"command": "mark", "verdict": "great", "version": "v1", "actor": "q"}, "verdict"),
                      ({"command": "deploy", "version": "v2", "actor": " "}, "actor"),
                      ([], "object")]:
        with pytest.raises(InputError, match=why):
            command_from_body("prod", body)


def test_a_cloudevent_carries_the_stored_bytes_as_data(env: Env) -> None:
    with env.open() as lg:
        submit(lg, "prod", build.deploy("v1", "ci"))
        data = next(lg.raw_records("prod"))
    event = orjson.loads(to_cloudevent(data, "abcd"))
    assert event["data"] == orjson.loads(data) and orjson.dumps(event["data"], option=orjson.OPT_SORT_KEYS) \
        == data
    assert event["source"] == "/deploy-ledger/abcd/fleets/prod" and event["sequence"] == "1".zfill(20)


def test_the_report_says_when_history_fails_verification(sqlite_env: Env) -> None:
    env = sqlite_env
    with env.open() as lg:
        submit(lg, "prod", build.deploy("v1", "ci"), build.complete("v1", "ci"))
    good = env.dir / "good.html"
    assert run_process("report", *env.args(), "--fleet", "prod", "--out", str(good)).returncode == 0
    env.tamper.set_state(2, env.tamper.rows()[1][1].replace(b'"ci"', b'"cj"'))
    bad = env.dir / "bad.html"
    done = run_process("report", *env.args(), "--fleet", "prod", "--out", str(bad))
    assert done.returncode == 1
    assert 'class="bad" id="verification">FAILED' in bad.read_text()


def test_serve_refuses_without_tokens_or_ledger(tmp_path: Path) -> None:
    done = run_process("serve", "--db", str(tmp_path / "none.db"), "--listen", "127.0.0.1:0")
    assert done.returncode == 2 and b"--tokens" in done.stderr
    add_token(tmp_path / "t", "r", frozenset({Role.READ}))
    done = run_process("serve", "--db", str(tmp_path / "none.db"), "--tokens", str(tmp_path / "t"))
    assert done.returncode == 2 and b"no ledger" in done.stderr
    done = run_process("serve", "--listen", "nonsense", "--tokens", str(tmp_path / "t"))
    assert done.returncode == 2
