"""Typed values of the fleet model that more than one layer reads: moves and their kinds.

The fold (`ledger.rules`), the decisions (`ledger.decide`), the executor
(`ledger.drive`) and the read models all ask "which move is in flight?"; they
read a `Move`'s attributes, never string keys, and its one codec
(`to_dict`/`from_dict`) is the JSON the read models store and print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MoveKind(StrEnum):
    """The two fleet moves: a deploy forward, or a rollback to a good version."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Move:
    """A deploy or rollback in flight: what started it (`seq`), where it goes, from where.

    `external` marks a rollback that the platform carries out while the
    ledger only watches (one a pool requested); `drain_timeout_s` is how long
    the ledger waits for the fleet to show it done before recording it failed.
    """

    kind: MoveKind
    version: str
    from_version: str | None
    seq: int
    timestamp: str | None = None
    actor: str | None = None
    external: bool = False
    drain_timeout_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "version": self.version,
                                "from_version": self.from_version, "seq": self.seq,
                                "timestamp": self.timestamp, "actor": self.actor}
        if self.external:
            data.update(external=True, drain_timeout_s=self.drain_timeout_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Move:
        try:
            kind, version, seq = MoveKind(data["kind"]), data["version"], data["seq"]
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"a move needs 'kind', 'version' and 'seq': {dict(data)!r:.200}") from exc
        if not isinstance(version, str) or not isinstance(seq, int):
            raise ValueError(f"a move needs a 'version' string and a 'seq' int: {dict(data)!r:.200}")
        timeout = data.get("drain_timeout_s")
        return cls(kind, version, data.get("from_version"), seq, data.get("timestamp"), data.get("actor"),
                   bool(data.get("external")), int(timeout) if timeout is not None else None)

    def describe(self) -> str:
        return f"a {self.kind.value} to {self.version} (seq {self.seq})"
