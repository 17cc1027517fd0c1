"""The two things the integration asks of a ledger beyond `append`: a short lock wait, and what it holds.

A sink must find out quickly that the ledger cannot be written, so that events
go to its spool instead of waiting in memory: the ledger's SQLite lock timeout
is 30 s, right for a CLI and far too long here. `open_ledger` shortens it for
the connections of one `Ledger` object (`Ledger.open(..., lock_timeout_s=...)`).

`recorded_identities` lists the `(source_instance, source_digest)` pairs a
fleet already holds, which is what makes a flush after a crash and a repeated
import add nothing twice.

`write_in_order` stores mapped bodies in their order: facts in batches, and
each decision a pool requested through the gate (`ledger.gate`), which
validates it like a command typed by a person and records the ledger's own
decision, linked to the pool's event, or its refusal. Given a reporter key, the
facts are signed and checked by the gate too (`ledger.reporter`), and given a
requester key, the requests are signed.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson

from ledger.actors import ActorSigner
from ledger.api import Ledger, Receipt
from ledger.decide import Meta, Rollback
from ledger.gate import FleetService
from ledger.openrtc.mapping import identity, is_request
from ledger.reporter import report_fact
from ledger.rollback import RollbackRequest

_MARKER = b'"source_digest"'

Identity = tuple[str, str]


def open_ledger(db: str | os.PathLike[str], key: str | os.PathLike[str] | None,
                lock_timeout_s: float | None = None) -> Ledger:
    """`Ledger.open`, with SQLite's busy wait cut to `lock_timeout_s` when given."""
    return Ledger.open(db, key, lock_timeout_s=lock_timeout_s)


def recorded_identities(ledger: Ledger, fleet: str, after: int = 0,
                        wanted: Collection[Identity] | None = None) -> set[Identity]:
    """Identities of the OpenRTC records in `fleet` after position `after` (only `wanted` ones if given)."""
    found: set[Identity] = set()
    for data in ledger.raw_records(fleet, after):
        if _MARKER not in data:
            continue
        key = identity(orjson.loads(data))
        if key is not None and (wanted is None or key in wanted):
            found.add(key)
    return found


_SOURCE_LINK = ("source", "source_instance", "source_digest", "source_seq", "source_worker",
                "source_timestamp", "source_event", "source_result")


def request_command(fleet: str, body: Mapping[str, Any]) -> Rollback:
    """The gate's command for a rollback a pool requested: validated like any rollback,
    carried out by the platform (the ledger watches), linked to the pool's event."""
    reason = str(body["reason"])
    key = str(body["idempotency_key"])
    request = RollbackRequest(fleet=fleet, actor=str(body["actor"]), reason=reason,
                              to_version=body.get("version"), from_version=body.get("from_version"),
                              idempotency_key=key)
    source = {name: body[name] for name in _SOURCE_LINK if name in body}
    return Rollback(request, Meta(str(body["actor"]), reason, key), external=True, source=source)


def write_in_order(ledger: Ledger, service: FleetService | None, fleet: str,
                   bodies: Sequence[Mapping[str, Any]], chunk: int, *,
                   reporter: ActorSigner | None = None, requester: ActorSigner | None = None,
                   ) -> list[Receipt]:
    """Store `bodies` in order: runs of facts with `append_many`, each request through the gate.

    With a `reporter`, each fact is signed in its name and checked by the gate
    instead (`ledger.reporter.report_fact`): one written per transaction, and a
    fact the reporter may not vouch for is refused and recorded in its place.
    With a `requester`, each request is signed by it and made in its name; an
    unsigned request in an enforced ledger is refused (recorded unproven).
    `service` may be None only when no body is a request and there is no reporter.
    """
    receipts: list[Receipt] = []
    run: list[Mapping[str, Any]] = []

    def flush() -> None:
        for start in range(0, len(run), chunk):
            receipts.extend(ledger.append_many(fleet, run[start:start + chunk], chunk=chunk))
        run.clear()

    for body in bodies:
        if not is_request(body) and reporter is None:
            run.append(body)
            continue
        flush()
        if service is None:
            raise ValueError("a decision request or a signed fact needs the gate (no FleetService given)")
        if not is_request(body):
            assert reporter is not None
            receipts.extend(report_fact(service, fleet, body, reporter).receipts)
            continue
        if requester is not None:
            body = {**body, "actor": requester.name}
        receipts.extend(service.submit(fleet, request_command(fleet, body), signer=requester).receipts)
    flush()
    return receipts
