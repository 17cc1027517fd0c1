"""`ledger export` writes C2SP tlog-tiles; `ledger verify --bundle` checks them with no database."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import commands as build
from ledger.bundle import index_path
from tests.conftest import Env, doctored_copy, run_cli, seed


def test_tile_indexes_are_written_in_x_prefixed_groups_of_three() -> None:
    assert [index_path(n) for n in (0, 5, 999, 1000, 1234067)] == [
        "000", "005", "999", "x001/000", "x001/x234/067"]


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _grow(env: Env, n: int, tag: str) -> None:
    with env.open() as lg:
        lg.append_many("prod", [build.worker_start(f"{tag}{i}", "v1", "platform") for i in range(n)])


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_a_bundle_is_tlog_tiles_verifies_offline_and_grows_by_adding_files(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    _grow(env, 294, "a")  # 300 records: a full tile, a partial one, and a level-1 tile
    out = env.dir / "bundle"
    made = run_cli(capsys, "export", *env.args(), "--fleet", "prod", "--out", str(out))
    assert made.code == 0, made.err
    files = _files(out)
    for name in ("checkpoint", "keys.jsonl", "VERIFY.md", "schemas/record.json", "tile/0/000",
                 "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/000", "tile/entries/001.p/44"):
        assert name in files, name
    # Read as any tlog-tiles client would: entries -> leaf hashes -> tile hashes -> root.
    records, data = [], files["tile/entries/000"] + files["tile/entries/001.p/44"]
    while data:
        (length,) = struct.unpack(">H", data[:2])
        records.append(data[2:2 + length])
        data = data[2 + length:]
    leaves = [_h(b"\x00" + r) for r in records]
    assert files["tile/0/000"] == b"".join(leaves[:256])
    assert files["tile/0/001.p/44"] == b"".join(leaves[256:])
    level = leaves[:256]
    while len(level) > 1:
        level = [_h(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    assert files["tile/1/000.p/1"] == level[0]
    pub = str(env.pub)
    checked = run_cli(capsys, "verify", "--bundle", str(out), "--public-key", pub)
    assert checked.code == 0, checked.err
    assert "300 records in fleet prod" in checked.out

    _grow(env, 10, "b")
    assert run_cli(capsys, "export", *env.args(), "--fleet", "prod", "--out", str(out)).code == 0
    again = _files(out)
    for name, content in files.items():
        if name.startswith("tile/"):
            assert again[name] == content, f"{name} changed on re-export"
    assert "tile/0/001.p/54" in again and "tile/entries/001.p/54" in again
    assert run_cli(capsys, "verify", "--bundle", str(out), "--public-key", pub).code == 0


def test_a_doctored_bundle_fails_and_a_rewritten_history_is_not_exported_over_it(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with env.open() as lg:
        seed(lg)
    out = env.dir / "bundle"
    assert run_cli(capsys, "export", *env.args(), "--fleet", "prod", "--out", str(out)).code == 0
    pub = str(env.pub)

    copies = iter(range(100))

    def doctored(name: str, change: Callable[[bytes], bytes] | None) -> int:
        copy = doctored_copy(out, env.dir / f"copy-{next(copies)}", name, change)
        result = run_cli(capsys, "verify", "--bundle", str(copy), "--public-key", pub)
        assert result.err.count("\n") == 1, result.err
        return result.code

    entries = "tile/entries/000.p/6"
    assert doctored(entries, lambda b: b.replace(b'"ci"', b'"CI"', 1)) == 1
    assert doctored("tile/0/000.p/6", lambda b: bytes([b[0] ^ 1]) + b[1:]) == 1
    assert doctored("tile/0/000.p/6", None) == 1
    assert doctored("checkpoint", lambda b: b.replace(b"\n6\n", b"\n5\n")) == 1
    assert doctored("keys.jsonl", lambda b: b.replace(b'"test"', b'"eve"')) == 1
    other = run_cli(capsys, "verify", "--bundle", str(out), "--public-key",
                    "ed25519:" + "A" * 43 + "=")
    assert other.code == 1
    tile = out / "tile/0/000.p/6"
    tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
    refused = run_cli(capsys, "export", *env.args(), "--fleet", "prod", "--out", str(out))
    assert refused.code == 1 and "rewritten" in refused.err


def _reference_tiles(records: list[bytes]) -> dict[str, bytes]:
    """tlog-tiles computed the plain way, from every level of the whole tree held at once."""
    from ledger.bundle import TILE_HEIGHT, TILE_WIDTH, tile_path

    out: dict[str, bytes] = {}
    for n in range(0, len(records), TILE_WIDTH):
        chunk = records[n:n + TILE_WIDTH]
        out[tile_path("entries", n // TILE_WIDTH, len(chunk))] = b"".join(
            struct.pack(">H", len(r)) + r for r in chunk)
    levels = [[_h(b"\x00" + r) for r in records]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([_h(b"\x01" + below[i] + below[i + 1]) for i in range(0, len(below) - 1, 2)])
    for level in range(0, len(levels), TILE_HEIGHT):
        for n in range(0, len(levels[level]), TILE_WIDTH):
            chunk = levels[level][n:n + TILE_WIDTH]
            out[tile_path(level // TILE_HEIGHT, n // TILE_WIDTH, len(chunk))] = b"".join(chunk)
    return out


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 257, 300, 511, 512, 65535, 65536, 65537])
def test_tiles_made_as_records_arrive_are_the_tiles_of_the_whole_tree(size: int) -> None:
    from ledger.bundle import TileBuilder
    from ledger.chain import merkle_root

    records = [b"record %d" % i for i in range(size)]
    made: dict[str, bytes] = {}
    builder = TileBuilder(lambda name, data: made.setdefault(name, data))
    for record in records:
        builder.add(record)
    assert builder.finish() == merkle_root(records)
    assert made == _reference_tiles(records)


def test_export_refuses_records_that_are_not_the_tree_the_checkpoint_signs(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from ledger import VerificationError
    from ledger.bundle import write_bundle

    with env.open() as lg:
        seed(lg)
        checkpoint = lg.checkpoint("prod")
        records = list(lg.raw_records("prod"))
    with pytest.raises(VerificationError, match="changed while it was exported"):
        write_bundle(env.dir / "bundle", checkpoint, [*records[:-1], records[0]], [])
    with pytest.raises(VerificationError, match="changed while it was exported"):
        write_bundle(env.dir / "short", checkpoint, records[:-1], [])
