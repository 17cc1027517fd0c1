"""A fleet as a static C2SP tlog-tiles bundle, verified with no database.

Layout (c2sp.org/tlog-tiles, tile height 8):

    checkpoint                  the signed checkpoint (replaced on re-export)
    tile/<L>/<N>                256 hashes of tree level 8*L, nodes N*256..N*256+255
    tile/<L>/<N>.p/<W>          a partial tile: its first W hashes
    tile/entries/<N>[.p/<W>]    entry bundles: each record's stored bytes, 2-byte big-endian
                                length first, 256 records per full bundle
    keys.jsonl                  the key chain, as `ledger keys export` prints it
    policy.jsonl                the policy chain, as `ledger feed --fleet @policy` prints it
                                (only when the ledger has one)
    schemas/*.json              the JSON Schemas of the records
    VERIFY.md                   how to verify this bundle

<N> is written in 3-digit groups, all but the last prefixed `x` (1234067 ->
x001/x234/067). A full tile never changes and a partial tile is named by its
width, so exporting again after more records only adds tiles (and replaces the
checkpoint, key chain and policy chain); a tile that exists with other content,
or a policy chain that does not extend the one exported before, is refused, as
it means the history the bundle holds was rewritten.

Verifying a bundle checks its records as `verify` checks a database's, and,
when the ledger's policy is enforced, re-checks every signed command and fact
against the policy chain with the same checker (`ledger.verify_actors`): the
bundle is just another source of records.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.chain import EMPTY_TREE_ROOT, leaf_hash, node_hash, parse_checkpoint, subtree_peaks
from ledger.errors import Fault, FaultCheck, InputError, StorageError, VerificationError
from ledger.evidence import CheckpointRole, MemoryStore, Trust, read_key_chain
from ledger.policy import POLICY_CHAIN
from ledger.schemas import all_schemas, render
from ledger.store import KEY_CHAIN
from ledger.verify import ChainReport, Verifier
from ledger.verify_actors import ActorsReport, verify_actors

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY = 0xFFFF
KEYS_FILE = "keys.jsonl"
POLICY_FILE = "policy.jsonl"

VERIFY_MD = """# Verifying this bundle

