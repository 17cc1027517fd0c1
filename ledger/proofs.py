"""RFC 6962 / RFC 9162 inclusion and consistency proofs, as pure functions.

Generation reads the tree through one callback, `node(level, index)`: the hash
of the perfect subtree over leaves `[index * 2**level, (index + 1) * 2**level)`
(level 0 is a leaf hash). Every hash a proof needs is either such a node or a
right-edge subtree that folds from O(log n) of them, so a caller that keeps
perfect-subtree hashes (tiles, a table) answers a proof with O(log n) reads;
a caller that has only the leaves may compute nodes from them (`nodes_from_leaves`).

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step, and refuses
what the transparency-dev reference refuses: an index outside the tree, a
consistency proof from the empty tree, a proof of the wrong length, and any hash
that is not 32 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.chain import EMPTY_TREE_ROOT, node_hash

Node = Callable[[int, int], bytes]
HASH_SIZE = 32


class ProofError(Exception):
    """A proof that does not prove what it claims; the message says which check failed."""


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): RFC 6962's split point."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(start: int, end: int, node: Node) -> bytes:
    """MTH(D[start:end]) for a `start` aligned as the RFC's recursion leaves it.

    A perfect aligned range is one node; a ragged right edge folds the perfect
    subtrees it decomposes into, right to left (at most log2(end - start) reads).
    """
    size = end - start
    if size <= 0:
        raise ValueError("empty subtree")
    if size & (size - 1) == 0 and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    split = _largest_power_below(size)
    return node_hash(subtree_hash(start, start + split, node), subtree_hash(start + split, end, node))


def inclusion_proof(index: int, size: int, node: Node) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1, leaf-side first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of {size} leaves")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        split = _largest_power_below(end - start)
        if index < start + split:
            path.append(subtree_hash(start + split, end, node))
            end = start + split
        else:
            path.append(subtree_hash(start, start + split, node))
            start += split
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, node: Node) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2 (empty when the sizes are equal)."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from {size1} to {size2} leaves")
    proof: list[bytes] = []
    start, end, m, whole = 0, size2, size1, True
    while True:
        if m == end - start:
            if not whole:
                proof.append(subtree_hash(start, end, node))
            break
        split = _largest_power_below(end - start)
        if m <= split:
            proof.append(subtree_hash(start + split, end, node))
            end = start + split
        else:
            proof.append(subtree_hash(start, start + split, node))
            start, m, whole = start + split, m - split, False
    proof.reverse()
    return proof


def _check_hashes(*hashes: bytes) -> None:
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise ProofError(f"a hash of {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a leaf hash and its audit path imply (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of {size} leaves")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the audit path is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `leaf` is at `index` of the tree of `size` leaves with `root`."""
    _check_hashes(root)
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the audit path leads to another root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ProofError unless the tree (size2, root2) extends (size1, root1) (RFC 9162 §2.1.4.2)."""
    if size2 < size1:
        raise ProofError(f"the new tree ({size2}) is smaller than the old ({size1}): truncated")
    if size1 == size2:
        # As the reference: equal sizes prove consistency by equal roots alone.
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots: a fork")
        if size1 == 0 and root1 != EMPTY_TREE_ROOT:
            raise ProofError("the empty tree has another root")
        return
    _check_hashes(root1, root2, *proof)
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if not proof:
        raise ProofError("an empty consistency proof between different sizes")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != root1:
        raise ProofError("the proof does not lead to the old root: history was rewritten")
    if sr != root2:
        raise ProofError("the proof does not lead to the new root")


def nodes_from_leaves(leaves: Sequence[bytes]) -> Node:
    """A `node` callback over leaf hashes held in memory (caching every perfect subtree).

    For tests and for callers without stored interior hashes: O(n) to build once.
    """
    levels: list[list[bytes]] = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def node(level: int, index: int) -> bytes:
        return levels[level][index]

    return node
