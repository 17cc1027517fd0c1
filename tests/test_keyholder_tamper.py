"""Tampering by someone who holds the ledger's own signing key.

`test_tamper.py` plays an attacker with database access only: every forged
record there carries a foreign signature, so the signature check fires first
and hides every check behind it. Here the attacker also holds the ledger's
key (an insider, a stolen key file): each forged record below is correctly
hashed and correctly signed by a key of this ledger, so only the checks that
link records (prev, timestamp order, key epochs, the key chain's anchor and
kid binding, canonical bytes, the fleet a record belongs to, a checkpoint
kept elsewhere) can catch it. Each case asserts the exact check and seq
`Ledger.verify` names, on both backends.

Forgeries are built through the public helpers (`seal`, `link`,
`signed_message`), never from hard-coded signature context bytes, so they
follow any change to what a signature covers. Each is signed for the ledger
under test (its `ledger_id`, which every signature binds), except the cases
that sign for another ledger on purpose: those are caught by the signature
check, even though the key is this ledger's own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger import Ledger, VerificationError
from ledger import commands as build
from ledger.api import utc_now
from ledger.chain import (
    GENESIS_PREV,
    NO_LEDGER,
    Checkpoint,
    link,
    parse_checkpoint,
    seal,
    sign_checkpoint,
    signed_message,
)
from ledger.encoding import canonical
from ledger.keys import Signer, key_id, load_signer, parse_public_key, verify_signature
from ledger.store import KEY_CHAIN, Store
from ledger.verify import verify_ledger
from tests.backends import Tamper, tamper_for
from tests.conftest import Env, run_cli, seed

CHAIN_FIELDS = frozenset({"seq", "prev", "hash", "kid", "sig", "fleet", "timestamp"})
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass
class Insider:
    """A seeded ledger, its identity, its raw rows, and every signing key it ever had (oldest first)."""

    env: Env
    ledger_id: str
    keys: list[Signer] = field(default_factory=list)

    def rows(self, chain: str = "prod") -> Tamper:
        return tamper_for(self.env.db, chain if chain == KEY_CHAIN else f"fleet:{chain}")

    def record(self, seq: int, chain: str = "prod") -> dict[str, Any]:
        return dict(orjson.loads(dict(self.rows(chain).rows())[seq]))

    def last_seq(self, chain: str = "prod") -> int:
        return max(dict(self.rows(chain).rows()))

    @property
    def current(self) -> Signer:
        return self.keys[-1]

    def rotate(self) -> None:
        """Rotate through the ledger, keeping the new private key in hand."""
        with self.env.open() as lg:
            lg.rotate_key("ops", "scheduled rotation")
        self.keys.append(load_signer(self.env.key))


def body_of(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in CHAIN_FIELDS}


def reseal(record: dict[str, Any], signer: Signer, ledger_id: str,
           **changes: Any) -> tuple[dict[str, Any], bytes]:
    """Seal a record again with `signer` for ledger `ledger_id`, keeping its chain fields unless changed."""
    fields = {k: record[k] for k in ("fleet", "seq", "prev", "timestamp")}
    body = body_of(record)
    body.update({k: v for k, v in changes.items() if k not in fields})
    fields.update({k: v for k, v in changes.items() if k in fields})
    return seal(body, signer=signer, ledger_id=ledger_id, **fields)


def another_ledger_id(ledger_id: str) -> str:
    """A random ledger id that is neither `ledger_id` nor the id no ledger has."""
    other = secrets.token_hex(16)
    while other in (ledger_id, NO_LEDGER):  # pragma: no cover - one chance in 2**127
        other = secrets.token_hex(16)
    return other


def relink_from(insider: Insider, seq: int, first: dict[str, Any], signer: Signer,
                chain: str = "prod") -> None:
    """Store `first` (already sealed) at `seq`, then re-seal every later record onto it.

    This is what a key holder does to hide an edit from a plain verify: the
    chain after the edit links and verifies again.
    """
    rows = insider.rows(chain)
    rows.set_state(seq, seal_bytes(first))
    prev = first["hash"]
    for later, data in rows.rows():
        if later <= seq:
            continue
        record, new = reseal(dict(orjson.loads(data)), signer, insider.ledger_id, prev=prev)
        rows.set_state(later, new)
        prev = record["hash"]


def seal_bytes(record: dict[str, Any]) -> bytes:
    return canonical(record)


def shifted(timestamp: str, microseconds: int) -> str:
    moment = datetime.strptime(timestamp, TIME_FORMAT) + timedelta(microseconds=microseconds)
    return moment.strftime(TIME_FORMAT)


def fault_of(env: Env) -> tuple[str, int, str]:
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    fault = caught.value.fault
    return fault.chain, fault.seq, fault.check


@pytest.fixture
def insider(env: Env) -> Iterator[Insider]:
    """The seeded ledger (prod: 6 records) as its key holder sees it; verify passes."""
    with env.open() as lg:
        seed(lg)
        ledger_id = lg.ledger_id
    assert ledger_id != NO_LEDGER
    with env.open(writable=False) as lg:
        lg.verify()
    yield Insider(env, ledger_id, [load_signer(env.key)])


# -- the cases: each forges with a key of this ledger -----------------------------------------


def fork_in_the_middle(x: Insider) -> None:
    """Seq 4 replaced by a correctly signed record that forks from seq 2."""
    _, data = reseal(x.record(4), x.current, x.ledger_id, prev=x.record(2)["hash"])
    x.rows().set_state(4, data)


def fork_at_the_tail(x: Insider) -> None:
    """A correctly signed seq 7 that links to seq 5, not to the head (seq 6)."""
    last = x.record(6)
    _, data = seal({"event": "worker.sessions", "actor": "mallory", "target": "w0", "result": "success",
                    "worker_id": "w0", "version": "v1", "active_sessions": 0},
                   fleet="prod", seq=7, prev=x.record(5)["hash"], timestamp=last["timestamp"],
                   signer=x.current, ledger_id=x.ledger_id)
    x.rows().insert(7, "worker.sessions", data)


def fork_relinked_after(x: Insider) -> None:
    """A forked seq 3 whose successors are re-sealed onto it: the fork itself is the fault."""
    forked, _ = reseal(x.record(3), x.current, x.ledger_id, prev=x.record(1)["hash"])
    relink_from(x, 3, forked, x.current)


def time_goes_back(x: Insider) -> None:
    """Seq 4 re-stamped 1 µs before seq 3, re-signed, and the rest re-linked onto it."""
    earlier = shifted(x.record(3)["timestamp"], -1)
    assert earlier >= x.record(1, KEY_CHAIN)["timestamp"]  # still inside the key's time in force
    record, _ = reseal(x.record(4), x.current, x.ledger_id, timestamp=earlier, prev=x.record(3)["hash"])
    relink_from(x, 4, record, x.current)


def time_goes_back_at_tail(x: Insider) -> None:
    """A correctly linked seq 7 stamped before seq 6."""
    head = x.record(6)
    _, data = seal(body_of(x.record(5)), fleet="prod", seq=7, prev=head["hash"],
                   timestamp=shifted(head["timestamp"], -1), signer=x.current, ledger_id=x.ledger_id)
    x.rows().insert(7, "worker.sessions", data)


def _append_signed_by(x: Insider, signer: Signer, timestamp: str | None = None) -> None:
    head = x.record(6)
    _, data = seal(body_of(x.record(5)), fleet="prod", seq=7, prev=head["hash"],
                   timestamp=timestamp or utc_now(), signer=signer, ledger_id=x.ledger_id)
    x.rows().insert(7, "worker.sessions", data)


def retired_first_key(x: Insider) -> None:
    """After two rotations, a new record signed by the first (retired) key."""
    x.rotate()
    x.rotate()
    _append_signed_by(x, x.keys[0])


def retired_second_key(x: Insider) -> None:
    """After two rotations, a new record signed by the second key, retired by the second rotation."""
    x.rotate()
    x.rotate()
    _append_signed_by(x, x.keys[1])


def current_key_backdated(x: Insider) -> None:
    """After a rotation, the new key signs a record stamped before it came into force."""
    x.rotate()
    _append_signed_by(x, x.current, x.record(6)["timestamp"])


def non_canonical_key_order(x: Insider) -> None:
    """Seq 3's exact fields, hash and signature, stored with its keys in reverse order."""
    record = x.record(3)
    data = json.dumps(dict(reversed(list(record.items()))), separators=(",", ":")).encode()
    x.rows().set_state(3, data)