This directory is one fleet of a deploy-ledger as a C2SP tlog-tiles log
(https://c2sp.org/tlog-tiles): `checkpoint` (a C2SP signed note,
https://c2sp.org/tlog-checkpoint), hash tiles under `tile/<L>/`, the records
in entry bundles under `tile/entries/`, the key chain in `keys.jsonl`, and the
records' JSON Schemas in `schemas/`. When the ledger records who may do what,
its policy chain (actors, their keys, roles, approval rules) is in
`policy.jsonl`, one record a line, as `ledger feed --fleet @policy` prints it.

With the ledger's anchor key (published when the ledger was made):

    ledger verify --bundle . --public-key ed25519:...

checks, with no database: the key chain from the anchor, the checkpoint's
signature, every record (canonical bytes, hash, link, signature, schema), the
Merkle root against the checkpoint, and every hash tile against the records.
With `policy.jsonl` it also verifies the policy chain like any chain (hashes,
links, the ledger's signatures under the key chain) and re-checks every signed
command and fact of the fleet as `ledger verify` does: the actor's signature
over the stored envelope, that the envelope states the record, that the key
was the actor's and in force under the policy the record names (and that
policy was not already superseded), the nonce, the expiry, the role and the
approvals.

No `policy.jsonl` means the ledger had no policy when exported (open mode:
the actor names are what the writer claimed, proven by nothing). A bundle
whose records carry actor signatures but has no `policy.jsonl` fails: its
signed commands could not be checked.

Limits: a bundle is one fleet, so a nonce is checked to be used once within
this fleet and the policy chain, not across the ledger's other fleets. The
policy chain is signed by the ledger but no checkpoint covers it: one cut
short is caught only where a record names a later policy position; keep an
earlier `policy.jsonl` to compare (a re-export refuses one that does not
extend it).

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


def _fold(hashes: list[bytes]) -> bytes:
    """The root of a full tile's TILE_WIDTH hashes: TILE_HEIGHT levels up."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class TileBuilder:
    """The tiles and entry bundles of a tree, made as its records arrive in order.

    It holds at most one tile's worth of hashes per tile level and one entry
    bundle, so memory does not grow with the tree: each full tile is handed to
    `emit(path, content)` as soon as it is complete, the partial ones at
    `finish`. A level-L tile holds the tree's nodes at height 8*L; the node at
    height 8*(L+1) over a full tile is folded from it and goes up a level.
    """

    def __init__(self, emit: Callable[[str, bytes], None]):
        self.emit = emit
        self.size = 0
        self._entries = bytearray()
        self._pending: list[list[bytes]] = []  # per tile level, the hashes of its unfinished tile
        self._full: list[int] = []  # per tile level, how many full tiles it has

    def add(self, record: bytes) -> None:
        if len(record) > MAX_ENTRY:
            raise InputError(f"a record of {len(record)} bytes does not fit a tlog-tiles entry bundle")
        self._entries += struct.pack(">H", len(record)) + record
        leaf = leaf_hash(record)
        self.size += 1
        if self.size % TILE_WIDTH == 0:
            self.emit(tile_path("entries", self.size // TILE_WIDTH - 1, TILE_WIDTH), bytes(self._entries))
            self._entries.clear()
        self._add_node(0, leaf)

    def _add_node(self, level: int, node: bytes) -> None:
        if level == len(self._pending):
            self._pending.append([])
            self._full.append(0)
        pending = self._pending[level]
        pending.append(node)
        if len(pending) == TILE_WIDTH:
            self.emit(tile_path(level, self._full[level], TILE_WIDTH), b"".join(pending))
            self._full[level] += 1
            root = _fold(pending)
            pending.clear()
            self._add_node(level + 1, root)

    def finish(self) -> bytes:
        """Emit the partial tiles and entry bundle; return the tree's root."""
        if self._entries:
            self.emit(tile_path("entries", self.size // TILE_WIDTH, self.size % TILE_WIDTH),
                      bytes(self._entries))
        peaks: list[bytes] = []  # the tree's perfect subtrees, largest first
        for level in reversed(range(len(self._pending))):
            pending = self._pending[level]
            if pending:
                self.emit(tile_path(level, self._full[level], len(pending)), b"".join(pending))
                peaks += [node for _, node in subtree_peaks(pending)]
        if not peaks:
            return EMPTY_TREE_ROOT
        root = peaks[-1]
        for left in reversed(peaks[:-1]):
            root = node_hash(left, root)
        return root


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


def _chain_file(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _check_extends(path: Path, lines: Sequence[bytes]) -> None:
    """A chain file exported before must be a prefix of the one about to replace it."""
    try:
        old = read_key_chain(path.read_bytes())
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"storage fault: cannot read {path}: {exc.strerror}") from None
    for line, (before, now) in enumerate(itertools.zip_longest(old, lines), 1):
        if before is None:
            return
        if before != now:
            raise VerificationError(Fault(path.name, line, FaultCheck.BUNDLE,
                                          f"line {line} as exported before",
                                          "no such line" if now is None else "another record",
                                          "the history was rewritten since"))


def write_bundle(out: Path, checkpoint: str, records: Iterable[bytes], key_chain: list[bytes],
                 policy_chain: Sequence[bytes] = ()) -> int:
    """Write (or extend) a bundle from the fleet's records in order; returns how many files
    and directories were new. The records are streamed: memory does not grow with them.

    The tree they make must be the one the checkpoint signs (the caller verified
    the fleet to sign it; a record changed since is refused here). The policy
    chain (none in open mode) must extend any the bundle already holds; that is
    checked before anything is written."""
    parsed, _ = parse_checkpoint(checkpoint)
    _check_extends(out / POLICY_FILE, policy_chain)
    before = sum(1 for _ in out.rglob("*")) if out.exists() else 0
    builder = TileBuilder(lambda name, data: _write_new(out / name, data))
    for record in itertools.islice(records, parsed.size):
        builder.add(record)
    root = builder.finish()
    if builder.size != parsed.size or root != parsed.root:
        raise VerificationError(Fault(parsed.origin, builder.size, FaultCheck.BUNDLE,
                                      f"the {parsed.size} records the checkpoint signs",
                                      f"{builder.size} records of another tree",
                                      "the ledger changed while it was exported"))
    added = (sum(1 for _ in out.rglob("*")) if out.exists() else 0) - before
    _write(out / KEYS_FILE, _chain_file(key_chain))
    if policy_chain:
        _write(out / POLICY_FILE, _chain_file(policy_chain))
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
    #: Who did what, as far as the bundle shows it (open mode when it has no policy chain).
    actors: ActorsReport


class BundleSource:
    """A bundle's records as verification reads them: each span from its entry bundles,
    read when asked for, so verifying a bundle holds a few bundles at a time. The key
    chain and policy chain (small, read whole from their files) are served beside them."""

    def __init__(self, directory: Path, fleet: str, size: int, key_chain: list[bytes],
                 policy_chain: list[bytes] | None = None):
        self.directory = directory
        self.fleet = fleet
        self.size = size
        self.key_chain = key_chain
        self.side = MemoryStore({KEY_CHAIN: key_chain, POLICY_CHAIN: policy_chain or []})

    def chains(self) -> list[str]:
        return [self.fleet]

    def last_seq(self, chain: str) -> int:
        return self.size if chain == self.fleet else self.side.last_seq(chain)

    def rows(self, chain: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        if chain != self.fleet:
            return self.side.rows(chain, after, limit)
        end = min(after + limit, self.size)
        out: list[tuple[int, bytes]] = []
        for n in range(after // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH):
            for position, record in enumerate(self.bundle(n), n * TILE_WIDTH + 1):
                if after < position <= end:
                    out.append((position, record))
        return out

    def bundle(self, n: int) -> list[bytes]:
        """The records of entry bundle `n`, checked to be as many as the checkpoint says."""
        full, rest = divmod(self.size, TILE_WIDTH)
        width = TILE_WIDTH if n < full else rest
        path = self.directory / tile_path("entries", n, width)
        data = _read(path, f"entry bundle {n}")
        entries: list[bytes] = []
        at = 0
        while at < len(data):
            if at + 2 > len(data):
                raise VerificationError(Fault(self.fleet, n * TILE_WIDTH + len(entries) + 1,
                                              FaultCheck.BUNDLE,
                                              "a length-prefixed entry", "truncated bundle"))
            (length,) = struct.unpack(">H", data[at:at + 2])
            entries.append(data[at + 2:at + 2 + length])
            at += 2 + length
        if len(entries) != width or at != len(data):
            raise VerificationError(Fault(self.fleet, n * TILE_WIDTH + 1, FaultCheck.BUNDLE,
                                          f"{width} entries",
                                          f"{len(entries)} entries",
                                          f"in {path.relative_to(self.directory)}"))
        return entries


def _policy_chain(directory: Path) -> list[bytes] | None:
    """The bundle's policy chain, or None when it has none (open mode, or the file removed)."""
    path = directory / POLICY_FILE
    if not path.exists():
        return None
    return read_key_chain(_read(path, "the policy chain"))


def _in_file(error: VerificationError, where: str) -> VerificationError:
    """The same fault, saying which of the bundle's files holds the record."""
    fault = error.fault
    return VerificationError(replace(fault, detail=f"{fault.detail}; {where}" if fault.detail else where))


def _check_actors(source: BundleSource, verifier: Verifier, fleet: str, chain: ChainReport,
                  policy: list[bytes] | None) -> ActorsReport:
    """The checks `ledger verify` makes of who did what, over the bundle's files.

    Records that only an enforced ledger writes are never taken as open mode: with
    no policy chain, or one that (as the bundle has it) never enforced the policy,
    their signatures went unchecked, so the bundle fails instead."""

    try:
        report = verify_actors(source, verifier.ledger_id, {fleet: chain.count},
                               lambda chain: verifier.verify_chain(chain).count)
    except VerificationError as error:
        fault = error.fault
        if fault.chain == POLICY_CHAIN:  # as a chain, or as a policy
            raise _in_file(error, f"{POLICY_FILE} line {fault.seq}") from None
        if fault.chain != fleet or not 0 < fault.seq <= source.size:
            raise
        bundle = (fault.seq - 1) // TILE_WIDTH
        width = min(TILE_WIDTH, source.size - bundle * TILE_WIDTH)
        raise _in_file(error, f"in {tile_path('entries', bundle, width)}") from None
    if not report.enforced:
        signed = chain.first_attested  # found by verifying the chain (`ledger.verify.ATTESTED`)
        if signed:
            found = (f"no {POLICY_FILE}" if policy is None
                     else f"a {POLICY_FILE} of {len(policy)} record(s) that never enforces a policy")
            raise VerificationError(Fault(fleet, signed, FaultCheck.BUNDLE,
                                          f"the policy chain ({POLICY_FILE}) its actor signature is "
                                          f"checked against", found,
                                          "the bundle is incomplete: its signed commands cannot be checked"))
    return report


def verify_bundle(directory: Path, anchor_raw: bytes) -> BundleReport:
    """Verify a bundle against the anchor alone: key chain, checkpoint, records, tiles, and
    (with its policy chain) every signed command and fact against the policy of its time."""
    if not directory.is_dir():
        raise InputError(f"no bundle at {directory} (not a directory)")
    key_chain = read_key_chain(_read(directory / KEYS_FILE, "the key chain"))
    policy = _policy_chain(directory)
    trust = Trust.from_anchor(anchor_raw, key_chain)
    try:
        text = _read(directory / "checkpoint", "a checkpoint").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the bundle's checkpoint is not UTF-8 text") from None
    checkpoint, fleet = trust.checkpoint(text, CheckpointRole.CHECKPOINT)
    source = BundleSource(directory, fleet, checkpoint.size, key_chain, policy)
    full, rest = divmod(checkpoint.size, TILE_WIDTH)
    for n in range(full + (1 if rest else 0)):  # every bundle's shape first, as a reader meets them
        source.bundle(n)
    with Verifier(source, anchor_raw) as verifier:
        verifier.verify_keys()
        chain = verifier.verify_chain(fleet, checkpoint)
        actors = _check_actors(source, verifier, fleet, chain, policy)
    tiles = [0]

    def compare(name: str, data: bytes) -> None:
        tiles[0] += 1
        if not name.startswith("tile/entries/") and _read(directory / name, name) != data:
            raise VerificationError(Fault(fleet, checkpoint.size, FaultCheck.TILE,
                                          f"{name} as the records hash",
                                          "other hashes", "a hash tile does not match the records"))

    builder = TileBuilder(compare)
    for n in range(full + (1 if rest else 0)):
        for record in source.bundle(n):
            builder.add(record)
    builder.finish()
    return BundleReport(fleet, chain, tiles[0], actors)
