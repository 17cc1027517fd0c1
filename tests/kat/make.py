"""Build the known-answer ledger: every byte of its records and evidence is fixed.

Fixed keys (RFC 8032's Ed25519 test keys 1, 2 and 3: the first signs from
`init`, the others come in by two rotations), a fixed ledger identity and a
clock that starts at 2026-01-01T00:00:00Z and ticks one second per record
make the ledger below the same on every run and every machine: Ed25519
signatures are deterministic, and nothing else in a record, a checkpoint, a
proof or a bundle depends on anything but the records. What it writes pins
the formats (canonical bytes, record hash and signature, the key chain,
checkpoint origin, key name and layout, the tlog-proof and consistency-proof
files, the tlog-tiles bundle): tests/test_kat.py rebuilds it and compares
byte for byte, so a change to any of them is seen, and must be made as a new
format version.

The history, two fleets:

- `prod`: v1 deployed with a worker and completed; checkpoint `prod-4`; key
  rotation (key 2); v2 deployed and completed; a rollback to v1
  (`deployment.rolled_back`); a second rollback refused and recorded
  (`rollback.rejected`); the v2 worker drained and exited; the rollback
  completed; key rotation (key 3); 250 session reports; checkpoint `prod-N`, an inclusion proof of
  seq 1 and a consistency proof from `prod-4`; the fleet exported as a bundle
  (its tiles, entry bundles, checkpoint and key chain: the schemas and
  VERIFY.md it also holds are documents, not formats, and are left out).
- `staging`: v1 deployed and completed with one worker.

Run from a checkout:

    python -m tests.kat.make --out DIR

(`--out tests/kat/vectors` rewrites the checked-in vectors: do that only for a
deliberate new format version, as the README's format version policy says.)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import commands as build
from ledger.api import Ledger, Sources
from ledger.bundle import write_bundle
from ledger.decide import Complete, Deploy, Meta, Rollback
from ledger.evidence import prove_consistency, prove_inclusion
from ledger.gate import FleetService
from ledger.keys import Signer, write_private_key
from ledger.rollback import RollbackRequest
from ledger.store import KEY_CHAIN
from projections.runner import Projections

#: RFC 8032 section 7.1, TEST 1, 2 and 3: the secret keys, in the order they sign.
SECRETS = (
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
)
LEDGER_ID = "6b61742d6c65646765722d6b61742d31"  # "kat-ledger-kat-1" in hex
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FLEETS = ("prod", "staging")
#: Bundle files that are not a format: the JSON Schemas (they grow with every new event
#: type and are checked by tests/test_schemas.py) and the human-readable VERIFY.md.
NOT_FORMAT = ("schemas/", "VERIFY.md")
#: Session reports after the rollback: enough for a full tile (256 hashes) and a tile of
#: the level above, so the tile height and the tile paths of both levels are pinned.
LOAD = 250


def signer(index: int) -> Signer:
    return Signer(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SECRETS[index])))


def ticking_clock(start: datetime = EPOCH, step: timedelta = timedelta(seconds=1)) -> Callable[[], str]:
    """A clock that says `start`, then one `step` later at every call."""
    moments = (start + n * step for n in range(1_000_000))

    def now() -> str:
        return next(moments).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return now


def fixed_sources() -> Sources:
    """The known-answer ledger's sources: the clock above, keys 2 and 3 for the rotations."""
    keys: Iterator[Signer] = (signer(i) for i in range(1, len(SECRETS)))
    return Sources(now=ticking_clock(), new_signer=lambda: next(keys),
                   new_ledger_id=lambda: LEDGER_ID)


def _write(out: Path, name: str, data: bytes) -> None:
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _lines(records: Sequence[bytes]) -> bytes:
    return b"".join(record + b"\n" for record in records)


