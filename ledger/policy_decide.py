"""Changes to the policy as commands, decided by a pure function like every fleet decision.

`decide_policy(policy, command)` looks only at the policy at the head of the
policy chain and returns the records to write, or the refusal naming its
check. The gate (`FleetService.submit_policy`) reads the policy, checks who
signed the command, decides here, and appends at the head it read.

`EnablePolicy` with an admin is the bootstrap of an open ledger (`ledger init
--admin`, `ledger policy enable --admin`): the default roles, the first admin
and the switch to enforced mode, in one write vouched for by the ledger's key;
without an admin it changes the settings of an enforced policy (how many
persons an approval takes, and for which actions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.decide import Accepted, Meta, Refused
from ledger.errors import InputError
from ledger.events import Check
from ledger.keys import key_id, public_text
from ledger.names import check_actor
from ledger.policy import (
    DEFAULT_APPROVAL_ACTIONS,
    DEFAULT_PERSONS,
    DEFAULT_ROLES,
    Action,
    Policy,
    PolicyEvent,
)

ROLE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass(frozen=True)
class AddActor:
    """Register `name` with public keys (32 raw bytes each) and roles."""

    name: str
    keys: tuple[bytes, ...]
    roles: tuple[str, ...]
    meta: Meta
    #: For a reporter: the worker ids (shell globs) whose facts it may sign.
    workers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RevokeActor:
    """`name` may sign nothing from now on."""

    name: str
    meta: Meta


@dataclass(frozen=True)
class RevokeKey:
    """One key (by id) of `name` may sign nothing from now on."""

    name: str
    kid: str
    meta: Meta


@dataclass(frozen=True)
class GrantRole:
    """`role` allows `actions` on fleets matching `fleets` (replacing its earlier grant)."""

    role: str
    actions: tuple[Action, ...]
    fleets: tuple[str, ...]
    meta: Meta


@dataclass(frozen=True)
class EnablePolicy:
    """Enforce the policy (with `admin`: bootstrap it), or change its approval settings."""

    meta: Meta
    persons: int = DEFAULT_PERSONS
    approval_actions: tuple[Action, ...] = DEFAULT_APPROVAL_ACTIONS
    admin: str | None = None
    admin_keys: tuple[bytes, ...] = field(default_factory=tuple)


PolicyCommand = AddActor | RevokeActor | RevokeKey | GrantRole | EnablePolicy


def policy_action(command: PolicyCommand) -> Action:
    """Adding and revoking actors is `actors`; roles and settings are `policy`."""
    return Action.ACTORS if isinstance(command, AddActor | RevokeActor | RevokeKey) else Action.POLICY


def policy_event(command: PolicyCommand) -> str:
    if isinstance(command, AddActor):
        return PolicyEvent.ACTOR_ADDED.value
    if isinstance(command, RevokeActor):
        return PolicyEvent.ACTOR_REVOKED.value
    if isinstance(command, RevokeKey):
        return PolicyEvent.KEY_REVOKED.value
    if isinstance(command, GrantRole):
        return PolicyEvent.ROLE_GRANTED.value
    return PolicyEvent.ENABLED.value


def _check_role(role: str) -> None:
    if not role or len(role) > 32 or not role[0].isalpha() or any(c not in ROLE_CHARS for c in role):
        raise InputError(f"role {role!r} must be lowercase letters, digits, '_' or '-', "
                         "starting with a letter, at most 32 characters")


def check_policy_well_formed(command: PolicyCommand) -> None:
    """Malformed policy commands: exit 2, nothing written."""
    command.meta.check()
    check_actor(command.meta.actor)
    if isinstance(command, AddActor | RevokeActor | RevokeKey):
        check_actor(command.name)
    if isinstance(command, AddActor):
        if not command.keys:
            raise InputError("an actor needs at least one public key (--public-key)")
        for role in command.roles:
            _check_role(role)
        for pattern in command.workers:
            if not pattern or len(pattern) > 128 or not pattern.isprintable():
                raise InputError("a worker pattern must be printable text of 1 to 128 characters")
    if isinstance(command, GrantRole):
        _check_role(command.role)
        for pattern in command.fleets:
            if not pattern or len(pattern) > 128 or not pattern.isprintable():
                raise InputError("a fleet pattern must be printable text of 1 to 128 characters")
    if isinstance(command, EnablePolicy):
        if not 1 <= command.persons <= 16:
            raise InputError(f"--persons must be 1 to 16, not {command.persons}")
        if command.admin is not None:
            check_actor(command.admin)
            if not command.admin_keys:
                raise InputError("--admin needs the admin's public key (--admin-key)")


def decide_policy(policy: Policy, command: PolicyCommand) -> Accepted | Refused:
    """Accept or refuse a policy change against the policy at the chain's head."""
    meta = command.meta
    if isinstance(command, EnablePolicy):
        return _enable(policy, command)
    if isinstance(command, AddActor):
        known = policy.actor(command.name)
        if known is not None and known.revoked_seq is None:
            return policy_refusal(command, Check.ACTOR_EXISTS, f"actor {command.name} is already registered")
        return Accepted((meta.body(PolicyEvent.ACTOR_ADDED.value, target="policy", name=command.name,
                                   keys=[public_text(k) for k in command.keys],
                                   roles=sorted(set(command.roles)),
                                   workers=list(command.workers) or None),))
    if isinstance(command, GrantRole):
        return Accepted((meta.body(PolicyEvent.ROLE_GRANTED.value, target="policy", role=command.role,
                                   actions=sorted({a.value for a in command.actions}),
                                   fleets=list(command.fleets)),))
    actor = policy.actor(command.name)
    if actor is None or actor.revoked_seq is not None:
        return policy_refusal(command, Check.ACTOR_UNKNOWN, f"no registered actor {command.name}")
    if isinstance(command, RevokeActor):
        return Accepted((meta.body(PolicyEvent.ACTOR_REVOKED.value, target="policy", name=command.name),))
    key = actor.keys.get(command.kid)
    if key is None or key.revoked_seq is not None:
        return policy_refusal(command, Check.ACTOR_UNKNOWN,
                              f"actor {command.name} has no key {command.kid} in force")
    return Accepted((meta.body(PolicyEvent.KEY_REVOKED.value, target="policy", name=command.name,
                               key_id=command.kid),))