def non_canonical_whitespace(x: Insider) -> None:
    """Seq 3's exact fields, hash and signature, stored pretty-printed."""
    x.rows().set_state(3, json.dumps(x.record(3), sort_keys=True, indent=1).encode())


def resealed_for_other_fleet(x: Insider) -> None:
    """Seq 5 re-sealed (hash and signature valid) as a record of fleet staging, left in prod."""
    _, data = reseal(x.record(5), x.current, x.ledger_id, fleet="staging")
    x.rows().set_state(5, data)


def kid_names_another_key(x: Insider) -> None:
    """Seq 7 signed by the current key while its `kid` names the retired first key."""
    x.rotate()
    head = x.record(6)
    record = link(body_of(x.record(5)), fleet="prod", seq=7, prev=head["hash"],
                  timestamp=utc_now(), kid=x.keys[0].kid)
    record["sig"] = x.current.sign(signed_message(record["hash"], x.ledger_id))
    # Correctly signed by a key of this ledger, for this ledger: only the `kid` is wrong.
    assert verify_signature(x.current.public_raw, record["sig"], signed_message(record["hash"], x.ledger_id))
    x.rows().insert(7, "worker.sessions", seal_bytes(record))


def schema_invalid(x: Insider) -> None:
    """Seq 3 re-signed without its required `active_sessions`: only the schema check sees it."""
    record = x.record(3)
    del record["active_sessions"]
    _, data = reseal(record, x.current, x.ledger_id)
    relink_from(x, 3, orjson.loads(data), x.current)