def build_ledger(work: Path, db: str | None = None) -> dict[str, bytes]:
    """Make the ledger in `db` (default: `work`/ledger.db) with its key and views in `work`,
    and return every known-answer file (name -> bytes)."""
    work.mkdir(parents=True, exist_ok=True)
    key = work / "ledger.key"
    write_private_key(key, signer(0))
    out: dict[str, bytes] = {}
    anchor = signer(0).public_text
    with Ledger.init(db or work / "ledger.db", key, reuse_key=True, pin=False,
                     sources=fixed_sources()) as lg, \
            Projections(lg.store, work / "views.db", notice=lambda _m: None) as views:
        gate = FleetService(lg, views)

        def decide(fleet: str, command: Deploy | Complete | Rollback, accepted: bool = True) -> None:
            outcome = gate.submit(fleet, command)
            if outcome.accepted != accepted:
                raise SystemExit(f"kat: {fleet}: {command!r} was {'not ' * accepted}accepted: "
                                 f"{outcome.decision!r}")

        decide("prod", Deploy("v1", Meta("ci", reason="first release")))
        lg.append("prod", build.worker_start("w1", "v1", "platform"))
        lg.append("prod", build.worker_sessions("w1", "v1", 2, "w1"))
        decide("prod", Complete("v1", Meta("ci")))
        old = lg.checkpoint("prod", anchor)

        decide("staging", Deploy("v1", Meta("ci")))
        lg.append("staging", build.worker_start("s1", "v1", "platform"))
        decide("staging", Complete("v1", Meta("ci")))

        lg.rotate_key("security", "scheduled rotation")
        decide("prod", Deploy("v2", Meta("ci", reason="weekly release")))
        lg.append("prod", build.worker_start("w2", "v2", "platform"))
        decide("prod", Complete("v2", Meta("ci")))
        request = RollbackRequest("prod", actor="on-call", reason="errors up")
        decide("prod", Rollback(request, Meta("on-call", request.reason)))
        decide("prod", Rollback(request, Meta("on-call", "again")), accepted=False)
        lg.append("prod", build.worker_drain("w2", "v2", "on-call"))
        lg.append("prod", build.worker_exit("w2", "v2", 0, "w2", exit_code=0))
        decide("prod", Complete("v1", Meta("on-call")))
        lg.rotate_key("security")
        lg.append_many("prod", [build.worker_sessions("w1", "v1", n % 7, "w1") for n in range(LOAD)])

        new = lg.checkpoint("prod", anchor)
        size = int(new.split("\n", 2)[1])
        out["anchor.pub"] = (anchor + "\n").encode()
        out["keys.jsonl"] = _lines(list(lg.raw_records(KEY_CHAIN)))
        out["vkeys.txt"] = "".join(line + "\n" for line in lg.vkeys()).encode()
        for fleet in FLEETS:
            out[f"records/{fleet}.jsonl"] = _lines(list(lg.raw_records(fleet)))
        out["prod-4.checkpoint"] = old.encode()
        out[f"prod-{size}.checkpoint"] = new.encode()
        out["prod-1.tlog-proof"] = prove_inclusion(lg.store, "prod", 1, new).encode()
        out[f"prod-4-{size}.consistency-proof"] = prove_consistency(lg.store, old, new).encode()
        bundle = work / "bundle"
        write_bundle(bundle, new, list(lg.raw_records("prod")), list(lg.raw_records(KEY_CHAIN)))
    for path in sorted(bundle.rglob("*")):
        name = path.relative_to(bundle).as_posix()
        if path.is_file() and not name.startswith(NOT_FORMAT):
            out[f"bundle/{name}"] = path.read_bytes()
    return out


def make(out: Path) -> list[str]:
    """Write the known-answer files into `out` (its contents replaced); their names, sorted."""
    with tempfile.TemporaryDirectory(prefix="ledger-kat-") as scratch:
        files = build_ledger(Path(scratch))
    if out.exists():
        shutil.rmtree(out)
    for name, data in files.items():
        _write(out, name, data)
    return sorted(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kat.make", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory to write (its contents are replaced)")
    args = parser.parse_args(argv)
    names = make(Path(args.out))
    print(f"wrote {len(names)} known-answer files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
