"""A signed, hash-chained ledger of deploys, drains, workers and rollbacks."""

from ledger.api import Ledger, Receipt
from ledger.errors import (
    Fault,
    FaultCheck,
    InputError,
    LedgerError,
    NotFoundError,
    RecordError,
    StorageError,
    VerificationError,
)
from ledger.feed import FeedFilter, feed

__all__ = [
    "Fault",
    "FaultCheck",
    "FeedFilter",
    "InputError",
    "Ledger",
    "LedgerError",
    "NotFoundError",
    "Receipt",
    "RecordError",
    "StorageError",
    "VerificationError",
    "feed",
]