def key_event_in_a_fleet(x: Insider) -> None:
    """A correctly signed `key.rotated` appended to prod: key events belong to @keys only."""
    head = x.record(6)
    _, data = seal(_rotation_body(Signer.generate()), fleet="prod", seq=7, prev=head["hash"],
                   timestamp=utc_now(), signer=x.current, ledger_id=x.ledger_id)
    x.rows().insert(7, "key.rotated", data)


def fleet_event_in_the_key_chain(x: Insider) -> None:
    """A correctly signed fleet fact appended to @keys: it introduces no key and is refused."""
    head = x.record(1, KEY_CHAIN)
    _, data = seal(body_of(x.record(5)), fleet=KEY_CHAIN, seq=2, prev=head["hash"],
                   timestamp=utc_now(), signer=x.current, ledger_id=x.ledger_id)
    x.rows(KEY_CHAIN).insert(2, "worker.sessions", data)


def _rotation_body(new: Signer, kid: str | None = None) -> dict[str, Any]:
    return {"event": "key.rotated", "actor": "mallory", "target": "ledger", "result": "success",
            "public_key": new.public_text, "new_kid": kid or new.kid}


def rotation_kid_not_its_key(x: Insider) -> None:
    """A key.rotated signed by the current key whose new_kid is not the id of its public key."""
    head = x.record(1, KEY_CHAIN)
    new, decoy = Signer.generate(), Signer.generate()
    _, data = seal(_rotation_body(new, decoy.kid), fleet=KEY_CHAIN, seq=2, prev=head["hash"],
                   timestamp=utc_now(), signer=x.current, ledger_id=x.ledger_id)
    x.rows(KEY_CHAIN).insert(2, "key.rotated", data)


