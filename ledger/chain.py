"""Record hashing, the hash chain, the RFC 6962 Merkle root, and checkpoints.

A record's `hash` is SHA-256 of its canonical bytes without `hash` and `sig`;
its `sig` is Ed25519 over a context prefix, the ledger's identity and that
digest, so a record (or a whole chain) copied into another ledger that shares
the key no longer verifies there; its `prev` is the hash of the record before
(32 zero bytes for the first). The Merkle tree's leaves are the stored record
bytes, hashed with RFC 6962's 0x00/0x01 prefixes, and a checkpoint is a C2SP
signed note over the tree size, root and head, whose origin names the ledger's
identity and the fleet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.encoding import canonical
from ledger.errors import InputError
from ledger.keys import Signer, key_id, verify_signature

GENESIS_PREV = "0" * 64
ORIGIN_PREFIX = "deploy-ledger"
#: Format 2: the signed message binds the ledger's identity (format 1 did not).
SIGNATURE_CONTEXT = b"deploy-ledger/record/v2\x00"
#: The identity no ledger has: a message bound to it verifies in no ledger.
NO_LEDGER = "0" * 32
EMPTY_TREE_ROOT = hashlib.sha256(b"").digest()
EM_DASH = "\u2014"
ED25519_ALGORITHM = b"\x01"


@dataclass(frozen=True)
class Head:
    """The last record of a chain: where the next one links."""

    seq: int
    hash: str
    timestamp: str

    @classmethod
    def empty(cls) -> Head:
        return cls(0, GENESIS_PREV, "")


def signed_message(record_hash_hex: str, ledger_id: str = NO_LEDGER) -> bytes:
    """What a record's signature covers: the context, the 16-byte ledger id, the 32-byte hash.

    `"deploy-ledger/record/v2" 0x00 || ledger id || record hash` (the two as raw
    bytes, 16 + 32). Without `ledger_id` the message is bound to no ledger and
    verifies in none (for measuring signing cost only).
    """
    return SIGNATURE_CONTEXT + bytes.fromhex(ledger_id) + bytes.fromhex(record_hash_hex)


def checkpoint_origin(ledger_id: str, fleet: str) -> str:
    """The origin line of a fleet's checkpoints: `deploy-ledger/<ledger id>/<fleet>`."""
    return f"{ORIGIN_PREFIX}/{ledger_id}/{fleet}"


def note_key_name(ledger_id: str, kid: str) -> str:
    """The signed-note key name of one signing key: `deploy-ledger/<ledger id>/<kid>`.

    The origin names the log (ledger and fleet); the key name names the key, so
    a standard note verifier given one vkey per key of the chain (`ledger keys
    show --vkey`) verifies checkpoints from before and after a rotation alike.
    """
    return f"{ORIGIN_PREFIX}/{ledger_id}/{kid}"


def origin_ledger_id(origin: str) -> str | None:
    """The ledger id an origin `deploy-ledger/<ledger id>/<fleet>` states, if it has that shape."""
    parts = origin.split("/", 2)
    if len(parts) == 3 and parts[0] == ORIGIN_PREFIX:
        return parts[1]
    return None


def vkey(name: str, public_raw: bytes) -> str:
    """A C2SP signed-note verifier key: `<name>+<hex key hash>+<base64(0x01 || key)>`."""
    encoded = base64.b64encode(ED25519_ALGORITHM + public_raw).decode("ascii")
    return f"{name}+{note_key_hash(name, public_raw).hex()}+{encoded}"


def unsigned_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical bytes of a record less `hash` and `sig`."""
    body = {k: v for k, v in record.items() if k != "hash" and k != "sig"}
    return hashlib.sha256(canonical(body)).hexdigest()


def link(
    body: Mapping[str, Any], *, fleet: str, seq: int, prev: str, timestamp: str, kid: str
) -> dict[str, Any]:
    """Add the chain fields and the hash to a validated body (signing comes after)."""
    record = dict(body)
    record.update(seq=seq, prev=prev, fleet=fleet, timestamp=timestamp, kid=kid)
    record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
    return record


def seal(
    body: Mapping[str, Any],
    *,
    fleet: str,
    seq: int,
    prev: str,
    timestamp: str,
    signer: Signer,
    ledger_id: str,
) -> tuple[dict[str, Any], bytes]:
    """Add the chain fields to a validated body; return the record and its bytes."""
    record = link(body, fleet=fleet, seq=seq, prev=prev, timestamp=timestamp, kid=signer.kid)
    record["sig"] = signer.sign(signed_message(record["hash"], ledger_id))
    return record, canonical(record)


def leaf_hash(record_bytes: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleAccumulator:
    """RFC 6962 tree head over leaves added one by one, in O(log n) memory.

    It keeps the roots of the perfect subtrees that make up the leaves so far
    (largest first); the tree head folds them from the right, which is exactly
    RFC 6962's split at the largest power of two.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []

    def add(self, leaf: bytes) -> None:
        height, node = 0, leaf
        while self._peaks and self._peaks[-1][0] == height:
            _, left = self._peaks.pop()
            node = node_hash(left, node)
            height += 1
        self._peaks.append((height, node))
        self.size += 1

    def add_subtree(self, height: int, node: bytes) -> None:
        """Add the root of a perfect subtree of 2**height leaves (`peaks()` of a tree that
        follows this one), which must start where the leaves so far end on its own grid."""
        if self.size % (1 << height):
            raise ValueError(f"a subtree of height {height} cannot follow {self.size} leaves")
        self.size += 1 << height
        while self._peaks and self._peaks[-1][0] == height:
            _, left = self._peaks.pop()
            node = node_hash(left, node)
            height += 1
        self._peaks.append((height, node))

    def peaks(self) -> list[tuple[int, bytes]]:
        """The (height, root) of the perfect subtrees that make up the leaves so far, largest first."""
        return list(self._peaks)

    def copy(self) -> MerkleAccumulator:
        other = MerkleAccumulator()
        other.size, other._peaks = self.size, list(self._peaks)
        return other

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_TREE_ROOT
        node = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            node = node_hash(left, node)
        return node


