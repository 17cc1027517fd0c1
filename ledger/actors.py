"""An actor's Ed25519 keys: the public keys the policy registers, and the private key that signs.

People already hold keys: `ssh-keygen -t ed25519` writes an OpenSSH private
key and a `ssh-ed25519 AAAA... comment` public line, and both load here with
`cryptography` as they are. The ledger's own format works too: a public key as
`ed25519:<base64 of 32 bytes>`, a private key as a PEM (PKCS#8) file or as the
32 raw bytes. Errors name the file and never quote its content: a mistaken
argument may well be someone's private key.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyFileError
from ledger.keys import PUBLIC_PREFIX, key_id, parse_public_key, public_text, raw_public

MAX_KEY_FILE = 16384
SSH_PREFIX = "ssh-ed25519 "


def parse_actor_public_key(text: str, where: str = "the actor's public key") -> bytes:
    """The 32 raw bytes of an actor's public key: `ed25519:<base64>` or an OpenSSH `ssh-ed25519` line."""
    stripped = text.strip()
    if "PRIVATE KEY" in stripped:
        raise KeyFileError(f"{where} is a private key; give the public key (`.pub` file)")
    if stripped.startswith(SSH_PREFIX):
        try:
            key = serialization.load_ssh_public_key(stripped.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError):
            raise KeyFileError(f"{where} is not a valid ssh-ed25519 public key line") from None
        if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the prefix says ed25519
            raise KeyFileError(f"{where} is not an Ed25519 key")
        return raw_public(key)
    if stripped.startswith("ssh-"):
        raise KeyFileError(f"{where} is an SSH key of another type; only ssh-ed25519 keys can sign")
    if not stripped.startswith(PUBLIC_PREFIX):
        raise KeyFileError(f"{where} is not a public key (expected {PUBLIC_PREFIX}<base64> or an "
                           "`ssh-ed25519 AAAA...` line)")
    return parse_public_key(stripped, where)


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} not found") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or 'bad path'}"
                           ) from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{what} {path} is too large to be a key")
    return data


def read_actor_public_key(value: str) -> bytes:
    """An actor's public key given inline (`ed25519:...`, `ssh-ed25519 ...`) or as a file holding one."""
    if value.startswith((PUBLIC_PREFIX, SSH_PREFIX)):
        return parse_actor_public_key(value, "the public key given")
    path = Path(value)
    data = _read(path, "public key file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"public key file {path} is not a public key (not ASCII text)") from None
    return parse_actor_public_key(text, f"public key file {path}")


class ActorSigner:
    """An actor's name and private key, in memory only; signs command envelopes.

    The Python API hands one of these to the gate (`FleetService.submit(...,
    signer=...)`); the CLI loads one from `--actor-key` / `LEDGER_ACTOR_KEY`.
    """

    def __init__(self, name: str, private_key: Ed25519PrivateKey):
        self.name = name
        self._key = private_key
        self.public_raw = raw_public(private_key.public_key())
        self.kid = key_id(self.public_raw)
        self.public_text = public_text(self.public_raw)

    def __repr__(self) -> str:
        return f"ActorSigner(name={self.name!r}, kid={self.kid})"

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode("ascii")

    def as_actor(self, name: str) -> ActorSigner:
        """The same key acting under `name`."""
        return ActorSigner(name, self._key)

    @classmethod
    def generate(cls, name: str) -> ActorSigner:
        return cls(name, Ed25519PrivateKey.generate())

    def private_pem(self) -> bytes:
        """The key as an unencrypted PKCS#8 PEM file's content (for tests and demos that make keys)."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())


def load_actor_signer(path: Path, name: str) -> ActorSigner:
    """The private key in `path` (OpenSSH, PEM PKCS#8, or 32 raw bytes), acting as `name`."""
    data = _read(path, "actor key file")
    key: object
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        elif b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        elif len(data) == 32:
            key = Ed25519PrivateKey.from_private_bytes(data)
        else:
            raise KeyFileError(f"actor key file {path} is not a private key (OpenSSH, PEM or 32 raw bytes)")
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"actor key file {path} is not an unencrypted Ed25519 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"actor key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return ActorSigner(name, key)
