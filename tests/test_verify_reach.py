"""Verify's checks that only damaged storage or a key holder's forgery can reach.

Each test here stands for a way the verifier could be wrong with every other
test still green: bytes that are not a JSON object, a head whose signature
alone is damaged (the default, fast verify must still check the signatures
that carry the proof), the exact key epoch a retired key is reported with, a
key chain whose later record is a second genesis, a checkpoint of an empty
fleet, the progress a long verify reports, and the parallel path taken by
chains of more than 4,096 records. Every assertion is on what a user sees: the
CLI's exit code and its one line, or the fault `Ledger.verify` raises.
"""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from ledger import Ledger, VerificationError
from ledger import commands as build
from ledger.bundle import write_bundle
from ledger.chain import (
    Checkpoint,
    checkpoint_origin,
    merkle_root,
    note_key_name,
    parse_checkpoint,
    seal,
    sign_checkpoint,
)
from ledger.keys import load_signer
from ledger.store import KEY_CHAIN
from ledger.verify import PARALLEL_THRESHOLD
from tests.backends import tamper_for
from tests.conftest import Env, run_cli, seed

Cap = pytest.CaptureFixture[str]


def verify(capsys: Cap, env: Env, *extra: str) -> tuple[int, str, str]:
    result = run_cli(capsys, "verify", *env.args(), "--public-key", f"{env.key}.pub", *extra)
    return result.code, result.out, result.err


def flip_sig(data: bytes) -> bytes:
    """The same record with one bit of its signature flipped (content, hash and links intact)."""
    record = orjson.loads(data)
    sig = bytearray(base64.b64decode(record["sig"]))
    sig[10] ^= 1
    record["sig"] = base64.b64encode(bytes(sig)).decode()
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


@pytest.fixture
def seeded(env: Env) -> Env:
    """prod: 6 records (deploy v1, two workers with sessions, complete)."""
    with env.open() as lg:
        seed(lg)
    return env


@pytest.mark.parametrize(("stored", "found"), [
    pytest.param(b"\xff not json", "undecodable bytes", id="undecodable"),
    pytest.param(b"[1, 2]", "list", id="json-array"),
])
def test_stored_bytes_that_are_no_record_are_an_encoding_fault(seeded: Env, capsys: Cap, stored: bytes,
                                                               found: str) -> None:
    tamper_for(seeded.db).set_state(3, stored)
    code, _, err = verify(capsys, seeded)
    assert code == 1
    assert err.startswith("ledger: encoding at prod seq 3: expected a JSON ")
    assert f"found {found}" in err


def test_the_default_verify_checks_the_heads_signature(seeded: Env, capsys: Cap) -> None:
    """The fast verify skips most signatures, never the head's: its signature carries the proof."""
    rows = tamper_for(seeded.db)
    rows.set_state(6, flip_sig(dict(rows.rows())[6]))
    code, _, err = verify(capsys, seeded)
    assert code == 1
    assert err.startswith("ledger: signature at prod seq 6: expected valid signature by ")


def test_a_damaged_signature_inside_a_chain_is_found_by_all_signatures(seeded: Env, capsys: Cap) -> None:
    """The documented limit of the fast verify, and the option that lifts it."""
    rows = tamper_for(seeded.db)
    rows.set_state(2, flip_sig(dict(rows.rows())[2]))
    assert verify(capsys, seeded)[0] == 0
    code, _, err = verify(capsys, seeded, "--all-signatures")
    assert code == 1
    assert err.startswith("ledger: signature at prod seq 2: ")


def test_a_retired_key_is_reported_with_its_time_in_force(seeded: Env, capsys: Cap) -> None:
    """After two rotations a record signed by the first key names both ends of that key's epoch."""
    first = load_signer(seeded.key)
    with seeded.open() as lg:
        lg.rotate_key("ops")
        lg.rotate_key("ops")
        keys = list(lg.records(KEY_CHAIN))
        head = list(lg.records("prod"))[-1]
        ledger_id = lg.ledger_id
    start, end = keys[0]["timestamp"], keys[1]["timestamp"]
    later = keys[2]["timestamp"]
    _, data = seal(build.worker_sessions("w0", "v1", 3, "w0"), fleet="prod", seq=7, prev=head["hash"],
                   timestamp=later, signer=first, ledger_id=ledger_id)
    tamper_for(seeded.db).insert(7, "worker.sessions", data)
    code, _, err = verify(capsys, seeded)
    assert code == 1
    assert err == (f"ledger: key at prod seq 7: expected key {first.kid} in force {start}..{end}, "
                   f"found {later} (signed outside the key's time in force (retired key?))\n")


def test_a_second_genesis_in_the_key_chain_is_refused(seeded: Env, capsys: Cap) -> None:
    """Signed by the current key, in the right place: only the key chain's own rule refuses it."""
    signer = load_signer(seeded.key)
    with seeded.open() as lg:
        genesis = next(lg.records(KEY_CHAIN))
        ledger_id = lg.ledger_id
    body = {k: genesis[k] for k in ("event", "actor", "target", "result", "public_key", "new_kid",
                                    "ledger_id")}
    _, data = seal(body, fleet=KEY_CHAIN, seq=2, prev=genesis["hash"], timestamp=genesis["timestamp"],
                   signer=signer, ledger_id=ledger_id)
    tamper_for(seeded.db, KEY_CHAIN).insert(2, "ledger.initialized", data)
    code, _, err = verify(capsys, seeded)
    assert code == 1
    assert err.startswith("ledger: key chain at @keys seq 2: expected key.rotated, found ledger.initialized")