def rotation_by_retired_key_at_its_end(x: Insider) -> None:
    """After a rotation, the retired key signs another rotation stamped at its last instant."""
    x.rotate()
    head = x.record(2, KEY_CHAIN)
    _, data = seal(_rotation_body(Signer.generate()), fleet=KEY_CHAIN, seq=3, prev=head["hash"],
                   timestamp=head["timestamp"], signer=x.keys[0], ledger_id=x.ledger_id)
    x.rows(KEY_CHAIN).insert(3, "key.rotated", data)


def genesis_introduces_other_key(x: Insider) -> None:
    """@keys seq 1 re-signed by the anchor key but introducing a different key."""
    other = Signer.generate()
    _, data = reseal(x.record(1, KEY_CHAIN), x.current, x.ledger_id, public_key=other.public_text,
                     new_kid=other.kid)
    x.rows(KEY_CHAIN).set_state(1, data)


def genesis_replaced_by_rotation(x: Insider) -> None:
    """@keys seq 1 re-signed by the anchor key as a key.rotated instead of ledger.initialized."""
    record = x.record(1, KEY_CHAIN)
    _, data = reseal(record, x.current, x.ledger_id, event="key.rotated")
    x.rows(KEY_CHAIN).set_state(1, data)


def key_chain_emptied(x: Insider) -> None:
    """No key chain at all: nothing says which key the fleets were signed with."""
    x.rows(KEY_CHAIN).truncate_after(0)


def moved_raw_into_other_fleet(x: Insider) -> None:
    """Prod's seq 5 moved, bytes untouched, to seq 5 of fleet staging (which has seq 1-4)."""
    with x.env.open() as lg:
        seed(lg, "staging", n_workers=1)  # 4 records
    assert x.last_seq("staging") == 4
    x.rows().move(5, "fleet:staging")


def moved_resealed_into_other_fleet(x: Insider) -> None:
    """Prod's head (seq 6) re-sealed for staging onto staging's head, and cut from prod."""
    with x.env.open() as lg:
        seed(lg, "staging", n_workers=1)  # 4 records
    head = x.record(4, "staging")
    _, data = seal(body_of(x.record(6)), fleet="staging", seq=5, prev=head["hash"],
                   timestamp=utc_now(), signer=x.current, ledger_id=x.ledger_id)
    x.rows("staging").insert(5, "deployment.completed", data)
    x.rows().truncate_after(5)


def signed_for_another_ledger(x: Insider) -> None:
    """Seq 4 re-signed by the current key, content and hash unchanged, for another ledger's id."""
    original = x.record(4)
    other = another_ledger_id(x.ledger_id)
    record, data = reseal(original, x.current, other)
    assert record["hash"] == original["hash"] and record["sig"] != original["sig"]
    # A valid signature by this ledger's own key: only the ledger it binds is wrong.
    assert verify_signature(x.current.public_raw, record["sig"], signed_message(record["hash"], other))
    x.rows().set_state(4, data)


