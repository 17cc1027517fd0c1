"""Signing many record hashes on every core.

`cryptography`'s Ed25519 signing holds the GIL, so a large batch is signed in a
pool of processes, one per core, each holding the private key it was handed at
start. Small batches are signed in-process: a pool round trip costs more than
a few signatures.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.children import die_with_parent, parent_identity
from ledger.keys import Signer

PARALLEL_MIN = 256

_worker_key: Ed25519PrivateKey | None = None


def _init_worker(private_raw: bytes, parent: tuple[int, bool]) -> None:
    global _worker_key
    die_with_parent(*parent)  # a killed writer leaves no signer holding its database open
    _worker_key = Ed25519PrivateKey.from_private_bytes(private_raw)


def _sign_slice(messages: Sequence[bytes]) -> list[str]:
    assert _worker_key is not None
    return [base64.b64encode(_worker_key.sign(m)).decode("ascii") for m in messages]


class Signatures:
    """Signatures being made, slice by slice, in order."""

    def __init__(self, parts: list[Future[list[str]]]):
        self.parts = parts

    def result(self) -> list[str]:
        return [sig for part in self.parts for sig in part.result()]


class BatchSigner:
    """Signs lists of messages with one key, in parallel when the list is long."""

    def __init__(self, signer: Signer):
        self.signer = signer
        self._pool: ProcessPoolExecutor | None = None

    def sign_all(self, messages: Sequence[bytes]) -> list[str]:
        return self.submit(messages).result()

    def submit(self, messages: Sequence[bytes]) -> Signatures:
        """Start signing; the caller collects with `.result()` (so it can work meanwhile)."""
        workers = os.cpu_count() or 1
        if len(messages) < PARALLEL_MIN or workers < 2:
            done: Future[list[str]] = Future()
            done.set_result([self.signer.sign(m) for m in messages])
            return Signatures([done])
        if self._pool is None:
            self._pool = ProcessPoolExecutor(workers, initializer=_init_worker,
                                             initargs=(self.signer.private_bytes(), parent_identity()))
        size = -(-len(messages) // workers)
        return Signatures([self._pool.submit(_sign_slice, messages[i:i + size])
                           for i in range(0, len(messages), size)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
