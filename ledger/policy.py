"""Who may do what, as typed state folded from the policy chain (`@policy`).

The policy lives in the ledger itself, beside the key chain, so that the
question "was this actor allowed to do that, then?" has one answer at every
position of history. Its records are decisions like any other: an actor added
(name, Ed25519 public keys, roles), an actor or one of their keys revoked, a
role granted (actions on fleet patterns), and the policy enabled (enforced
mode, and which actions need approvals). `fold` turns the chain's records
into a `Policy`; `Policy.apply` takes one more record. Nothing here reads
storage or checks signatures: the gate and `verify` do, against this state.

A ledger with no `policy.enabled` record is in open mode: actors are names
anyone can write, and the ledger says so.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ledger.keys import key_id, parse_public_key

#: What every command that reports on actors says of a ledger in open mode.
OPEN_NOTE = "actors are not authenticated (open mode: any holder of the ledger key can write any name)"
#: The chain that holds the policy, beside the key chain `@keys`.
POLICY_CHAIN = "@policy"
#: What fleet-pattern rules match a policy change against.
POLICY_TARGET = "@policy"


class Action(StrEnum):
    """What a signed command asks to do; roles grant actions on fleets."""

    DEPLOY = "deploy"
    SUPERSEDE = "supersede"
    COMPLETE = "complete"
    FAIL = "fail"
    ROLLBACK = "rollback"
    FORCE = "force"
    MARK = "mark"
    CLEAR = "clear"
    RULE = "rule"
    ACTORS = "actors"
    POLICY = "policy"
    #: What an approver signs; the approver's roles must allow the action approved.
    APPROVE = "approve"
    #: A fact about a worker, signed by a reporter bound to that worker.
    REPORT = "report"


class PolicyEvent(StrEnum):
    """The records of the policy chain."""

    ACTOR_ADDED = "actor.added"
    ACTOR_REVOKED = "actor.revoked"
    KEY_REVOKED = "actor.key_revoked"
    ROLE_GRANTED = "role.granted"
    ENABLED = "policy.enabled"


#: The roles a new enforced ledger starts with (changing them later is a policy change).
DEFAULT_ROLES: dict[str, tuple[tuple[Action, ...], tuple[str, ...]]] = {
    "admin": ((Action.ACTORS, Action.POLICY), ("*",)),
    "deployer": ((Action.DEPLOY, Action.SUPERSEDE, Action.COMPLETE, Action.FAIL, Action.MARK), ("*",)),
    "oncall": ((Action.ROLLBACK, Action.COMPLETE, Action.FAIL, Action.MARK, Action.FORCE,
                Action.CLEAR, Action.RULE), ("*",)),
    "auditor": ((), ()),
    "reporter": ((Action.REPORT,), ("*",)),
}
#: Actions that need other actors' approval unless the policy says otherwise.
DEFAULT_APPROVAL_ACTIONS = (Action.FORCE, Action.CLEAR, Action.POLICY)
#: Two-person control: the requester and one other actor.
DEFAULT_PERSONS = 2


@dataclass(frozen=True)
class ActorKey:
    """One public key of an actor; `revoked_seq` is the policy position that revoked it."""

    kid: str
    public_raw: bytes
    revoked_seq: int | None = None


@dataclass(frozen=True)
class Actor:
    """A registered actor: name, keys, roles; `revoked_seq` set once the actor is revoked."""

    name: str
    keys: Mapping[str, ActorKey]
    roles: frozenset[str]
    added_seq: int
    revoked_seq: int | None = None
    #: For a reporter: the worker ids (shell globs) whose facts it may sign.
    workers: tuple[str, ...] = ()

    def reports_for(self, worker_id: str) -> bool:
        return any(fnmatch.fnmatchcase(worker_id, pattern) for pattern in self.workers)

    def key_in_force(self, kid: str) -> ActorKey | None:
        if self.revoked_seq is not None:
            return None
        key = self.keys.get(kid)
        return key if key is not None and key.revoked_seq is None else None


@dataclass(frozen=True)
class Grant:
    """A role: the actions it allows, on fleets matching any of its patterns (shell globs)."""

    role: str
    actions: frozenset[Action]
    fleets: tuple[str, ...]

    def allows(self, action: Action, fleet: str) -> bool:
        return action in self.actions and any(fnmatch.fnmatchcase(fleet, p) for p in self.fleets)


@dataclass(frozen=True)
class Policy:
    """The policy at one position of the policy chain (`seq`; 0: nothing recorded yet)."""

    seq: int = 0
    enforced: bool = False
    #: The timestamp of the record that enabled enforcement.
    enforced_since: str | None = None
    persons: int = DEFAULT_PERSONS
    approval_actions: frozenset[Action] = frozenset(DEFAULT_APPROVAL_ACTIONS)
    actors: Mapping[str, Actor] = field(default_factory=dict)
    grants: Mapping[str, Grant] = field(default_factory=dict)

    def actor(self, name: str) -> Actor | None:
        return self.actors.get(name)

    def allows(self, name: str, action: Action, fleet: str) -> bool:
        """Whether a role of the (unrevoked) actor `name` allows `action` on `fleet`."""
        actor = self.actors.get(name)
        if actor is None or actor.revoked_seq is not None:
            return False
        return any(grant.allows(action, fleet) for role in actor.roles
                   if (grant := self.grants.get(role)) is not None)

    def approvers_needed(self, action: Action) -> int:
        """How many actors besides the requester must approve `action` (0: none)."""
        return max(0, self.persons - 1) if action in self.approval_actions else 0

    def apply(self, record: Mapping[str, Any]) -> Policy:
        """The policy after one more record of the chain (refusals and others change nothing)."""
        seq = int(record["seq"])
        event = record.get("event")
        if event == PolicyEvent.ACTOR_ADDED:
            keys = {}
            for text in record["keys"]:
                raw = parse_public_key(str(text))
                keys[key_id(raw)] = ActorKey(key_id(raw), raw)
            actor = Actor(str(record["name"]), keys, frozenset(str(r) for r in record["roles"]), seq,
                          workers=tuple(str(w) for w in record.get("workers", ())))
            return replace(self, seq=seq, actors={**self.actors, actor.name: actor})
        if event == PolicyEvent.ACTOR_REVOKED:
            name = str(record["name"])
            actors = dict(self.actors)
            if name in actors:
                actors[name] = replace(actors[name], revoked_seq=seq)
            return replace(self, seq=seq, actors=actors)
        if event == PolicyEvent.KEY_REVOKED:
            name, kid = str(record["name"]), str(record["key_id"])
            actors = dict(self.actors)
            if name in actors and kid in actors[name].keys:
                keys = dict(actors[name].keys)
                keys[kid] = replace(keys[kid], revoked_seq=seq)
                actors[name] = replace(actors[name], keys=keys)
            return replace(self, seq=seq, actors=actors)
        if event == PolicyEvent.ROLE_GRANTED:
            grant = Grant(str(record["role"]), frozenset(Action(a) for a in record["actions"]),
                          tuple(str(p) for p in record["fleets"]))
            return replace(self, seq=seq, grants={**self.grants, grant.role: grant})
        if event == PolicyEvent.ENABLED:
            return replace(self, seq=seq, enforced=True,
                           enforced_since=self.enforced_since or str(record["timestamp"]),
                           persons=int(record.get("persons", DEFAULT_PERSONS)),
                           approval_actions=frozenset(Action(a) for a in record.get(
                               "approval_actions", [a.value for a in DEFAULT_APPROVAL_ACTIONS])))
        return replace(self, seq=seq)


def fold(records: Iterable[Mapping[str, Any]], policy: Policy | None = None) -> Policy:
    """The policy after `records` (in chain order), from `policy` or from nothing."""
    state = policy or Policy()
    for record in records:
        state = state.apply(record)
    return state