def _enable(policy: Policy, command: EnablePolicy) -> Accepted | Refused:
    meta = command.meta
    settings = meta.body(PolicyEvent.ENABLED.value, target="policy", persons=command.persons,
                         approval_actions=sorted({a.value for a in command.approval_actions}))
    if command.admin is None:
        if not policy.enforced:
            return policy_refusal(command, Check.ACTOR_UNKNOWN,
                                  "an open ledger is enforced with its first admin (--admin, --admin-key)")
        return Accepted((settings,))
    if policy.enforced:
        return policy_refusal(command, Check.POLICY_ENFORCED,
                              f"the policy is enforced since {policy.enforced_since}; "
                              "add admins with `ledger actors add`")
    records: list[dict[str, Any]] = []
    for role, (actions, fleets) in DEFAULT_ROLES.items():
        if role not in policy.grants:
            records.append(meta.body(PolicyEvent.ROLE_GRANTED.value, target="policy", role=role,
                                     actions=sorted(a.value for a in actions), fleets=list(fleets)))
    records.append(meta.body(PolicyEvent.ACTOR_ADDED.value, target="policy", name=command.admin,
                             keys=[public_text(k) for k in command.admin_keys], roles=["admin"]))
    records.append(settings)
    return Accepted(tuple(records))


def policy_refusal(command: PolicyCommand, check: Check, detail: str) -> Refused:
    body = command.meta.body("command.rejected", target="policy", command=policy_event(command),
                             check=check.value, detail=detail)
    body["result"] = "rejected"
    return Refused(check, detail, body)


def policy_arguments(command: PolicyCommand) -> dict[str, Any]:
    """The arguments an actor signs for a policy change (keys as text, sorted sets)."""
    args: dict[str, Any] = {}
    if isinstance(command, AddActor):
        args = {"name": command.name, "keys": [public_text(k) for k in command.keys],
                "roles": sorted(set(command.roles))}
        if command.workers:
            args["workers"] = list(command.workers)
    elif isinstance(command, RevokeActor):
        args = {"name": command.name}
    elif isinstance(command, RevokeKey):
        args = {"name": command.name, "key_id": command.kid}
    elif isinstance(command, GrantRole):
        args = {"role": command.role, "actions": sorted({a.value for a in command.actions}),
                "fleets": list(command.fleets)}
    else:
        args = {"persons": command.persons,
                "approval_actions": sorted({a.value for a in command.approval_actions})}
        if command.admin is not None:
            args.update(admin=command.admin, admin_keys=[key_id(k) for k in command.admin_keys])
    if command.meta.reason:
        args["reason"] = command.meta.reason
    if command.meta.idempotency_key:
        args["idempotency_key"] = command.meta.idempotency_key
    return args
