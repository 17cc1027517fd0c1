"""Which public key verification trusts, and how the user chose it.

Verification is only as good as its anchor, so the anchor is always one the
user chose, never something that travels with the database: a key given on
the command line (`--public-key`), one named by `LEDGER_TRUST`, or the key
`ledger init` pinned in the user's own configuration
(`<config>/deploy-ledger/trust/<ledger id>.pub`). The `.pub` file beside the
private key is not trusted by default: whoever can replace the database can
usually replace that file as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledger.config import pinned_anchor_path, trust_dir, trust_from_env
from ledger.errors import InputError, StorageError
from ledger.keys import key_id, public_text, read_public_key
from ledger.names import is_ledger_id


@dataclass(frozen=True)
class Anchor:
    """A trusted public key and where it came from (printed by `verify`)."""

    public_raw: bytes
    source: str

    @property
    def kid(self) -> str:
        return key_id(self.public_raw)

    def describe(self) -> str:
        return f"{self.source}, key {self.kid}"


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def resolve_anchor(ledger_id: str | None, public_key: str | None = None) -> Anchor:
    """The anchor the user chose: given, else `LEDGER_TRUST`, else pinned at init for this ledger."""
    if public_key:
        return Anchor(read_public_key(public_key, "--public-key"), "given with --public-key")
    from_env = trust_from_env()
    if from_env:
        return Anchor(read_public_key(from_env, "LEDGER_TRUST"), "LEDGER_TRUST")
    if ledger_id and is_ledger_id(ledger_id):  # the path is built only from a well-formed id
        pinned = pinned_anchor_path(ledger_id)
        if pinned.exists():
            raw = read_public_key(str(pinned), "the pinned anchor")
            return Anchor(raw, f"pinned at init ({_home_relative(pinned)})")
    which = f"ledger {ledger_id}" if ledger_id else "this ledger"
    raise InputError(
        f"no trust anchor for {which}: give --public-key KEY|FILE (the key `ledger init` printed), "
        f"set LEDGER_TRUST, or pin it as {_home_relative(trust_dir())}/<ledger id>.pub"
    )


def pin_anchor(ledger_id: str, public_raw: bytes) -> Path:
    """Pin a new ledger's anchor in the user's configuration (refusing to change a pin)."""
    path = pinned_anchor_path(ledger_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(public_text(public_raw) + "\n")
    except FileExistsError:
        raise InputError(f"an anchor is already pinned for ledger {ledger_id} at {path}") from None
    except OSError as exc:
        raise StorageError(f"storage fault: cannot pin the anchor at {path}: {exc.strerror}") from None
    return path
