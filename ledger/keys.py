"""Ed25519 key files, key ids, signing and signature checks.

A private key lives in a PEM file of mode 0600 and is never printed, nor is any
part of a file given where a public key was expected. Public keys travel as
text, `ed25519:<base64 of the 32 raw bytes>`; a key id (`kid`) is the first 8
bytes of SHA-256 of the raw public key, in hex. The file `<key>.pub` beside a
new key holds its public key, for publishing; verification never trusts it by
default (whoever can replace the database can replace that file too).
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.errors import KeyFileError, LedgerError, StorageError

PUBLIC_PREFIX = "ed25519:"


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw: bytes) -> str:
    """The short id a record names its signing key by."""
    return hashlib.sha256(raw).digest()[:8].hex()


def public_text(raw: bytes) -> str:
    return PUBLIC_PREFIX + base64.b64encode(raw).decode("ascii")


MAX_PUBLIC_KEY_FILE = 4096


def parse_public_key(text: str, where: str = "the public key given") -> bytes:
    """Raw 32 bytes from `ed25519:<base64>` (or bare base64), with a clear error.

    Errors name `where` the text came from and never quote the text itself: a
    mistaken argument may well be a private key.
    """
    if "PRIVATE KEY" in text:
        raise KeyFileError(f"{where} is a private key, not a public key: give the public key "
                           "(`ed25519:...`, printed by `ledger init` and kept in <key>.pub)")
    body = text.strip().removeprefix(PUBLIC_PREFIX)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where} is not a public key (expected {PUBLIC_PREFIX}<base64 of 32 bytes>)"
                           ) from None
    if len(raw) != 32:
        raise KeyFileError(f"{where} is not an Ed25519 public key (it decodes to {len(raw)} bytes, not 32)")
    return raw


def read_public_key(value: str, where: str = "--public-key") -> bytes:
    """A trusted public key given as text (`ed25519:...`) or as the path of a file holding it."""
    if value.startswith(PUBLIC_PREFIX) or "PRIVATE KEY" in value:
        return parse_public_key(value, f"the key given with {where}")
    path = Path(value)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PUBLIC_KEY_FILE + 1)
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the "path"
        return parse_public_key(value, f"{where} (neither an existing file nor a key)")
    except OSError as exc:
        raise KeyFileError(f"cannot read public key file {path} ({where}): {exc.strerror}") from None
    where_file = f"public key file {path} ({where})"
    if len(data) > MAX_PUBLIC_KEY_FILE:
        raise KeyFileError(f"{where_file} is too large to be a public key")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{where_file} is not a public key (not ASCII text)") from None
    return parse_public_key(text, where_file)


class Signer:
    """Holds a private key in memory and signs record hashes; never shows it."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None):
        self._key = private_key
        self.path = path
        self.public_raw = raw_public(private_key.public_key())
        self.kid = key_id(self.public_raw)
        self.public_text = public_text(self.public_raw)

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid})"

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode("ascii")

    def sign_raw(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def private_bytes(self) -> bytes:
        """Raw private bytes, only for handing to the ledger's own signing workers."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())


@functools.lru_cache(maxsize=64)
def _public_key(public_raw: bytes) -> Ed25519PublicKey:
    """The key object of raw public key bytes: made once per key, not once per signature."""
    return Ed25519PublicKey.from_public_bytes(public_raw)


def verify_signature(public_raw: bytes, sig_b64: str, message: bytes) -> bool:
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        _public_key(public_raw).verify(sig, message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def write_private_key(path: Path, signer: Signer) -> None:
    """Write a new private key file, mode 0600, refusing to overwrite one."""
    pem = signer._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise _key_write_fault(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)  # never leave half a key behind
        raise _key_write_fault(exc, path) from None
    signer.path = path


def _key_write_fault(exc: OSError, path: Path) -> LedgerError:
    """A key file that cannot be written: the disk's fault (exit 4) or the caller's (exit 2)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
        return StorageError(f"storage fault: cannot create key file {path}: {exc.strerror}")
    return KeyFileError(f"cannot create key file {path}: {exc.strerror}")


def write_public_key(path: Path, raw: bytes) -> None:
    try:
        path.write_text(public_text(raw) + "\n", encoding="ascii")
    except OSError as exc:
        raise _key_write_fault(exc, path) from None


def load_signer(path: Path) -> Signer:
    """Load a private key file with a one-line error for each way it can fail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"signing key not found at {path} (run `ledger init`, or give --key / LEDGER_KEY)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return Signer(key, path)


def public_key_path(key_path: Path) -> Path:
    """Where `init` leaves the public key, for publishing: beside the private key."""
    return key_path.with_name(key_path.name + ".pub")


def next_key_path(key_path: Path, kid: str) -> Path:
    """Where a rotation stages the new private key (named by its id) before it takes over."""
    return key_path.with_name(f"{key_path.name}.next.{kid}")