KEYHOLDER_TAMPERS: list[Any] = [
    pytest.param(fork_in_the_middle, ("prod", 4, "prev"), id="fork-in-the-middle"),
    pytest.param(fork_at_the_tail, ("prod", 7, "prev"), id="fork-at-the-tail"),
    pytest.param(fork_relinked_after, ("prod", 3, "prev"), id="fork-relinked-after"),
    pytest.param(time_goes_back, ("prod", 4, "timestamp"), id="timestamp-before-previous"),
    pytest.param(time_goes_back_at_tail, ("prod", 7, "timestamp"), id="timestamp-before-head"),
    pytest.param(retired_first_key, ("prod", 7, "key"), id="signed-by-first-key-after-two-rotations"),
    pytest.param(retired_second_key, ("prod", 7, "key"), id="signed-by-second-key-after-two-rotations"),
    pytest.param(current_key_backdated, ("prod", 7, "key"), id="new-key-signs-before-its-start"),
    pytest.param(non_canonical_key_order, ("prod", 3, "encoding"), id="non-canonical-key-order"),
    pytest.param(non_canonical_whitespace, ("prod", 3, "encoding"), id="non-canonical-whitespace"),
    pytest.param(resealed_for_other_fleet, ("prod", 5, "fleet"), id="resealed-for-other-fleet"),
    pytest.param(kid_names_another_key, ("prod", 7, "signature"), id="kid-names-another-key"),
    pytest.param(signed_for_another_ledger, ("prod", 4, "signature"), id="signed-for-another-ledger"),
    pytest.param(rotation_kid_not_its_key, (KEY_CHAIN, 2, "key"), id="rotation-kid-not-its-key"),
    pytest.param(rotation_by_retired_key_at_its_end, (KEY_CHAIN, 3, "key"),
                 id="rotation-by-retired-key-at-its-end"),
    pytest.param(genesis_introduces_other_key, (KEY_CHAIN, 1, "anchor"), id="genesis-other-key"),
    pytest.param(genesis_replaced_by_rotation, (KEY_CHAIN, 1, "anchor"), id="genesis-as-rotation"),
    pytest.param(moved_raw_into_other_fleet, ("prod", 5, "seq"), id="raw-moved-missing-from-prod"),
    pytest.param(schema_invalid, ("prod", 3, "schema"), id="schema-invalid-resigned"),
    pytest.param(key_event_in_a_fleet, ("prod", 7, "event"), id="key-event-in-a-fleet"),
    pytest.param(fleet_event_in_the_key_chain, (KEY_CHAIN, 2, "event"), id="fleet-event-in-key-chain"),
]


@pytest.mark.parametrize(("tamper", "expected"), KEYHOLDER_TAMPERS)
def test_verify_names_the_check_a_key_holder_trips(insider: Insider, tamper: Callable[[Insider], None],
                                                    expected: tuple[str, int, str]) -> None:
    """Each forgery is signed by a key of this ledger, so the named check alone catches it."""
    tamper(insider)
    assert fault_of(insider.env) == expected


def test_a_raw_moved_record_is_foreign_in_the_fleet_it_lands_in(insider: Insider) -> None:
    """Moved bytes keep their `fleet` field: the receiving chain names the move, not a gap."""
    moved_raw_into_other_fleet(insider)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(fleets=["staging"])
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check, fault.expected, fault.found) == (
        "staging", 5, "fleet", "staging", "prod")


def test_a_record_signed_for_another_ledger_names_this_ledger(insider: Insider) -> None:
    """The signature fault states the ledger the signature had to be made for, and why it is not."""
    signed_for_another_ledger(insider)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check, fault.found) == ("prod", 4, "signature", "bad signature")
    assert fault.expected == f"valid signature by {insider.current.kid} for ledger {insider.ledger_id}"
    assert "signed for another ledger" in fault.detail


def test_a_chain_copied_from_a_ledger_sharing_the_key_fails_at_its_first_record(
        insider: Insider, tmp_path: Path) -> None:
    """A sibling ledger made with the same key (`reuse_key`) writes the same history; its prod
    chain copied byte for byte over this one is signed by the right key for the wrong ledger."""
    sibling_db = tmp_path / "sibling.db"
    with Ledger.init(sibling_db, insider.env.key, actor="test", reuse_key=True) as sibling:
        assert sibling.ledger_id not in (insider.ledger_id, NO_LEDGER)
        assert sibling.signer is not None and sibling.signer.kid == insider.current.kid
        seed(sibling)
    copied = tamper_for(str(sibling_db)).rows()
    assert [seq for seq, _ in copied] == [1, 2, 3, 4, 5, 6]
    for seq, data in copied:
        insider.rows().set_state(seq, data)
    with Ledger.open(sibling_db, writable=False) as sibling:
        assert [c.count for c in sibling.verify(insider.current.public_text).chains] == [6]
    assert fault_of(insider.env) == ("prod", 1, "signature")


# -- a genesis whose `ledger_id` is not a ledger id (raw edit, no key needed) ------------------------


