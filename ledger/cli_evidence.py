"""`ledger prove` and `ledger verify-proof`: proofs a reviewer checks with no database.

`prove` reads the ledger; `verify-proof` reads only the proof file, the anchor
key and (after a rotation) the key chain file: whoever holds those needs
neither the database nor this ledger's operator to check a record.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.api import Ledger
from ledger.bundle import verify_bundle, write_bundle
from ledger.errors import InputError, UnknownFleetError
from ledger.evidence import Trust, read_key_chain, verify_proof_text
from ledger.keys import read_public_key
from ledger.names import seq_argument, shown
from ledger.policy import POLICY_CHAIN
from ledger.store import KEY_CHAIN, default_db
from ledger.witness import Witness

Common = Callable[..., None]
MAX_PROOF_BYTES = 16 * 1024 * 1024


def _read_text(path: str, what: str) -> str:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_PROOF_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} {shown(path)}: {getattr(exc, 'strerror', exc)}") from None
    if len(data) > MAX_PROOF_BYTES:
        raise InputError(f"{what} {shown(path)} is too large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {shown(path)} is not UTF-8 text") from None


def cmd_prove(args: argparse.Namespace) -> int:
    with Ledger.open(args.db or default_db(), args.key, writable=True, read_only=True) as ledger:
        if args.consistency:
            old = _read_text(args.consistency[0], "checkpoint")
            if len(args.consistency) > 1:
                new = _read_text(args.consistency[1], "checkpoint")
            else:
                fleet = old.split("\n", 1)[0].split("/", 2)[-1]
                new = ledger.checkpoint(fleet, args.public_key)
            sys.stdout.write(ledger.prove_consistency(old, new))
            return 0
        if args.seq is None:
            raise InputError("`ledger prove` needs --seq N (inclusion) or --consistency OLD [NEW]")
        if args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"fleet {args.fleet!r} has no records in {ledger.label}")
        if args.checkpoint:
            checkpoint = _read_text(args.checkpoint, "checkpoint")
        else:
            checkpoint = ledger.checkpoint(args.fleet, args.public_key)
        sys.stdout.write(ledger.prove_inclusion(args.fleet, args.seq, checkpoint))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with Ledger.open(args.db or default_db(), args.key, writable=True, read_only=True) as ledger:
        if args.fleet not in ledger.fleets():
            raise UnknownFleetError(f"fleet {args.fleet!r} has no records in {ledger.label}")
        checkpoint = ledger.checkpoint(args.fleet, args.public_key)  # verifies the fleet first
        size = int(checkpoint.split("\n", 2)[1])
        key_chain = list(ledger.raw_records(KEY_CHAIN))
        policy_chain = list(ledger.raw_records(POLICY_CHAIN))  # none in open mode
        added = write_bundle(out, checkpoint, ledger.raw_records(args.fleet), key_chain, policy_chain)
    print(f"exported {size} records of fleet {args.fleet} to {out} ({added} new files)")
    return 0


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    anchor = read_public_key(args.public_key, "--public-key") if args.public_key else None
    if anchor is None:
        raise InputError("`ledger verify --bundle` needs --public-key (the ledger's anchor)")
    report = verify_bundle(Path(args.bundle), anchor)
    print(f"verified bundle: {report.chain.count} records in fleet {report.fleet}, "
          f"head {report.chain.head}, {report.tiles} tiles and bundles match the checkpoint")
    print(report.actors.describe())
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    text = _read_text(args.proof, "proof")
    anchor = read_public_key(args.public_key, "--public-key")
    chain = read_key_chain(_read_text(args.keys, "key chain").encode()) if args.keys else None
    verdict = verify_proof_text(text, Trust.from_anchor(anchor, chain))
    print(f"valid {verdict.kind} proof: {verdict.summary}")
    return 0


def cmd_witness(args: argparse.Namespace) -> int:
    state = Path(args.state)
    if args.action == "init":
        print(Witness.init(state, args.name))
        return 0
    if not args.file or not args.public_key:
        raise InputError("`ledger witness cosign` needs a checkpoint or proof FILE and --public-key")
    anchor = read_public_key(args.public_key, "--public-key")
    chain = read_key_chain(_read_text(args.keys, "key chain").encode()) if args.keys else None
    witness = Witness(state, args.name, Trust.from_anchor(anchor, chain))
    sys.stdout.write(witness.cosign(_read_text(args.file, "checkpoint or proof")))
    return 0


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    p = sub.add_parser("prove", help="print an inclusion (tlog-proof) or consistency proof")
    common(p)
    p.add_argument("--seq", type=seq_argument, default=None, help="the record to prove (inclusion)")
    p.add_argument("--checkpoint", default=None,
                   help="prove against this signed checkpoint (default: sign a fresh one)")
    p.add_argument("--consistency", nargs="+", metavar="CHECKPOINT", default=None,
                   help="OLD [NEW]: prove NEW (default: a fresh checkpoint) extends OLD")
    p.add_argument("--public-key", default=None, help="anchor for the fresh checkpoint's verify")
    p.set_defaults(handler=cmd_prove)

    p = sub.add_parser("export", help="write a fleet as a static C2SP tlog-tiles bundle")
    common(p)
    p.add_argument("--out", required=True, help="the bundle directory (re-export only adds tiles)")
    p.add_argument("--public-key", default=None, help="anchor for the checkpoint's verify")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("witness", help="cosign a checkpoint only if it extends the last one cosigned")
    p.add_argument("action", choices=["init", "cosign"])
    p.add_argument("file", nargs="?", default=None,
                   help="cosign: a checkpoint, or a consistency proof from the last cosigned one")
    p.add_argument("--state", required=True, help="the witness's directory (its key and memory)")
    p.add_argument("--name", required=True, help="the witness's key name (e.g. witness.example/w1)")
    p.add_argument("--public-key", default=None, help="the log's anchor key")
    p.add_argument("--keys", default=None, help="the log's key chain (`ledger keys export`)")
    p.set_defaults(handler=cmd_witness)

    p = sub.add_parser("verify-proof", help="check a proof file with no database")
    p.add_argument("proof", help="a .tlog-proof or consistency proof file")
    p.add_argument("--public-key", required=True, help="the trusted anchor key or its file")
    p.add_argument("--keys", default=None,
                   help="the key chain (`ledger keys export`), for checkpoints signed after a rotation")
    p.set_defaults(handler=cmd_verify_proof)
