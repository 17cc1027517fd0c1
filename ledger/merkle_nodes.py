"""The tree's interior hashes, kept beside the records so a proof reads O(log n) of them.

Each insert also writes, in the same transaction, every perfect subtree its
records complete: `(stream, level, index, hash)`, level 0 being the leaf
hashes. The writer reads the O(log n) subtrees that make up the chain before
the batch (its "peaks") and folds the new leaves onto them. A chain whose
first records were written before this table existed has no peaks to read, so
it never gets nodes, and proofs for it read the leaves instead: a chain has
nodes for all of its leaves or for none (`has_nodes` tells which).

The nodes are derived data, never trusted: a proof made from them is checked
against the signed checkpoint's root before it is printed, and by whoever
verifies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.chain import leaf_hash, node_hash

SUFFIX = "_merkle"


def table_name(events_table: str) -> str:
    return events_table + SUFFIX


def peak_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up a tree of `size` leaves, left first."""
    peaks = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            peaks.append((level, start >> level))
            start += 1 << level
    return peaks


def new_nodes(size: int, peaks: Sequence[bytes], leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
    """Every (level, index, hash) completed by appending `leaves` to a tree of `size` leaves
    whose peaks (as `peak_positions(size)` lists them) hash to `peaks`."""
    stack = [(level, hash_) for (level, _), hash_ in zip(peak_positions(size), peaks, strict=True)]
    out = []
    for leaf in leaves:
        out.append((0, size, leaf))
        level, node = 0, leaf
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            node = node_hash(left, node)
            level += 1
            out.append((level, size >> level, node))
        stack.append((level, node))
        size += 1
    return out


def group(stored_events: Sequence[StoredEvent]) -> dict[str, list[StoredEvent]]:
    """The batch's records per stream, in position order."""
    streams: dict[str, list[StoredEvent]] = {}
    for event in stored_events:
        streams.setdefault(str(event.originator_id), []).append(event)
    for events in streams.values():
        events.sort(key=lambda e: e.originator_version)
    return streams


def leaves_of(events: Sequence[StoredEvent]) -> list[bytes]:
    return [leaf_hash(bytes(e.state)) for e in events]


def peaks_query(table: str, count: int, mark: str) -> str:
    """One SELECT for a stream's peaks (`mark`: the driver's placeholder)."""
    where = " OR ".join([f"(level={mark} AND idx={mark})"] * count)
    return f"SELECT level, idx, hash FROM {table} WHERE stream={mark} AND ({where})"


def nodes_to_write(cursor: Any, table: str, mark: str, stored_events: Sequence[StoredEvent],
                   **options: Any) -> list[tuple[str, int, int, bytes]]:
    """The rows this batch adds, read and folded inside the insert's transaction
    (`options` go to `cursor.execute`)."""
    rows: list[tuple[str, int, int, bytes]] = []
    for stream, events in group(stored_events).items():
        size = events[0].originator_version - 1
        positions = peak_positions(size)
        peaks: list[bytes] = []
        if positions:
            params: list[Any] = [stream]
            for level, idx in positions:
                params += [level, idx]
            cursor.execute(peaks_query(table, len(positions), mark), params, **options)
            found = {(int(r["level"]), int(r["idx"])): bytes(r["hash"]) for r in cursor.fetchall()}
            if len(found) != len(positions):
                continue  # a chain older than this table: it has no nodes, its proofs read leaves
            peaks = [found[p] for p in positions]
        rows.extend((stream, level, idx, node) for level, idx, node in
                    new_nodes(size, peaks, leaves_of(events)))
    return rows


def insert_statement(table: str, count: int, mark: str) -> str:
    """One PostgreSQL INSERT of `count` node rows, replacing any there (see `UPSERT_SQLITE`)."""
    row = f"({mark}, {mark}, {mark}, {mark})"
    return (f"INSERT INTO {table} (stream, level, idx, hash) VALUES " + ", ".join([row] * count)
            + " ON CONFLICT (stream, level, idx) DO UPDATE SET hash = EXCLUDED.hash")


#: Nodes are derived data: one left by a history since deleted (its events removed, the
#: table not) is replaced by the node of the history written now, never a conflict.
UPSERT_SQLITE = "INSERT OR REPLACE INTO {table} (stream, level, idx, hash) VALUES (?, ?, ?, ?)"
