"""`ledger prove` and `ledger verify-proof`: a record's inclusion and a log's growth, checked offline."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ledger import commands as build
from ledger.chain import leaf_hash
from ledger.proofs import verify_inclusion
from tests.conftest import Env, run_cli, seed


def _save(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _flip(line: str) -> str:
    raw = bytearray(base64.b64decode(line))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture
def grown(env: Env, capsys: pytest.CaptureFixture[str]) -> tuple[Env, str, str]:
    """A fleet with a checkpoint at 6 records and one at 9."""
    with env.open() as lg:
        seed(lg)
    old = _save(env.dir / "old.checkpoint", run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    with env.open() as lg:
        for n in range(3):
            lg.append("prod", build.worker_start(f"x{n}", "v1", "platform"))
    new = _save(env.dir / "new.checkpoint", run_cli(capsys, "checkpoint", *env.args(), "--fleet", "prod").out)
    return env, old, new


def test_an_inclusion_proof_is_a_tlog_proof_that_verifies_with_no_database(
        grown: tuple[Env, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    env, old, new = grown
    pub = str(env.pub)
    for seq in range(1, 10):
        made = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", str(seq),
                       "--checkpoint", new)
        assert made.code == 0, made.err
        lines = made.out.split("\n")
        assert lines[0] == "c2sp.org/tlog-proof@v1" and lines[2] == f"index {seq - 1}"
        # The format alone suffices: leaf from the extra bytes, path, root from the checkpoint.
        path = [base64.b64decode(x) for x in lines[3:lines.index("")]]
        note = made.out.split("\n\n", 1)[1].split("\n")
        verify_inclusion(seq - 1, int(note[1]), leaf_hash(base64.b64decode(lines[1][6:])), path,
                         base64.b64decode(note[2]))
        proof = _save(env.dir / f"{seq}.tlog-proof", made.out)
        checked = run_cli(capsys, "verify-proof", proof, "--public-key", pub)
        assert checked.code == 0, checked.err
        assert f"prod seq {seq}" in checked.out
    fresh = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "2")
    assert run_cli(capsys, "verify-proof", _save(env.dir / "f", fresh.out), "--public-key", pub).code == 0
    beyond = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "7", "--checkpoint", old)
    assert beyond.code == 2


def test_a_doctored_inclusion_proof_fails_with_evidence_and_a_malformed_one_is_exit_2(
        grown: tuple[Env, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    env, _old, new = grown
    pub = str(env.pub)
    text = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "4", "--checkpoint", new).out
    lines = text.split("\n")
    other = run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "5", "--checkpoint", new).out
    cases = {
        "path": "\n".join([*lines[:3], _flip(lines[3]), *lines[4:]]),
        "record": "\n".join([lines[0], other.split("\n")[1], *lines[2:]]),
        "index": "\n".join([*lines[:2], "index 5", *lines[3:]]),
        "root": text.replace("\nhead ", "\nhead ", 1).replace(
            text.split("\n\n")[1].split("\n")[2], _flip(text.split("\n\n")[1].split("\n")[2])),
    }
    for name, doctored in cases.items():
        result = run_cli(capsys, "verify-proof", _save(env.dir / name, doctored), "--public-key", pub)
        assert result.code == 1, (name, result.err)
        assert "prod seq" in result.err and result.err.count("\n") == 1
    for name, broken in {"header": "c2sp.org/other\n" + text.split("\n", 1)[1],
                         "base64": text.replace(lines[3], "!!!"), "empty": ""}.items():
        result = run_cli(capsys, "verify-proof", _save(env.dir / name, broken), "--public-key", pub)
        assert result.code == 2, (name, result.err)


def test_after_a_rotation_the_key_chain_file_carries_the_trust(
        grown: tuple[Env, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    env, _old, _new = grown
    pub = str(env.pub)
    run_cli(capsys, "keys", "rotate", *env.args(), "--actor", "sec")
    keys = _save(env.dir / "keys.jsonl", run_cli(capsys, "keys", "export", *env.args()).out)
    proof = _save(env.dir / "p", run_cli(capsys, "prove", *env.args(), "--fleet", "prod", "--seq", "1").out)
    alone = run_cli(capsys, "verify-proof", proof, "--public-key", pub)
    assert alone.code == 1 and "--keys" in alone.err
    assert run_cli(capsys, "verify-proof", proof, "--public-key", pub, "--keys", keys).code == 0
    forged = env.dir / "forged.jsonl"
    forged.write_text(Path(keys).read_text().replace('"sec"', '"eve"'))
    assert run_cli(capsys, "verify-proof", proof, "--public-key", pub, "--keys", str(forged)).code == 1


def test_a_consistency_proof_shows_growth_and_refuses_rewrites(
        grown: tuple[Env, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    env, old, new = grown
    pub = str(env.pub)
    made = run_cli(capsys, "prove", *env.args(), "--consistency", old, new)
    assert made.code == 0, made.err
    assert made.out.startswith("deploy-ledger/consistency-proof@v1\n")
    proof = _save(env.dir / "c", made.out)
    result = run_cli(capsys, "verify-proof", proof, "--public-key", pub)
    assert result.code == 0 and "9 records extends the one of 6" in result.out
    fresh = run_cli(capsys, "prove", *env.args(), "--consistency", old)
    assert run_cli(capsys, "verify-proof", _save(env.dir / "c2", fresh.out), "--public-key", pub).code == 0
    header, rest = made.out.split("\n\n", 1)
    hashes = header.split("\n")
    old_text, new_text = Path(old).read_text(), Path(new).read_text()
    doctored = {
        "path": "\n".join([hashes[0], _flip(hashes[1]), *hashes[2:]]) + "\n\n" + rest,
        "swapped": header + "\n\n" + new_text + "\n" + old_text,
    }
    for name, text in doctored.items():
        result = run_cli(capsys, "verify-proof", _save(env.dir / name, text), "--public-key", pub)
        assert result.code == 1, (name, result.err)
    assert run_cli(capsys, "prove", *env.args(), "--consistency", new, old).code == 2
