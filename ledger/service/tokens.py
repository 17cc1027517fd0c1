"""Bearer tokens for the service, stored hashed, each with its roles.

A reader (a SIEM, a dashboard) and a writer (CI, a pool) get different
tokens, so a leaked read token cannot deploy. The tokens file holds one
`name:roles:sha256hex` line per token (`roles` is `read`, `write` or
`read,write`; a `name:sha256hex` line is a read token). Only the SHA-256 of a
token is stored, so the file is not a secret worth stealing; `add_token`
prints a fresh random token once. Standard library only: `ledger service
token add` runs on a base install.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ledger.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Token:
    """One stored token: who it is, what it may do, and the hash of its secret."""

    name: str
    roles: frozenset[Role]
    digest: str

    def line(self) -> str:
        roles = ",".join(sorted(role.value for role in self.roles))
        return f"{self.name}:{roles}:{self.digest}"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_roles(text: str) -> frozenset[Role]:
    try:
        roles = frozenset(Role(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"roles must be read, write or read,write, not {text!r}") from None
    if not roles:
        raise InputError("a token needs at least one role (read, write)")
    return roles


def parse_line(line: str, where: str) -> Token:
    parts = line.strip().split(":")
    if len(parts) == 2:
        name, roles, digest = parts[0], frozenset({Role.READ}), parts[1]
    elif len(parts) == 3:
        name, roles, digest = parts[0], parse_roles(parts[1]), parts[2]
    else:
        raise InputError(f"{where}: expected name:roles:sha256hex")
    if not _NAME.match(name):
        raise InputError(f"{where}: bad token name {name!r}")
    if not _HEX.match(digest):
        raise InputError(f"{where}: the token hash must be 64 lowercase hex digits")
    return Token(name, roles, digest)


def read_tokens(path: str | os.PathLike[str]) -> list[Token]:
    """Every token in the file (blank lines and `#` comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read tokens file {path}: {exc.strerror}") from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            tokens.append(parse_line(line, f"{path} line {number}"))
    names = [t.name for t in tokens]
    if len(names) != len(set(names)):
        raise InputError(f"{path}: a token name appears twice")
    return tokens


def add_token(path: str | os.PathLike[str], name: str, roles: frozenset[Role]) -> str:
    """Store a new random token's hash under `name`; return the token (shown once)."""
    if not _NAME.match(name):
        raise InputError(f"bad token name {name!r} (letters, digits, _ . @ -)")
    file = Path(path)
    existing = read_tokens(file) if file.exists() else []
    if any(t.name == name for t in existing):
        raise InputError(f"a token named {name!r} is already in {path}")
    secret = "dlt_" + secrets.token_urlsafe(32)
    line = Token(name, roles, digest_of(secret)).line() + "\n"
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return secret


class TokenStore:
    """The tokens file, re-read when it changes, so adding a token needs no restart."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._by_digest: dict[str, Token] = {}
        self._reload()

    def _reload(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._by_digest = {t.digest: t for t in read_tokens(self.path)}
            self._stamp = stamp

    def find(self, secret: str) -> Token | None:
        """The token whose hash matches `secret` (compared in constant time), or None."""
        with contextlib.suppress(OSError, InputError):  # keep the last good set, lock no one out
            self._reload()
        wanted = digest_of(secret)
        for digest, token in self._by_digest.items():
            if hmac.compare_digest(digest, wanted):
                return token
        return None
