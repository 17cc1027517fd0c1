"""The audit feed: flat records from a cursor, filtered, optionally followed.

A consumer keeps the last `seq` it processed and asks for records after it;
records come in chain order with their chain fields, so the consumer can check
each `prev` link itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from ledger.api import Ledger
from ledger.errors import InputError


def parse_time(text: str) -> str:
    """An RFC 3339 time (or date) as the ledger's fixed-width UTC timestamp."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"invalid time {text!r}: use RFC 3339, e.g. 2026-11-26T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class FeedFilter:
    event: str | None = None
    actor: str | None = None
    version: str | None = None
    since: str | None = None
    until: str | None = None

    def matches(self, record: dict[str, object]) -> bool:
        if self.event is not None and record.get("event") != self.event:
            return False
        if self.actor is not None and record.get("actor") != self.actor:
            return False
        if self.version is not None and self.version not in (
            record.get("version"), record.get("from_version")
        ):
            return False
        timestamp = str(record.get("timestamp", ""))
        if self.since is not None and timestamp < self.since:
            return False
        return not (self.until is not None and timestamp > self.until)


def feed(
    ledger: Ledger,
    fleet: str,
    *,
    after: int = 0,
    limit: int | None = None,
    where: FeedFilter | None = None,
    follow: bool = False,
) -> Iterator[bytes]:
    """Stored bytes of matching records after `after`; with `follow`, forever."""
    where = where or FeedFilter()
    plain = where == FeedFilter()
    sent = 0
    source = ledger.follow(fleet, after) if follow else ledger.raw_records(fleet, after)
    for data in source:
        if plain or where.matches(orjson.loads(data)):
            yield data
            sent += 1
            if limit is not None and sent >= limit:
                return
