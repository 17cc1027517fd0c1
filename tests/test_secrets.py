"""Secrets are never echoed: no part of a private key file, no database password.

A private key handed over where a public key (or a checkpoint) was expected is
refused without quoting it, and a PostgreSQL password in any form (URL
userinfo, a `password=` query parameter) never reaches stdout or stderr, on
any error path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.postgres_url import redact, redact_text
from tests.conftest import Env, run_cli, seed


def pem_fragments(key: Path) -> list[str]:
    """Pieces of a PEM body that must never be printed (each base64 line and its parts)."""
    body = "".join(key.read_text().splitlines()[1:-1])
    return [body, *(body[i:i + 12] for i in range(0, len(body) - 12, 6))]


def assert_nothing_of(fragments: list[str], text: str) -> None:
    for fragment in fragments:
        assert fragment not in text, fragment


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        result = run_cli(capsys, *argv)
        return result.code, result.out + result.err
    except SystemExit as exit_:  # argparse usage errors
        captured = capsys.readouterr()
        return int(exit_.code or 0), captured.out + captured.err


@pytest.mark.parametrize("how", ["file", "text", "env", "checkpoint"])
def test_a_private_key_given_as_a_public_key_is_never_echoed(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    with env.open() as lg:
        seed(lg)
    secret = env.key.read_text()
    argv = ["verify", *env.args()]
    if how == "file":
        argv += ["--public-key", str(env.key)]
    elif how == "text":
        argv += ["--public-key", secret]
    elif how == "env":
        monkeypatch.setenv("LEDGER_TRUST", str(env.key))
    else:
        argv += ["--checkpoint", str(env.key)]
    code, output = run(capsys, *argv)
    assert code == 2, output
    assert "private key" in output
    assert output.count("\n") == 1 + (how == "checkpoint")  # (verify prints its anchor first)
    assert_nothing_of(pem_fragments(env.key), output)
    assert "PRIVATE KEY-----" not in output and secret not in output


@pytest.mark.parametrize("garbage", [b"\x00\x01 not a key", b"ed25519:short", b"A" * 10_000])
def test_a_bad_public_key_file_is_named_not_quoted(
        env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "bad.pub"
    path.write_bytes(garbage)
    code, output = run(capsys, "verify", *env.args(), "--public-key", str(path))
    assert code == 2 and output.count("\n") == 1
    assert str(path) in output
    assert "short" not in output and "AAAAAAAAAA" not in output and "\x00" not in output


URLS = [
    "postgresql://ledger:S3CRET-PW@127.0.0.1:1/ledger_test",
    "postgresql://ledger:S3CRET-PW@127.0.0.1:1/ledger_test?schema=x&password=S3CRET-PW",
    "postgresql://ledger@127.0.0.1:1/ledger_test?password=S3CRET-PW",
    "postgres://ledger:S3CRET%40PW@127.0.0.1:1/ledger_test",
    "postgresql://ledger:S3CRET@PW@127.0.0.1:1/ledger_test",
]
COMMANDS = [["verify"], ["history"], ["fleet"], ["last-good"], ["feed"], ["keys", "show"],
            ["deploy", "v1", "--actor", "ci"], ["init"], ["checkpoint"], ["projections", "catch-up"],
            ["verify", "--bogus-option"], ["deploy"]]


@pytest.mark.parametrize("url", URLS)
def test_a_database_password_is_never_printed(url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for argv in COMMANDS:
        code, output = run(capsys, *argv, "--db", url, "--key", str(tmp_path / "k"))
        assert code in (2, 4), (argv, output)
        assert "S3CRET" not in output, (argv, output)
        assert "PW@" not in output and "%40PW" not in output, (argv, output)
    # a stray URL that argparse complains about is redacted too
    code, output = run(capsys, "verify", url)
    assert code == 2 and "S3CRET" not in output


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@w@h/db", "postgresql://u:***@h/db"),
    ("postgresql://h/db?password=pw&schema=s", "postgresql://h/db?password=***&schema=s"),
    ("postgresql://h/db?sslpassword=pw", "postgresql://h/db?sslpassword=***"),
    ("host=h password='p w' dbname=d", "host=h password=*** dbname=d"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_redact_replaces_every_form_of_password(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact_text(f"error: cannot reach {text} now") == f"error: cannot reach {shown} now"
