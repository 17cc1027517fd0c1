"""Who did what, as the records say it: for history and reports, beside the fleet's state.

`actors_summary` says whether the ledger authenticates its actors (and since
when); `decisions_by_actor` lists each decision, refusal and pending request of
a fleet with who requested it, whether the gate verified the requester's
signature, and who approved it. This is what the records claim, read fast;
`ledger verify` is what proves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.events import EVENT_TYPES
from ledger.policy import OPEN_NOTE, POLICY_CHAIN, Policy, fold
from ledger.store import Store, stored_bytes


@dataclass(frozen=True)
class ActorsSummary:
    """Whether actors are authenticated, and since when."""

    authenticated: bool
    since: str | None

    def note(self) -> str:
        if not self.authenticated:
            return OPEN_NOTE
        return (f"actors are authenticated since {self.since}: each decision since is signed by its "
                "actor (`ledger verify` re-checks every signature against the policy of its time)")

    def to_dict(self) -> dict[str, Any]:
        return {"authenticated": self.authenticated, "since": self.since, "note": self.note()}


def _records(store: Store, chain: str) -> Iterator[dict[str, Any]]:
    for row in store.scan(chain):
        yield orjson.loads(stored_bytes(row.state))


def policy_of(store: Store) -> Policy:
    return fold(_records(store, POLICY_CHAIN))


def actors_summary(store: Store) -> ActorsSummary:
    policy = policy_of(store)
    return ActorsSummary(policy.enforced, policy.enforced_since)


def decisions_by_actor(store: Store, fleet: str) -> list[dict[str, Any]]:
    """Each gated record of `fleet`: seq, event, version, requester, signature, approvers."""
    rows = []
    for record in _records(store, fleet):
        event_type = EVENT_TYPES.get(str(record.get("event")))
        if event_type is None or not event_type.gated:
            continue
        row: dict[str, Any] = {
            "seq": record["seq"], "event": record["event"], "version": record.get("version"),
            "requested_by": record.get("actor"),
            "signature_verified": record.get("actor_verified"),
            "approved_by": [a.get("actor") for a in record.get("approvals") or []],
        }
        for name in ("check", "command", "request_seq"):
            if name in record:
                row[name] = record[name]
        rows.append(row)
    return rows