def _set_genesis_ledger_id(x: Insider, value: str) -> None:
    genesis = x.record(1, KEY_CHAIN)
    genesis["ledger_id"] = value
    x.rows(KEY_CHAIN).set_state(1, canonical(genesis))


def test_a_writer_refuses_a_genesis_whose_ledger_id_is_not_hex(
        insider: Insider, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged identity is a one-line refusal (bad input or storage fault), never an internal error."""
    _set_genesis_ledger_id(insider, "zz")
    fact = orjson.dumps(build.worker_start("w9", "v1", "platform")).decode()
    result = run_cli(capsys, "append", *insider.env.args(), "--fleet", "prod", "--json", fact)
    assert (result.code, result.err.count("\n")) in ((2, 1), (4, 1)), result
    assert insider.last_seq() == 6


def test_the_pinned_anchor_is_never_looked_up_outside_the_trust_directory(
        insider: Insider, capsys: pytest.CaptureFixture[str], user_config: Path) -> None:
    """Whoever edits the database must not choose the anchor: a claimed id with path parts
    finds no pinned anchor (exit 2), even when the file it points at exists."""
    planted = user_config / "planted.pub"
    planted.write_text(Signer.generate().public_text + "\n")
    _set_genesis_ledger_id(insider, "../../planted")
    assert (user_config / "deploy-ledger" / "trust" / "../../planted.pub").resolve() == planted.resolve()
    result = run_cli(capsys, "verify", *insider.env.args())
    assert "pinned at init" not in result.out
    assert result.code == 2, result


def test_a_gap_says_how_many_records_are_missing(insider: Insider) -> None:
    """The fault of a gap names the first missing seq and how many are gone before the next one."""
    insider.rows().delete(3)
    insider.rows().delete(4)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    fault = caught.value.fault
    assert (fault.seq, fault.check, fault.expected, fault.found, fault.detail) == (
        3, "seq", "3", "5", "2 record(s) missing")


def test_a_record_resealed_into_another_fleet_shows_only_against_a_checkpoint(insider: Insider) -> None:
    """Re-sealed into staging it is a valid write there, and prod's shorter chain is a valid
    chain too: by design only a checkpoint of prod kept from before shows the loss."""
    kept = _checkpoint(insider.env)
    moved_resealed_into_other_fleet(insider)
    with insider.env.open(writable=False) as lg:
        report = lg.verify()
        assert {c.chain: c.count for c in report.chains} == {"prod": 5, "staging": 5}
        with pytest.raises(VerificationError) as caught:
            lg.verify(checkpoint=kept)
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check) == ("prod", 6, "truncated")


def test_an_emptied_key_chain_fails_at_the_anchor(insider: Insider) -> None:
    """With no key chain nothing says which key signed the fleets (`Ledger.open` refuses such a
    database outright, so the verifier is called on the store directly)."""
    key_chain_emptied(insider)
    store = Store(insider.env.db)
    try:
        with pytest.raises(VerificationError) as caught:
            verify_ledger(store, insider.current.public_raw)
    finally:
        store.close()
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check) == (KEY_CHAIN, 1, "anchor")


def test_the_rotation_signed_by_a_retired_key_names_the_current_key(insider: Insider) -> None:
    """The key chain's own rule (a rotation is signed by the key it retires), with its evidence."""
    rotation_by_retired_key_at_its_end(insider)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    fault = caught.value.fault
    assert fault.expected == f"rotation signed by current key {insider.keys[1].kid}"
    assert fault.found == insider.keys[0].kid


def test_the_kid_binding_of_a_rotation_is_reported_with_both_ids(insider: Insider) -> None:
    """A rotation's `new_kid` must be the id of the key it introduces; the fault shows both."""
    rotation_kid_not_its_key(insider)
    record = insider.record(2, KEY_CHAIN)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    fault = caught.value.fault
    assert fault.expected == f"kid {key_id(parse_public_key(record['public_key']))}"
    assert fault.found == record["new_kid"]


# -- a full re-sign by the key holder: only a checkpoint kept elsewhere shows it -------------------


def _checkpoint(env: Env) -> str:
    with env.open() as lg:
        return lg.checkpoint("prod")


def rewrite_middle(x: Insider) -> None:
    """Seq 3 edited, re-hashed and re-signed, and seq 4-6 re-sealed onto it."""
    record, _ = reseal(x.record(3), x.current, x.ledger_id, active_sessions=99)
    relink_from(x, 3, record, x.current)


def rewrite_all(x: Insider) -> None:
    """Every record re-sealed from genesis with seq 1 edited."""
    record, _ = reseal(x.record(1), x.current, x.ledger_id, version="v1", reason="rewritten",
                       prev=GENESIS_PREV)
    relink_from(x, 1, record, x.current)


@pytest.mark.parametrize("rewrite", [pytest.param(rewrite_middle, id="re-sign-from-seq-3"),
                                     pytest.param(rewrite_all, id="re-sign-everything")])
def test_a_full_resign_passes_verify_but_not_a_kept_checkpoint(
        insider: Insider, rewrite: Callable[[Insider], None]) -> None:
    """By design the key holder can rewrite a chain undetectably; a checkpoint taken before cannot be."""
    kept = _checkpoint(insider.env)
    before = insider.record(6)["hash"]
    rewrite(insider)
    assert insider.record(6)["hash"] != before
    with insider.env.open(writable=False) as lg:
        report = lg.verify()  # plain verify: the rewrite is a valid chain
        assert [c.count for c in report.chains] == [6]
        with pytest.raises(VerificationError) as caught:
            lg.verify(checkpoint=kept)
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check) == ("prod", 6, "checkpoint root")


