"""A ledger record as a CloudEvent (1.0, structured JSON mode).

Event routers, SIEMs and serverless consumers speak CloudEvents; giving each
record that envelope lets them route by `type` and de-duplicate by `id`
without knowing the ledger. The record itself travels untouched as `data`
(its stored bytes spliced in, so a consumer can still re-hash and verify it).

- `id` is the record's hash: unique per record, and the same on every
  delivery and from every server process, so "seen this id" is an exact
  de-duplication key;
- `source` is `/deploy-ledger/<anchor key id>/fleets/<fleet>`: the ledger
  (named by its anchor key, as checkpoints name it) and the fleet;
- `type` is the record's event; `time` its ledger timestamp; `subject` the fleet;
- `sequence` (the CloudEvents sequence extension, a string that sorts
  lexicographically) is the record's `seq`, zero-padded to 20 digits.
"""

from __future__ import annotations

import orjson

CONTENT_TYPE = "application/cloudevents+json"
SEQUENCE_DIGITS = 20


def source_of(ledger_id: str, fleet: str) -> str:
    return f"/deploy-ledger/{ledger_id}/fleets/{fleet}"


def sequence_of(seq: int) -> str:
    return str(seq).zfill(SEQUENCE_DIGITS)


def to_cloudevent(data: bytes, ledger_id: str) -> bytes:
    """The structured-mode CloudEvent (JSON bytes) of one stored record."""
    record = orjson.loads(data)
    envelope = orjson.dumps({
        "specversion": "1.0",
        "id": record["hash"],
        "source": source_of(ledger_id, record["fleet"]),
        "type": record["event"],
        "subject": record["fleet"],
        "time": record["timestamp"],
        "datacontenttype": "application/json",
        "sequence": sequence_of(int(record["seq"])),
    })
    return envelope[:-1] + b',"data":' + data + b"}"
