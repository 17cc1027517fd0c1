"""Verify who did it: every decision of an enforced ledger re-checked against the policy of its time.

The ledger's own signature proves the ledger wrote a record; it cannot prove
that the actor named in it asked for it, since whoever holds the ledger key
can write any name. In an enforced ledger each decision also carries the
envelope its actor signed, and this module re-checks, at the decision's
position:

- the policy chain (`@policy`) itself: hashes, links and ledger signatures
  like any chain, and every change after enforcement signed by an actor whose
  role allowed it then;
- for each decision: the envelope names this ledger, this chain, the record's
  actor and an action that yields the record's event (and version); the key
  that signed was that actor's and in force at the policy position the record
  names (`policy_seq`, which existed when the record was written and was
  still the latest then: no later policy record is stamped before it); the
  signature verifies; the nonce appears on no other verified command of the
  chain; the envelope had not expired; and a role allowed the action, with
  the approvals the policy then asked for.

A ledger whose key holder rewrote a command and signed the record again with
the ledger key alone fails here: the actor's signature no longer verifies. The
first fault found (lowest position) is raised with its evidence.

The checks read records through `ChainRows`, so they run the same over a
database or over an exported bundle's files, and only up to each chain's head
as chain verification proved it: a record appended while verify runs is
neither checked nor counted.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.children import die_with_parent, parent_identity
from ledger.envelope import Envelope, SignedEnvelope
from ledger.errors import Fault, FaultCheck, InputError, VerificationError
from ledger.events import EVENT_TYPES, EventKind
from ledger.policy import OPEN_NOTE, POLICY_CHAIN, Action, Policy, PolicyEvent
from ledger.store import PAGE_SIZE

#: Signature checks below this many run in-process; above, in a process pool on every core.
PARALLEL_SIGNATURES = 2048
SIGNATURE_BATCH = 512

#: The events each action may yield (a refusal may follow any action).
ACTION_EVENTS: dict[Action, frozenset[str]] = {
    Action.DEPLOY: frozenset({"deployment.started"}),
    Action.SUPERSEDE: frozenset({"deployment.started"}),
    Action.COMPLETE: frozenset({"deployment.completed", "rollback.completed"}),
    Action.FAIL: frozenset({"deployment.failed", "rollback.failed"}),
    Action.ROLLBACK: frozenset({"deployment.rolled_back"}),
    Action.FORCE: frozenset({"deployment.rolled_back"}),
    Action.MARK: frozenset({"version.verified", "version.marked_bad"}),
    Action.CLEAR: frozenset({"version.cleared"}),
    Action.RULE: frozenset({"analysis.rule_set"}),
    Action.ACTORS: frozenset({PolicyEvent.ACTOR_ADDED, PolicyEvent.ACTOR_REVOKED, PolicyEvent.KEY_REVOKED}),
    Action.POLICY: frozenset({PolicyEvent.ROLE_GRANTED, PolicyEvent.ENABLED}),
}
#: A signed fact's own fields: what its reporter signed (the rest is the chain's and the gate's).
REPORT_FIELDS = frozenset({"event", "target", "result", "version", "worker_id", "reason",
                           "active_sessions", "exit_code", "pid", "operation_id", "sessions_ok",
                           "sessions_error", "sessions_dropped", "timeout_s"})
#: Written with the deploy that supersedes it, which carries the signature for both.
COMPANIONS = frozenset({"move.superseded"})

# (seq, public key, signature, message)
SignatureJob = tuple[int, bytes, str, bytes]


class ChainRows(Protocol):
    """What the checks read: a `Store`, or records held elsewhere (an exported bundle)."""

    def rows(self, chain: str, after: int, limit: int) -> list[tuple[int, bytes]]: ...

    def last_seq(self, chain: str) -> int: ...


@dataclass(frozen=True)
class SignedCount:
    """Verified actor signatures of a chain, by what was signed: a command (a decision, a
    refusal whose signature held, an approval) asks the gate for something; a fact is a
    reporter's account of its own worker, which the gate does not decide."""

    commands: int = 0
    facts: int = 0

    def __add__(self, other: SignedCount) -> SignedCount:
        return SignedCount(self.commands + other.commands, self.facts + other.facts)

    @staticmethod
    def of(record: dict[str, Any]) -> SignedCount:
        """How a record checked to carry a verified actor signature counts (zero if it has none)."""
        if record.get("actor_verified") is not True:
            return SignedCount()
        return SignedCount(0, 1) if _is_fact(record) else SignedCount(1, 0)