def test_a_checkpoint_of_an_empty_fleet_is_extended_by_it(env: Env, capsys: Cap, tmp_path: Path) -> None:
    with env.open() as lg:
        note = lg.checkpoint("staging", f"{env.key}.pub")
    assert note.split("\n")[1] == "0"
    kept = tmp_path / "staging.checkpoint"
    kept.write_text(note)
    code, out, _ = verify(capsys, env, "--checkpoint", str(kept))
    assert code == 0
    assert any(line.endswith("extends checkpoint of 0 records") for line in out.splitlines()), out


def test_verify_reports_progress_up_to_the_chains_size(seeded: Env) -> None:
    seen: list[tuple[int, int]] = []
    with seeded.open(writable=False) as lg:
        lg.verify(f"{seeded.key}.pub", fleets=["prod"],
                  progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6)


def test_a_long_chain_is_verified_in_parallel_and_its_fault_named(sqlite_env: Env) -> None:
    """Past the threshold records are checked in a pool of processes: the same faults, the same seq."""
    size = PARALLEL_THRESHOLD + 10
    with sqlite_env.open() as lg:
        lg.append_many("prod", [build.worker_sessions("w1", "v1", n % 5, "w1") for n in range(size)])
    with Ledger.open(sqlite_env.db, writable=False) as lg:
        report = lg.verify(f"{sqlite_env.key}.pub", all_signatures=False)
        assert report.chains[0].count == size
    rows = tamper_for(sqlite_env.db)
    at = size - 3
    record = orjson.loads(dict(rows.rows())[at])
    record["active_sessions"] += 1  # content changed, hash left as it was
    rows.set_state(at, orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    for every in (False, True):
        with Ledger.open(sqlite_env.db, writable=False) as lg, pytest.raises(VerificationError) as caught:
            lg.verify(f"{sqlite_env.key}.pub", all_signatures=every)
        fault = caught.value.fault
        assert (fault.chain, fault.seq, fault.check) == ("prod", at, "hash")



@pytest.mark.parametrize("origin", [
    pytest.param("deploy-ledger", id="prefix-alone"),
    pytest.param("other-log/{id}/prod", id="other-prefix"),
])
def test_a_key_name_counts_only_under_a_deploy_ledger_origin(seeded: Env, capsys: Cap, tmp_path: Path,
                                                             origin: str) -> None:
    """A checkpoint signed by the ledger's key under its key name, but with an origin that is not
    `deploy-ledger/<id>/<fleet>`, is not this ledger's checkpoint: refused as unsigned, exit 2."""
    signer = load_signer(seeded.key)
    with seeded.open() as lg:
        kept, _ = parse_checkpoint(lg.checkpoint("prod", f"{seeded.key}.pub"))
        ledger_id = lg.ledger_id
    forged = Checkpoint(origin.format(id=ledger_id), kept.size, kept.root, kept.head)
    path = tmp_path / "forged.checkpoint"
    path.write_text(sign_checkpoint(forged, signer, note_key_name(ledger_id, signer.kid)))
    code, _, err = verify(capsys, seeded, "--checkpoint", str(path))
    assert (code, err) == (2, "ledger: checkpoint signature does not verify under any key of this ledger\n")


def test_a_bundle_is_checked_signature_by_signature(seeded: Env, capsys: Cap, tmp_path: Path) -> None:
    """A key holder damages seq 2's signature only and re-signs the bundle's checkpoint and tiles over
    it: every other check passes, so only checking each record's signature finds it."""
    out = tmp_path / "bundle"
    assert run_cli(capsys, "export", *seeded.args(), "--fleet", "prod", "--out", str(out),
                   "--public-key", f"{seeded.key}.pub").code == 0
    signer = load_signer(seeded.key)
    with seeded.open() as lg:
        records = list(lg.raw_records("prod"))
        key_chain = list(lg.raw_records(KEY_CHAIN))
        ledger_id = lg.ledger_id
    records[1] = flip_sig(records[1])
    head = orjson.loads(records[-1])["hash"]
    note = sign_checkpoint(Checkpoint(checkpoint_origin(ledger_id, "prod"), len(records),
                                      merkle_root(records), head), signer,
                           note_key_name(ledger_id, signer.kid))
    forged = tmp_path / "forged"
    write_bundle(forged, note, records, key_chain)
    result = run_cli(capsys, "verify", "--bundle", str(forged), "--public-key", f"{seeded.key}.pub")
    assert result.code == 1
    assert result.err.startswith("ledger: signature at prod seq 2: ")


def test_a_private_key_given_as_a_checkpoint_is_named_and_never_echoed(seeded: Env, capsys: Cap) -> None:
    code, _, err = verify(capsys, seeded, "--checkpoint", str(seeded.key))
    assert (code, err) == (2, "ledger: the checkpoint file is a private key, not a checkpoint\n")


def test_a_signature_line_that_is_not_base64_is_malformed(seeded: Env, capsys: Cap, tmp_path: Path) -> None:
    """Strict base64: a stray character is not skipped over (the signature is what is checked)."""
    with seeded.open() as lg:
        note = lg.checkpoint("prod", f"{seeded.key}.pub")
    body, line = note.rstrip("\n").rsplit("\n", 1)
    path = tmp_path / "prod.checkpoint"
    path.write_text(f"{body}\n{line[:-8]}!{line[-8:]}\n")
    code, _, err = verify(capsys, seeded, "--checkpoint", str(path))
    assert (code, err) == (2, "ledger: checkpoint signature is not base64\n")
