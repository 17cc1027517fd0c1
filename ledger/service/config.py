"""The service's settings, one frozen value shared by every server process.

`ledger serve --workers N` runs N uvicorn processes; each builds its app from
this value, passed through the environment as JSON (uvicorn's worker
processes import the app by name and can take no arguments).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

from ledger.config import handed_over

ENV = "LEDGER_SERVICE_CONFIG"


@dataclass(frozen=True)
class ServiceConfig:
    """Where the ledger is, who may use it, and the limits each process enforces."""

    db: str
    key: str | None = None
    projections: str | None = None
    tokens: str | None = None
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = 1 << 20
    #: Live streams one token may hold open at once (429 beyond): across every server
    #: process on PostgreSQL, within the one process on SQLite (`ledger.service.leases`).
    max_streams_per_token: int = 64
    #: PostgreSQL: seconds a stream's lease lasts unless renewed (what a killed process's
    #: streams keep counting for).
    stream_lease_s: float = 30.0
    #: Most records a feed page returns.
    max_feed_limit: int = 10_000
    #: A stream sends a comment line this often when idle, so proxies keep it open.
    keepalive_s: float = 15.0
    #: A name for the logs (several processes against one database).
    name: str = "ledger"

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ServiceConfig:
        text = handed_over(ENV)
        if not text:
            raise RuntimeError(f"{ENV} is not set: start the service with `ledger serve`")
        return cls(**orjson.loads(text))
