"""The gate's paths for consent and signed facts: approvals of pending requests, and reports.

Both write through the same gate as every decision (`FleetService`), at the
head they read, deciding again when the head moved:

- `approve`: an actor's signed approval of a pending request (`command.pending`).
  The requester never counts, nor does anyone twice; the approver's roles must
  allow the action approved. With the last approval needed the request's command
  is decided, as its requester signed it, against the state at that moment, and
  written before its last approval so that the ids its plan derives from its
  position (a rollback's `rb<seq>`) name where it stands.
- `report`: a fact signed by a reporter bound to the worker it is about. Unsigned
  facts stay open to any writer; a signed one that fails a check is refused and
  recorded, never appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.actors import ActorSigner
from ledger.approvals import APPROVED, Approve, approval_entry, read_request
from ledger.authority import Report
from ledger.decide import Accepted, Command, Decision, Meta, Refused
from ledger.envelope import SignedEnvelope
from ledger.errors import HeadMovedError, InputError
from ledger.events import Check, check_fleet_name
from ledger.gate import MAX_DECISIONS, FleetService, Outcome
from ledger.policy import POLICY_CHAIN


def report(service: FleetService, fleet: str, body: Mapping[str, Any], *,
           signer: ActorSigner | None = None, signed: SignedEnvelope | None = None) -> Outcome:
    """Append a fact; signed (by `signer`, the service's, or `signed`) in an enforced ledger, it is
    checked like a command and must come from a reporter bound to its `worker_id`.

    An unsigned fact is appended as it always was (facts are open to any writer);
    a signed one that fails a check is refused and recorded, never appended.
    """
    check_fleet_name(fleet)
    fact = service.ledger.validate(body)
    command = Report(fact, Meta(str(fact["actor"])))
    for _ in range(MAX_DECISIONS):
        policy = service.authority.policy()
        claim = signed or (service.sign(fleet, command, signer) if policy.enforced else None)
        if claim is None or not policy.enforced:
            return Outcome(Accepted((fact,)), (service.ledger.append(fleet, fact),))
        head = service.ledger.head(fleet).seq
        attestation = service.authority.check(fleet, command, claim, head, policy)
        assert attestation is not None
        failed, detail = attestation.check, attestation.detail
        reporter = policy.actor(claim.envelope.actor)
        worker = str(fact.get("worker_id") or fact.get("target", ""))
        if failed is None and (reporter is None or not reporter.reports_for(worker)):
            failed = Check.REPORTER_UNBOUND
            detail = f"{claim.envelope.actor} is not bound to worker {worker}"
        if failed is not None:
            body_out = Meta(command.meta.actor).body("command.rejected", command=fact["event"],
                                                     check=failed.value, detail=detail,
                                                     version=fact.get("version"))
            body_out["result"] = "rejected"
            body_out.update(attestation.fields)
            decision: Decision = Refused(failed, detail, body_out)
        else:
            body_out = {**fact, **attestation.fields}
            decision = Accepted((body_out,))
        try:
            receipts = service.ledger.append_gated(fleet, [body_out], expect_seq=head,
                                                   policy_seq=policy.seq)
        except HeadMovedError:
            continue
        return Outcome(decision, tuple(receipts))
    raise HeadMovedError(f"fleet {fleet} kept moving; gave up after {MAX_DECISIONS} reports")


def approve(service: FleetService, chain: str, request_seq: int, meta: Meta, *,
            signer: ActorSigner | None = None, signed: SignedEnvelope | None = None) -> Outcome:
    """Record a signed approval of the pending request at `chain` seq `request_seq`.

    The requester and anyone who approved already are refused (recorded).
    With the last approval needed, the request's command is decided in the
    same write, against the state at that moment, listing every approval
    (`Outcome.receipt` is then the approval's; the decision's is just before).
    """
    if chain != POLICY_CHAIN:
        check_fleet_name(chain)
    meta.check()
    for _ in range(MAX_DECISIONS):
        request = read_request(service.ledger, chain, request_seq)
        command = request.command
        policy = service.authority.policy()
        state = service.state_for(chain, command) if isinstance(command, Command) else None
        head = policy.seq if state is None else state.head_seq
        approval = Approve(chain, request.seq, request.hash, meta)
        approval_signed = signed or service.sign(chain, approval, signer)
        attestation = service.authority.check(chain, approval, approval_signed, head, policy,
                                           role_action=request.action)
        failed = attestation.check if attestation is not None else None
        if attestation is not None and failed is None:
            if meta.actor == request.requester:
                failed = Check.SELF_APPROVAL
            elif meta.actor in request.approvers():
                failed = Check.APPROVAL_REPEATED
        if attestation is None:
            raise InputError("the policy is not enforced: there is nothing to approve")
        approved = meta.body(APPROVED, request_seq=request.seq,
                             target="policy" if state is None else "fleet")
        approved.pop("idempotency_key", None)
        approved.update(attestation.fields)
        if failed is not None:
            why = {Check.SELF_APPROVAL: "the requester never counts as their own approver",
                   Check.APPROVAL_REPEATED: f"{meta.actor} approved this request already"}
            body = meta.body("command.rejected", command=APPROVED, check=failed.value,
                             detail=why.get(failed, attestation.detail), request_seq=request.seq)
            body.update(attestation.fields)
            body["result"] = "rejected"
            body.pop("idempotency_key", None)
            decision: Decision = Refused(failed, str(body["detail"]), body)
            bodies = [body]
        else:
            approvals = [*request.approvals, approval_entry(approved)]
            if len({a["actor"] for a in approvals}) < policy.approvers_needed(request.action):
                decision, bodies = Accepted((approved,)), [approved]
            else:
                decision, decided = service.decide_at(chain, command, request.signed, head, policy, state,
                                                 request=request, approvals=approvals)
                # The decision first: it is decided at the head it read (its plan's ids name
                # its own position); the last approval follows it in the same write.
                bodies = [*decided, approved]
        try:
            if state is None:
                receipts = service.ledger.append_policy(bodies, expect_seq=head)
            else:
                receipts = service.ledger.append_gated(chain, bodies, expect_seq=head,
                                                       policy_seq=policy.seq)
        except HeadMovedError:
            continue
        return Outcome(decision, tuple(receipts))
    raise HeadMovedError(f"{chain} kept moving; gave up after {MAX_DECISIONS} decisions")