def test_a_checkpoint_of_a_shorter_chain_catches_a_rewrite_before_its_size(insider: Insider) -> None:
    """A checkpoint at size 6 still binds after more records: the rewrite is found at seq 6."""
    kept = _checkpoint(insider.env)
    with insider.env.open() as lg:
        for sessions in (3, 4):
            lg.append("prod", build.worker_sessions("w0", "v1", sessions, "w0"))
    rewrite_middle(insider)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(checkpoint=kept)
    assert (caught.value.fault.seq, caught.value.fault.check) == (6, "checkpoint root")


def test_a_checkpoint_with_the_right_root_and_a_wrong_head_is_caught(insider: Insider) -> None:
    """A checkpoint the key holder signs with the true root but another head line fails on the head."""
    good, _ = parse_checkpoint(_checkpoint(insider.env))
    forged = sign_checkpoint(Checkpoint(good.origin, good.size, good.root, "ab" * 32), insider.current)
    with insider.env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(checkpoint=forged)
    fault = caught.value.fault
    assert (fault.chain, fault.seq, fault.check, fault.expected) == ("prod", 6, "checkpoint head", "ab" * 32)


def test_an_intact_chain_extends_its_checkpoint(insider: Insider) -> None:
    """The control: nothing rewritten, the kept checkpoint verifies and says how far."""
    kept = _checkpoint(insider.env)
    with insider.env.open(writable=False) as lg:
        report = lg.verify(checkpoint=kept)
    assert report.chains[0].checkpoint_size == 6


def test_a_key_holder_cannot_rewrite_a_chain_behind_a_ledger_it_did_not_make(env: Env) -> None:
    """A whole ledger re-made under another key fails at the anchor, whatever it signs."""
    with env.open() as lg:
        seed(lg)
        ledger_id = lg.ledger_id
    other = Signer.generate()
    keys = tamper_for(env.db, KEY_CHAIN)
    genesis = dict(orjson.loads(dict(keys.rows())[1]))
    assert genesis["ledger_id"] == ledger_id
    _, data = reseal(genesis, other, ledger_id, public_key=other.public_text, new_kid=other.kid)
    keys.set_state(1, data)
    with Ledger.open(env.db, env.key, writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify()
    assert (caught.value.fault.chain, caught.value.fault.seq, caught.value.fault.check) == (
        KEY_CHAIN, 1, "signature")