def _is_fact(record: dict[str, Any]) -> bool:
    return bool(record["envelope"]["action"] == Action.REPORT.value)


@dataclass(frozen=True)
class ActorsReport:
    """What verification proved about who did what."""

    enforced: bool
    since: str | None = None
    policy_records: int = 0
    signed: SignedCount = SignedCount()

    @property
    def signed_decisions(self) -> int:
        """The signed commands (facts apart): the name `verify -o json` gives them."""
        return self.signed.commands

    def describe(self) -> str:
        if not self.enforced:
            return OPEN_NOTE
        return (f"actors: {self.signed.commands} signed command(s), {self.signed.facts} signed fact(s) "
                f"verified against the policy (enforced since {self.since}, "
                f"{self.policy_records} policy records)")


def _verify_one(job: SignatureJob) -> bool:
    _seq, public_raw, sig, message = job
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(base64.b64decode(sig, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _first_bad(jobs: Sequence[SignatureJob]) -> int | None:
    for job in jobs:
        if not _verify_one(job):
            return job[0]
    return None


class _Signatures:
    """Signature checks collected in record order, made at the end of a batch: every other
    check of a record is cheap, so a batch's signatures are checked together."""

    def __init__(self) -> None:
        self.batch: list[SignatureJob] = []

    def add(self, job: SignatureJob) -> None:
        self.batch.append(job)

    def first_bad(self) -> int | None:
        """The position of the first signature that fails."""
        return _first_bad(self.batch)


class _Fail(Exception):
    def __init__(self, fault: Fault):
        self.fault = fault


@dataclass(frozen=True)
class _Pending:
    """A pending request as verify saw it: what approvals of it must name and allow."""

    action: Action
    requester: str
    timestamp: str
    hash: str


class ActorChecker:
    """Re-checks the signed commands of one ledger against its policy history."""

    def __init__(self, store: ChainRows, ledger_id: str):
        self.store = store
        self.ledger_id = ledger_id
        #: Pending requests of the chain being checked, by position.
        self.pending: dict[int, _Pending] = {}
        self._pool: ProcessPoolExecutor | None = None
        #: The policy after each position of `@policy` (index 0: before any record).
        self.history: list[Policy] = [Policy()]
        self.timestamps: list[str] = [""]
        self._allowed: dict[tuple[int, str, Action, str], bool] = {}

    def allows(self, policy: Policy, actor: str, action: Action, chain: str) -> bool:
        """`policy.allows`, remembered per policy position (most records repeat a few answers)."""
        key = (policy.seq, actor, action, chain)
        answer = self._allowed.get(key)
        if answer is None:
            answer = self._allowed[key] = policy.allows(actor, action, chain)
        return answer

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    @property
    def policy(self) -> Policy:
        return self.history[-1]

    def records(self, chain: str, head: int) -> Iterator[dict[str, Any]]:
        """The chain's records up to `head` (its verified length), parsed."""
        for rows in _row_batches(self.store, chain, head, PAGE_SIZE):
            for data in rows:
                yield orjson.loads(data)

    # -- the policy chain ---------------------------------------------------------------------

    def check_policy_chain(self, head: int) -> int:
        """Fold the policy chain up to its verified `head`, checking each change made once the
        policy was enforced; the number of policy records folded."""
        self.pending = {}
        signatures = _Signatures()
        faults: list[Fault] = []
        nonces: dict[str, int] = {}
        for record in self.records(POLICY_CHAIN, head):
            if self.policy.enforced:
                fault = self._check_record(POLICY_CHAIN, record, signatures, nonces)
                if fault is not None:
                    faults.append(fault)
                    break
            self.history.append(self.policy.apply(record))
            self.timestamps.append(str(record["timestamp"]))
        self._raise_first(POLICY_CHAIN, faults, signatures)
        return len(self.history) - 1

    # -- a fleet chain ------------------------------------------------------------------------

    def check_chain(self, chain: str, head: int) -> SignedCount:
        """Check every signed command and fact of a fleet's chain up to its verified `head`."""
        policy = self.policy
        if not policy.enforced:
            return SignedCount()
        self.pending = {}
        if head >= PARALLEL_SIGNATURES and (os.cpu_count() or 1) > 1:
            return self._check_chain_parallel(chain, head)
        signatures = _Signatures()
        faults: list[Fault] = []
        nonces: dict[str, int] = {}
        checked = SignedCount()
        for record in self.records(chain, head):
            if self.open_era(record):
                continue
            fault = self._check_record(chain, record, signatures, nonces)
            if fault is not None:
                faults.append(fault)
                break
            checked += SignedCount.of(record)
        self._raise_first(chain, faults, signatures)
        return checked

    def open_era(self, record: dict[str, Any]) -> bool:
        """Decided before the policy was enforced (and not claiming otherwise)."""
        return str(record["timestamp"]) <= (self.policy.enforced_since or "") and "policy_seq" not in record

    def _check_chain_parallel(self, chain: str, head: int) -> SignedCount:
        """The same checks with the per-record work (parsing, envelope, key, role, signature) on
        every core; the parent keeps what spans records (nonces, pending requests) in order."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(os.cpu_count() or 1, initializer=_init_checker,
                                             initargs=(parent_identity(), self.ledger_id, self.history,
                                                       self.timestamps))
        window: deque[Future[_BatchResult]] = deque()
        ahead = 4 * (os.cpu_count() or 1)
        nonces: dict[str, int] = {}
        checked = SignedCount()
        for rows in _row_batches(self.store, chain, head, SIGNATURE_BATCH):
            window.append(self._pool.submit(_check_rows, chain, rows))
            if len(window) >= ahead:
                checked += self._merge(chain, window.popleft().result(), nonces)
        while window:
            checked += self._merge(chain, window.popleft().result(), nonces)
        return checked

    def _merge(self, chain: str, result: _BatchResult, nonces: dict[str, int]) -> SignedCount:
        """Take a worker's batch in order: its nonces, the records it left to the parent, its fault."""
        verified, deferred, fault = result
        signatures = _Signatures()
        faults: list[Fault] = []
        items: list[tuple[int, tuple[str, bool] | bytes]] = [(seq, (nonce, fact))
                                                             for seq, nonce, fact in verified]
        items += [(int(orjson.loads(data)["seq"]), data) for data in deferred]
        commands = facts = 0
        for seq, item in sorted(items, key=lambda i: i[0]):
            if fault is not None and seq > fault.seq:
                break
            if isinstance(item, tuple):  # the nonce of a command or fact the worker verified
                nonce, fact = item
                if nonce in nonces:
                    faults.append(Fault(chain, seq, FaultCheck.ACTOR_NONCE, "a nonce used once",
                                        f"nonce {nonce} of seq {nonces[nonce]}", "a signed command replayed"))
                    break
                nonces[nonce] = seq
                facts += fact
                commands += not fact
                continue
            record = orjson.loads(item)
            problem = self._check_record(chain, record, signatures, nonces)
            if problem is not None:
                faults.append(problem)
                break
            if record.get("actor_verified") is True:
                fact = _is_fact(record)
                facts += fact
                commands += not fact
        if fault is not None:
            faults.append(fault)
        self._raise_first(chain, faults, signatures)
        return SignedCount(commands, facts)

    def _check_record(self, chain: str, record: dict[str, Any], signatures: _Signatures,
                      nonces: dict[str, int]) -> Fault | None:
        """The checks of one record of the enforced era (facts and companions need none)."""
        event_type = EVENT_TYPES.get(str(record.get("event")))
        if event_type is None or record["event"] in COMPANIONS:
            return None
        if not event_type.gated and record.get("actor_verified") is not True:
            return None  # an unsigned fact: open to any writer
        fault = self._check_at_position(chain, record, signatures, nonces,
                                        event_type.kind is EventKind.REFUSAL)
        if fault is None and record["event"] == "command.pending":
            envelope = record["envelope"]
            self.pending[int(record["seq"])] = _Pending(Action(envelope["action"]), str(envelope["actor"]),
                                                        str(record["timestamp"]), str(record["hash"]))
        return fault

    def _check_at_position(self, chain: str, record: dict[str, Any], signatures: _Signatures,
                           nonces: dict[str, int] | None, refusal: bool) -> Fault | None:
        """The checks of one gated record; its nonce too unless `nonces` is None (a worker's)."""
        seq = int(record["seq"])
        position = record.get("policy_seq")
        if not isinstance(position, int) or not 0 < position < len(self.history):
            return Fault(chain, seq, FaultCheck.POLICY_POSITION,
                         f"a position of {POLICY_CHAIN} (1..{len(self.history) - 1})", repr(position),
                         "a decision of an enforced ledger names the policy it was decided against")
        if self.timestamps[position] > str(record["timestamp"]):
            return Fault(chain, seq, FaultCheck.POLICY_POSITION,
                         f"a policy recorded by {record['timestamp']}",
                         f"{POLICY_CHAIN} seq {position} of {self.timestamps[position]}",
                         "decided against a policy not yet recorded")
        if position + 1 < len(self.timestamps) and self.timestamps[position + 1] < str(record["timestamp"]):
            return Fault(chain, seq, FaultCheck.POLICY_POSITION,
                         f"the policy in force at {record['timestamp']}",
                         f"{POLICY_CHAIN} seq {position}, replaced at seq {position + 1} of "
                         f"{self.timestamps[position + 1]}",
                         "decided against a policy already superseded")
        policy = self.history[position]
        if refusal and record.get("actor_verified") is not True:
            return None  # a refused claim, recorded as unproven
        fault = self._check_command(chain, record, policy, signatures, refusal=refusal)
        if fault is not None or nonces is None:
            return fault
        nonce = str(record["envelope"]["nonce"])
        request_seq = record.get("request_seq")
        if nonce in nonces and not (record["event"] != "command.approved" and nonces[nonce] == request_seq):
            return Fault(chain, seq, FaultCheck.ACTOR_NONCE, "a nonce used once",
                         f"nonce {nonce} of seq {nonces[nonce]}", "a signed command replayed")
        nonces.setdefault(nonce, seq)
        return None

    # -- one signed command -------------------------------------------------------------------

    def _check_command(self, chain: str, record: dict[str, Any], policy: Policy, signatures: _Signatures,
                       *, refusal: bool = False) -> Fault | None:
        seq = int(record["seq"])

        def fault(check: FaultCheck, expected: str, found: str, detail: str = "") -> Fault:
            return Fault(chain, seq, check, expected, found, detail)

        if record.get("actor_verified") is not True:
            return fault(FaultCheck.ACTOR, "a command signed by its actor", "no verified actor signature",
                         "the policy is enforced here")
        try:
            signed = SignedEnvelope.parse(record, stored=True)
        except InputError as exc:
            return fault(FaultCheck.ACTOR_ENVELOPE, "a well-formed signed envelope", "malformed", str(exc))
        envelope = signed.envelope
        mismatch = _envelope_mismatch(envelope, record, chain, self.ledger_id, refusal)
        if mismatch is not None:
            return fault(FaultCheck.ACTOR_ENVELOPE, mismatch[0], mismatch[1],
                         "the record is not what the actor signed")
        actor = policy.actor(envelope.actor)
        key = actor.key_in_force(signed.kid) if actor is not None else None
        if actor is None or key is None:
            return fault(FaultCheck.ACTOR_KEY, f"a key of {envelope.actor} in force at {POLICY_CHAIN} seq "
                         f"{policy.seq}", f"key {signed.kid}", "not registered, or revoked, then")
        request = self._request_of(record)
        if isinstance(request, Fault):
            return request
        at = request.timestamp if request is not None and record["event"] != "command.approved" else None
        moment = at or str(record["timestamp"])
        if moment > envelope.expires.replace("Z", ".999999Z"):
            return fault(FaultCheck.ACTOR_EXPIRY, f"recorded by {envelope.expires}", moment,
                         "the signed command had expired")
        action = Action(envelope.action)
        if action is Action.APPROVE:
            action = request.action if request is not None else action
            if request is None or envelope.args.get("request_hash") != request.hash:
                return fault(FaultCheck.APPROVALS, "an approval naming its request by position and hash",
                             str(dict(envelope.args)))
        if action is Action.REPORT and not refusal:
            worker = str(record.get("worker_id") or record.get("target", ""))
            if not actor.reports_for(worker):
                return fault(FaultCheck.REPORTER_BINDING,
                             f"a reporter bound to worker {worker}", envelope.actor,
                             f"policy at {POLICY_CHAIN} seq {policy.seq}")
        if not refusal:
            if not self.allows(policy, envelope.actor, action, chain):
                return fault(FaultCheck.AUTHORIZATION, f"a role allowing {action.value} on {chain}",
                             f"{envelope.actor} with roles {', '.join(sorted(actor.roles)) or '-'}",
                             f"policy at {POLICY_CHAIN} seq {policy.seq}")
            if record["event"] not in ("command.pending", "command.approved"):
                problem = self._check_approvals(chain, record, policy, action, envelope.actor, signatures)
                if problem is not None:
                    return fault(FaultCheck.APPROVALS, *problem)
        signatures.add((seq, key.public_raw, signed.sig, envelope.message()))
        return None

    def _request_of(self, record: dict[str, Any]) -> _Pending | Fault | None:
        """The pending request a record decides or approves, if it names one."""
        request_seq = record.get("request_seq")
        if request_seq is None:
            return None
        request = self.pending.get(request_seq) if isinstance(request_seq, int) else None
        if request is None:
            return Fault(str(record["fleet"]), int(record["seq"]), FaultCheck.APPROVALS,
                         "a pending request before it",
                         f"request_seq {request_seq!r}")
        return request

    def _check_approvals(self, chain: str, record: dict[str, Any], policy: Policy, action: Action,
                         requester: str, signatures: _Signatures) -> tuple[str, str, str] | None:
        """(expected, found, detail) if the approvals the policy asked for are not all there."""
        needed = policy.approvers_needed(action)
        approvers: set[str] = set()
        request = self.pending.get(record.get("request_seq", -1))
        for entry in record.get("approvals") or []:
            try:
                signed = SignedEnvelope.parse(entry, "an approval", stored=True)
            except InputError as exc:
                return "well-formed approvals", "malformed", str(exc)
            envelope = signed.envelope
            approver = policy.actor(envelope.actor)
            key = approver.key_in_force(signed.kid) if approver is not None else None
            if (request is None or envelope.action != Action.APPROVE.value
                    or envelope.ledger != self.ledger_id or envelope.fleet != chain
                    or envelope.args.get("request_hash") != request.hash
                    or entry.get("actor") != envelope.actor):
                return "approvals of this request", f"an approval by {envelope.actor} of another", ""
            if key is None or not policy.allows(envelope.actor, action, chain):
                return (f"approvers allowed to {action.value}", envelope.actor,
                        f"key {signed.kid} in force and a role, at {POLICY_CHAIN} seq {policy.seq}")
            if envelope.actor == requester:
                return "approvals by actors other than the requester", requester, "self approval"
            signatures.add((int(record["seq"]), key.public_raw, signed.sig, envelope.message()))
            approvers.add(envelope.actor)
        if len(approvers) < needed:
            return (f"{needed} approval(s) by other actors", str(len(approvers)),
                    f"{action.value} needs approvals under the policy then")
        return None

    def _raise_first(self, chain: str, faults: list[Fault], signatures: _Signatures) -> None:
        bad = signatures.first_bad()
        candidates = list(faults)
        if bad is not None:
            candidates.append(_bad_signature(chain, bad))
        if candidates:
            raise VerificationError(min(candidates, key=lambda f: f.seq))


# (seq, nonce, whether a fact) of each verified signature; records left to the parent; the fault
_BatchResult = tuple[list[tuple[int, str, bool]], list[bytes], "Fault | None"]
_worker: list[ActorChecker] = []


def _init_checker(parent: tuple[int, bool], ledger_id: str, history: list[Policy],
                  timestamps: list[str]) -> None:
    die_with_parent(*parent)
    checker = ActorChecker(None, ledger_id)  # type: ignore[arg-type]  # a worker reads no store
    checker.history, checker.timestamps = history, timestamps
    _worker[:] = [checker]


def _check_rows(chain: str, rows: list[bytes]) -> _BatchResult:
    """A worker's share: the per-record checks of a batch, signatures included.

    Returns the (seq, nonce, is a fact) of each verified signature, the records that name a
    pending request (left to the parent, which knows the requests), and the
    first fault of the batch.
    """
    checker = _worker[0]
    signatures = _Signatures()
    verified: list[tuple[int, str, bool]] = []
    deferred: list[bytes] = []
    fault: Fault | None = None
    for data in rows:
        record = orjson.loads(data)
        if checker.open_era(record):
            continue
        event_type = EVENT_TYPES.get(str(record.get("event")))
        if event_type is None or record["event"] in COMPANIONS:
            continue
        if not event_type.gated and record.get("actor_verified") is not True:
            continue
        if "request_seq" in record or record["event"] == "command.pending":
            deferred.append(data)
            continue
        fault = checker._check_at_position(chain, record, signatures, None,
                                           event_type.kind is EventKind.REFUSAL)
        if fault is not None:
            break
        if record.get("actor_verified") is True:
            verified.append((int(record["seq"]), str(record["envelope"]["nonce"]), _is_fact(record)))
    bad = signatures.first_bad()
    if bad is not None and (fault is None or bad < fault.seq):
        fault = _bad_signature(chain, bad)
    return verified, deferred, fault


def _row_batches(store: ChainRows, chain: str, head: int, size: int) -> Iterator[list[bytes]]:
    """A chain's stored records from its start up to `head`, `size` at a time, in order."""
    after = 0
    while after < head:
        rows = store.rows(chain, after, min(size, head - after))
        if not rows or rows[-1][0] <= after:  # (a damaged position ends it: verify named it)
            return
        yield [data for seq, data in rows if seq <= head]
        after = rows[-1][0]


def _bad_signature(chain: str, seq: int) -> Fault:
    return Fault(chain, seq, FaultCheck.ACTOR_SIGNATURE,
                 "a valid signature by the actor's key", "bad signature",
                 "the command was altered, or signed by someone else (the ledger key?)")


def _envelope_mismatch(envelope: Envelope, record: dict[str, Any], chain: str, ledger_id: str,
                       refusal: bool) -> tuple[str, str] | None:
    """(expected, found) where the envelope does not state this record, else None."""
    if envelope.ledger != ledger_id:
        return f"ledger {ledger_id}", f"ledger {envelope.ledger}"
    if envelope.fleet != chain:
        return f"chain {chain}", f"chain {envelope.fleet}"
    if envelope.actor != record.get("actor"):
        return f"actor {record.get('actor')}", f"actor {envelope.actor}"
    try:
        action = Action(envelope.action)
    except ValueError:
        return "a known action", envelope.action
    if action is Action.APPROVE:
        return None if record["event"] in ("command.approved", "command.rejected") else (
            "an approval record", str(record["event"]))
    if action is Action.REPORT:
        recorded = {k: v for k, v in record.items() if k in envelope.args or k in REPORT_FIELDS}
        if refusal or recorded == dict(envelope.args):
            return None
        return "the fact the reporter signed", f"a {record.get('event')} record with other fields"
    pending = record["event"] == "command.pending"
    event = str(record["command"]) if (refusal or pending) and "command" in record else str(record["event"])
    if event not in ACTION_EVENTS[action] and not refusal:
        return f"an action yielding {event}", action.value
    args = envelope.args
    stated = args.get("version") or (args.get("request") or {}).get("to_version")
    if stated is not None and not refusal and record.get("version") != stated:
        return f"version {record.get('version')}", f"version {stated}"
    return None


def verify_actors(store: ChainRows, ledger_id: str, heads: Mapping[str, int],
                  verify_chain: Callable[[str], int]) -> ActorsReport:
    """Verify the policy chain (as a chain, then as a policy) and every signed command and fact
    of the chains in `heads`, each up to the head chain verification proved (chain -> its
    verified length). `verify_chain(POLICY_CHAIN)` verifies the policy chain as a chain and
    returns its verified length."""
    if store.last_seq(POLICY_CHAIN) == 0:
        return ActorsReport(False)
    policy_head = verify_chain(POLICY_CHAIN)
    checker = ActorChecker(store, ledger_id)
    try:
        count = checker.check_policy_chain(policy_head)
        policy = checker.policy
        if not policy.enforced:
            return ActorsReport(False, policy_records=count)
        signed = SignedCount()
        for chain, head in heads.items():
            signed += checker.check_chain(chain, head)
    finally:
        checker.close()
    return ActorsReport(True, policy.enforced_since, count, signed)
