"""A decision is written only under the policy it was decided against.

A revocation that commits (from another connection) between the gate's read of
the policy and its append must make the gate decide again, and `verify` must
flag a decision whose policy was already replaced when it was stamped.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ledger import store as store_module
from ledger.app import open_app
from ledger.decide import Deploy, Meta
from ledger.errors import HeadMovedError, VerificationError
from ledger.events import Check
from ledger.gate import FleetService
from ledger.policy import POLICY_CHAIN
from ledger.policy_decide import RevokeActor
from tests.conftest import Env
from tests.test_actors import FLEET, People, enforced_people, records


@pytest.fixture
def people(env: Env, capsys: pytest.CaptureFixture[str]) -> People:
    """An enforced ledger with alice (admin) and dave (deployer)."""
    return enforced_people(env, capsys)


def _revoke_dave(people: People, done: threading.Event, errors: list[BaseException]) -> None:
    """Revoke dave from a connection of its own, as another process would."""
    try:
        env = people.env
        with open_app(env.db, env.key, projections=env.dir / "revoker.db") as app:
            outcome = app.service.submit_policy(RevokeActor("dave", Meta("alice")),
                                                signer=people.signer("alice"))
            assert outcome.accepted, outcome
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)
    finally:
        done.set()


def test_a_revocation_between_decide_and_append_is_honoured(people: People) -> None:
    """The gate decides dave's deploy, the revocation commits, then the append runs:
    the stale decision is not written; decided again, the deploy is refused as revoked."""
    env = people.env
    done, errors = threading.Event(), []
    calls = []
    original = FleetService.decide_at

    def decide_then_wait(self: FleetService, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        calls.append(args[4].seq)  # the policy position decided against
        if len(calls) == 1:
            threading.Thread(target=_revoke_dave, args=(people, done, errors)).start()
            assert done.wait(60)
        return result

    with open_app(env.db, env.key, projections=env.dir / "views.db") as app:
        service = app.service
        service.decide_at = decide_then_wait.__get__(service)  # type: ignore[method-assign]
        outcome = service.submit(FLEET, Deploy("v1", Meta("dave")), signer=people.signer("dave"))
    assert not errors, errors
    assert len(calls) == 2 and calls[1] == calls[0] + 1
    assert outcome.check is Check.ACTOR_KEY_REVOKED
    written = records(env)
    assert [r["event"] for r in written] == ["command.rejected"]
    assert written[0]["policy_seq"] == calls[1]
    with env.open(writable=False) as lg:
        assert lg.head(POLICY_CHAIN).seq == calls[1]
        lg.verify(lg.current_key()[1])


def test_the_store_refuses_a_decision_under_a_moved_policy(people: People) -> None:
    env = people.env
    with env.open() as lg:
        stale = lg.head(POLICY_CHAIN).seq - 1
        body = {"event": "version.marked_bad", "actor": "dave", "target": "fleet", "result": "success",
                "version": "v1", "reason": "x"}
        with pytest.raises(HeadMovedError, match="@policy moved"):
            lg.append_gated(FLEET, [body], expect_seq=0, policy_seq=stale)
        assert lg.head(FLEET).seq == 0


def test_verify_flags_a_decision_stamped_after_its_policy_was_replaced(people: People) -> None:
    """A writer without the guard (only the ledger key holder can be one) appends a
    decision taken under the policy before dave's revocation, after it."""
    env = people.env
    dave = people.signer("dave")
    command = Deploy("v1", Meta("dave"))
    with open_app(env.db, env.key, projections=env.dir / "views.db") as app:
        service = app.service
        policy = service.authority.policy()
        signed = service.sign(FLEET, command, dave)
        state = service.state_for(FLEET, command)
        _, bodies = service.decide_at(FLEET, command, signed, state.head_seq, policy, state)
        assert service.submit_policy(RevokeActor("dave", Meta("alice")),
                                     signer=people.signer("alice")).accepted
        app.ledger._append_chunk(FLEET, [app.ledger.validate(b, gated=True) for b in bodies],
                                 expect_seq=state.head_seq)
    assert records(env)[-1]["actor_verified"] is True
    with env.open(writable=False) as lg, pytest.raises(VerificationError) as caught:
        lg.verify(lg.current_key()[1])
    assert caught.value.fault.check == "policy position"
    assert "superseded" in str(caught.value)


def test_racing_revocation_and_deploys_leave_no_accepted_deploy_after_it(people: People) -> None:
    """Deploys and a revocation from separate connections, unforced: whatever the
    interleaving, no deploy of dave is accepted under a policy that revoked him, and
    the ledger verifies."""
    env = people.env
    done, errors = threading.Event(), []
    with open_app(env.db, env.key, projections=env.dir / "views.db") as app:
        for n in range(12):
            if n == 3:
                threading.Thread(target=_revoke_dave, args=(people, done, errors)).start()
            app.service.submit(FLEET, Deploy(f"v{n}", Meta("dave"), supersede=True),
                               signer=people.signer("dave"))
    assert done.wait(60) and not errors, errors
    with env.open(writable=False) as lg:
        revoked_at = lg.head(POLICY_CHAIN).seq
        revoked_stamp = next(r for r in lg.records(POLICY_CHAIN) if r["seq"] == revoked_at)["timestamp"]
        lg.verify(lg.current_key()[1])
    for record in records(env):
        if record["event"] == "deployment.started":
            assert record["policy_seq"] < revoked_at and record["timestamp"] <= revoked_stamp


def test_the_store_names_the_policy_chain_as_the_policy_does() -> None:
    assert store_module.POLICY_CHAIN == POLICY_CHAIN
