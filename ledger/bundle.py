"""A fleet as a static C2SP tlog-tiles bundle, verified with no database.

Layout (c2sp.org/tlog-tiles, tile height 8):

    checkpoint                  the signed checkpoint (replaced on re-export)
    tile/<L>/<N>                256 hashes of tree level 8*L, nodes N*256..N*256+255
    tile/<L>/<N>.p/<W>          a partial tile: its first W hashes
    tile/entries/<N>[.p/<W>]    entry bundles: each record's stored bytes, 2-byte big-endian
                                length first, 256 records per full bundle
    keys.jsonl                  the key chain, as `ledger keys export` prints it
    schemas/*.json              the JSON Schemas of the records
    VERIFY.md                   how to verify this bundle

<N> is written in 3-digit groups, all but the last prefixed `x` (1234067 ->
x001/x234/067). A full tile never changes and a partial tile is named by its
width, so exporting again after more records only adds tiles (and replaces the
checkpoint and key chain); a tile that exists with other content is refused, as
it means the history the bundle holds was rewritten.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.chain import leaf_hash, node_hash, parse_checkpoint
from ledger.errors import Fault, FaultCheck, InputError, StorageError, VerificationError
from ledger.evidence import CheckpointRole, MemoryStore, Trust, read_key_chain
from ledger.schemas import all_schemas, render
from ledger.store import KEY_CHAIN
from ledger.verify import ChainReport, Verifier

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY = 0xFFFF

VERIFY_MD = """# Verifying this bundle

This directory is one fleet of a deploy-ledger as a C2SP tlog-tiles log
(https://c2sp.org/tlog-tiles): `checkpoint` (a C2SP signed note,
https://c2sp.org/tlog-checkpoint), hash tiles under `tile/<L>/`, the records
in entry bundles under `tile/entries/`, the key chain in `keys.jsonl`, and the
records' JSON Schemas in `schemas/`.

With the ledger's anchor key (published when the ledger was made):

    ledger verify --bundle . --public-key ed25519:...

checks, with no database: the key chain from the anchor, the checkpoint's
signature, every record (canonical bytes, hash, link, signature, schema), the
Merkle root against the checkpoint, and every hash tile against the records.

With any tlog-tiles client: the leaf hash of a record is SHA-256(0x00 || its
bytes); the checkpoint verifies under the vkeys `ledger keys show --vkey`
prints (key name `deploy-ledger/<ledger id>/<key id>`).
"""


def index_path(n: int) -> str:
    """tlog-tiles' encoding of a tile index: 3-digit groups, all but the last `x`-prefixed."""
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.insert(0, f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(groups)


def tile_path(level: str | int, n: int, width: int) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{index_path(n)}{suffix}"


def tree_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every complete node of the tree, level by level (level 0: the leaf hashes)."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def _chunks(items: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    for n in range(0, len(items), TILE_WIDTH):
        yield n // TILE_WIDTH, items[n:n + TILE_WIDTH]


def tiles(records: list[bytes], leaves: list[bytes]) -> dict[str, bytes]:
    """Every tile and entry bundle of the tree over `records` (path -> content)."""
    out: dict[str, bytes] = {}
    for n, chunk in _chunks(records):
        bundle = bytearray()
        for data in chunk:
            if len(data) > MAX_ENTRY:
                raise InputError(f"a record of {len(data)} bytes does not fit a tlog-tiles entry bundle")
            bundle += struct.pack(">H", len(data)) + data
        out[tile_path("entries", n, len(chunk))] = bytes(bundle)
    levels = tree_levels(leaves)
    for level in range(0, len(levels), TILE_HEIGHT):
        for n, chunk in _chunks(levels[level]):
            out[tile_path(level // TILE_HEIGHT, n, len(chunk))] = b"".join(chunk)
    return out


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that must not change: equal content is left alone, other content refused."""
    if path.exists():
        if path.read_bytes() != data:
            raise VerificationError(Fault(str(path), 0, FaultCheck.BUNDLE, "the same tile as exported before",
                                          "different content", "the history was rewritten since"))
        return
    _write(path, data)


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise StorageError(f"storage fault: cannot write {path}: {exc.strerror}") from None


def write_bundle(out: Path, checkpoint: str, records: list[bytes], key_chain: list[bytes]) -> int:
    """Write (or extend) a bundle; returns how many tile files were new."""
    parsed, _ = parse_checkpoint(checkpoint)
    records = records[:parsed.size]
    before = sum(1 for _ in out.rglob("*")) if out.exists() else 0
    for name, data in tiles(records, [leaf_hash(r) for r in records]).items():
        _write_new(out / name, data)
    added = (sum(1 for _ in out.rglob("*")) if out.exists() else 0) - before
    _write(out / "keys.jsonl", b"".join(line + b"\n" for line in key_chain))
    for name, schema in all_schemas().items():
        _write(out / "schemas" / name, render(schema))
    _write(out / "VERIFY.md", VERIFY_MD.encode())
    _write(out / "checkpoint", checkpoint.encode())
    return added


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VerificationError(Fault(str(path.name), 0, FaultCheck.BUNDLE, what, "missing",
                                      "the bundle is incomplete")) from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class BundleReport:
    fleet: str
    chain: ChainReport
    tiles: int


def verify_bundle(directory: Path, anchor_raw: bytes) -> BundleReport:
    """Verify a bundle against the anchor alone: key chain, checkpoint, records, tiles."""
    if not directory.is_dir():
        raise InputError(f"no bundle at {directory} (not a directory)")
    key_chain = read_key_chain(_read(directory / "keys.jsonl", "the key chain"))
    trust = Trust.from_anchor(anchor_raw, key_chain)
    try:
        text = _read(directory / "checkpoint", "a checkpoint").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the bundle's checkpoint is not UTF-8 text") from None
    checkpoint, fleet = trust.checkpoint(text, CheckpointRole.CHECKPOINT)
    records: list[bytes] = []
    full, rest = divmod(checkpoint.size, TILE_WIDTH)
    for n in range(full + (1 if rest else 0)):
        width = TILE_WIDTH if n < full else rest
        path = directory / tile_path("entries", n, width)
        data = _read(path, f"entry bundle {n}")
        entries: list[bytes] = []
        at = 0
        while at < len(data):
            if at + 2 > len(data):
                raise VerificationError(Fault(fleet, n * TILE_WIDTH + len(entries) + 1, FaultCheck.BUNDLE,
                                              "a length-prefixed entry", "truncated bundle"))
            (length,) = struct.unpack(">H", data[at:at + 2])
            entries.append(data[at + 2:at + 2 + length])
            at += 2 + length
        if len(entries) != width or at != len(data):
            raise VerificationError(Fault(fleet, n * TILE_WIDTH + 1, FaultCheck.BUNDLE, f"{width} entries",
                                          f"{len(entries)} entries", f"in {path.relative_to(directory)}"))
        records.extend(entries)
    store = MemoryStore({KEY_CHAIN: key_chain, fleet: records})
    with Verifier(store, anchor_raw) as verifier:  # type: ignore[arg-type]
        verifier.verify_keys()
        chain = verifier.verify_chain(fleet, checkpoint)
    expected = tiles(records, [leaf_hash(r) for r in records])
    for name, data in expected.items():
        if not name.startswith("tile/entries/") and _read(directory / name, name) != data:
            raise VerificationError(Fault(fleet, checkpoint.size, FaultCheck.TILE,
                                          f"{name} as the records hash",
                                          "other hashes", "a hash tile does not match the records"))
    return BundleReport(fleet, chain, len(expected))