def subtree_peaks(leaves: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """(height, root) of the perfect subtrees that make up a tree of these leaf hashes,
    largest first: what `MerkleAccumulator.peaks` holds after adding them one by one."""
    peaks = []
    start = 0
    count = len(leaves)
    sha256 = hashlib.sha256
    for height in range(count.bit_length() - 1, -1, -1):
        if count >> height & 1:
            level = leaves[start:start + (1 << height)]
            while len(level) > 1:
                level = [sha256(b"\x01" + left + right).digest()
                         for left, right in zip(level[::2], level[1::2], strict=True)]
            peaks.append((height, level[0]))
            start += 1 << height
    return peaks


def merkle_root(records: Iterable[bytes]) -> bytes:
    accumulator = MerkleAccumulator()
    for record in records:
        accumulator.add(leaf_hash(record))
    return accumulator.root()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of a chain's size, Merkle root and head hash."""

    origin: str
    size: int
    root: bytes
    head: str

    def body(self) -> str:
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\nhead {self.head}\n"


def note_key_hash(name: str, public_raw: bytes) -> bytes:
    """C2SP signed-note key hash: SHA-256(name || LF || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALGORITHM + public_raw).digest()[:4]


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer, key_name: str | None = None) -> str:
    """The checkpoint as a signed note, signed under `key_name` (default: the origin).

    The ledger signs under `note_key_name(ledger id, kid)`; the origin as key name
    is what format-2 ledgers before key names wrote, and still verifies.
    """
    body = checkpoint.body()
    name = key_name or checkpoint.origin
    signature = note_key_hash(name, signer.public_raw) + signer.sign_raw(body.encode())
    line = f"{EM_DASH} {name} {base64.b64encode(signature).decode('ascii')}\n"
    return body + "\n" + line


def parse_checkpoint(text: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its checkpoint and (name, key hash, sig) lines."""
    if "PRIVATE KEY" in text:
        raise InputError("the checkpoint file is a private key, not a checkpoint")
    body, sep, signatures = text.partition("\n\n")
    if not sep:
        raise InputError("checkpoint has no signature block (expected a blank line)")
    lines = body.split("\n")
    if len(lines) < 4 or not lines[3].startswith("head "):
        raise InputError("checkpoint must have origin, size, root and 'head <hash>' lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise InputError("checkpoint size or root is malformed") from None
    if size < 0 or len(root) != 32:
        raise InputError("checkpoint size or root is malformed")
    checkpoint = Checkpoint(lines[0], size, root, lines[3].removeprefix("head "))
    parsed = []
    for number, line in enumerate(signatures.splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise InputError(f"checkpoint signature line {number} is malformed "
                             "(expected '\u2014 <name> <base64 signature>')")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise InputError("checkpoint signature is not base64") from None
        if len(blob) == 68:  # key hash + Ed25519 signature; other kinds (cosignatures) are ignored
            parsed.append((parts[1], blob[:4], blob[4:]))
    if checkpoint.body() != body + "\n":
        raise InputError("checkpoint body is not in canonical form")
    return checkpoint, parsed


def checkpoint_signed_by(
    checkpoint: Checkpoint,
    signatures: list[tuple[str, bytes, bytes]],
    public_keys: Iterable[bytes],
) -> bool:
    """True when one signature line verifies under one of the given keys.

    A key signs under its own name (`note_key_name`) or, as before key names,
    under the origin; a line under any other name is another party's (a witness).
    """
    message = checkpoint.body().encode()
    keys = list(public_keys)
    ledger_id = origin_ledger_id(checkpoint.origin)
    for name, key_hash, sig in signatures:
        for raw in keys:
            names = {checkpoint.origin}
            if ledger_id is not None:
                names.add(note_key_name(ledger_id, key_id(raw)))
            if name not in names:
                continue
            if note_key_hash(name, raw) == key_hash and verify_signature(
                raw, base64.b64encode(sig).decode("ascii"), message
            ):
                return True
    return False
