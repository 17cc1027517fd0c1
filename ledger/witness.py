"""A witness: cosigns a fleet's checkpoints only as the log grows (c2sp.org/tlog-cosignature).

The witness keeps, per origin, the last checkpoint it cosigned (a file in its
state directory). It cosigns a new checkpoint only when a consistency proof
shows the new tree extends that one, so two parties holding checkpoints it
cosigned hold views of one history: a truncated or forked ledger cannot get
its checkpoint cosigned. The first checkpoint of an origin is taken on trust
(there is nothing to be consistent with). One witness process per state
directory: it takes no lock.

A cosignature is an Ed25519 `cosignature/v1` note signature: key ID
SHA-256(name || LF || 0x04 || key)[:4], then an 8-byte big-endian POSIX time,
then the signature over `cosignature/v1\\ntime <t>\\n` and the checkpoint body.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.chain import EM_DASH, Checkpoint, parse_checkpoint
from ledger.errors import Fault, FaultCheck, InputError, StorageError, VerificationError
from ledger.evidence import CONSISTENCY_HEADER, CheckpointRole, Trust, split_notes
from ledger.keys import Signer, load_signer, write_private_key
from ledger.proofs import ProofError, verify_consistency

COSIGNATURE_ALGORITHM = b"\x04"
KEY_FILE = "witness.key"


def cosigner_key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + COSIGNATURE_ALGORITHM + public_raw).digest()[:4]


def cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosigner_vkey(name: str, public_raw: bytes) -> str:
    encoded = base64.b64encode(COSIGNATURE_ALGORITHM + public_raw).decode("ascii")
    return f"{name}+{cosigner_key_id(name, public_raw).hex()}+{encoded}"


@dataclass
class Witness:
    """A named cosigner with its key and its memory of what it cosigned, in `state`."""

    state: Path
    name: str
    trust: Trust

    @staticmethod
    def init(state: Path, name: str) -> str:
        """Make the witness key; returns its vkey (to give to those who check cosignatures)."""
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"storage fault: cannot create {state}: {exc.strerror}") from None
        signer = Signer.generate()
        write_private_key(state / KEY_FILE, signer)
        return cosigner_vkey(name, signer.public_raw)

    def _signer(self) -> Signer:
        return load_signer(self.state / KEY_FILE)

    def _memory(self, origin: str) -> Path:
        return self.state / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".checkpoint")

    def last(self, origin: str) -> Checkpoint | None:
        path = self._memory(origin)
        if not path.exists():
            return None
        return parse_checkpoint(path.read_text(encoding="utf-8"))[0]

    def cosign(self, text: str, now: int | None = None) -> str:
        """The checkpoint in `text` (a bare checkpoint, or a consistency proof ending in one),
        cosigned; refuses (VerificationError) a truncation or a fork, saying why."""
        proof: list[bytes] | None = None
        if text.startswith(CONSISTENCY_HEADER + "\n"):
            head, _, rest = text.partition("\n\n")
            try:
                proof = [base64.b64decode(x, validate=True) for x in head.split("\n")[1:] if x]
            except ValueError:
                raise InputError("the consistency proof's hashes are not base64") from None
            old_text, new_text = split_notes(rest, 2)
            old, _ = self.trust.checkpoint(old_text, CheckpointRole.OLD)
        else:
            new_text, old = text, None
        new, fleet = self.trust.checkpoint(new_text, CheckpointRole.CHECKPOINT)
        last = self.last(new.origin)

        def refuse(check: FaultCheck, expected: str, found: str, why: str) -> VerificationError:
            return VerificationError(Fault(fleet, new.size, check, expected, found, why))

        if last is not None:
            if new.size < last.size:
                raise refuse(FaultCheck.TRUNCATION, f">= {last.size} records", f"{new.size} records",
                             "the log shrank since the checkpoint this witness cosigned")
            if new.size == last.size and new.root != last.root:
                raise refuse(FaultCheck.FORK, f"root {base64.b64encode(last.root).decode()}",
                             f"root {base64.b64encode(new.root).decode()}",
                             "same size, another history than the one this witness cosigned")
            if new.size > last.size:
                if old is None or proof is None:
                    raise InputError(f"the witness last cosigned {last.size} records of {new.origin}: "
                                     "give a consistency proof from that checkpoint "
                                     "(`ledger prove --consistency`)")
                if old.origin != new.origin or old.size != last.size or old.root != last.root:
                    raise InputError(f"the proof starts from {old.size} records; this witness last "
                                     f"cosigned {last.size} records of {new.origin}")
                try:
                    verify_consistency(old.size, new.size, old.root, new.root, proof)
                except ProofError as exc:
                    raise refuse(FaultCheck.FORK, f"a tree extending the one of {last.size} records",
                                 "a proof that fails", str(exc)) from None
        signer = self._signer()
        timestamp = int(time.time()) if now is None else now
        body = new.body()
        blob = (cosigner_key_id(self.name, signer.public_raw) + struct.pack(">Q", timestamp)
                + signer.sign_raw(cosigned_message(body, timestamp)))
        line = f"{EM_DASH} {self.name} {base64.b64encode(blob).decode('ascii')}\n"
        memory = self._memory(new.origin)
        try:
            temporary = memory.with_name(memory.name + ".tmp")
            temporary.write_text(new_text, encoding="utf-8")
            os.replace(temporary, memory)
        except OSError as exc:
            raise StorageError(f"storage fault: cannot record the cosigned checkpoint in {self.state}: "
                               f"{exc.strerror}") from None
        return new_text + line
