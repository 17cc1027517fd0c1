"""The `actors` and `policy` subcommands: who may sign what, kept in the policy chain.

Each change is a command like any decision: parsed here, signed with the
admin's `--actor-key`, decided and recorded by the gate
(`FleetService.submit_policy`), printed with the same outcome lines (exit 0
accepted, 1 refused and recorded, 2 malformed and nothing written).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ledger.actors import read_actor_public_key
from ledger.api import Ledger
from ledger.cli_decide import add_signing_options, open_for, report
from ledger.cli_output import add_output_option, print_json, wants_json
from ledger.decide import Meta
from ledger.errors import InputError
from ledger.keys import public_text
from ledger.names import seq_argument
from ledger.policy import (
    DEFAULT_APPROVAL_ACTIONS,
    DEFAULT_PERSONS,
    OPEN_NOTE,
    POLICY_CHAIN,
    Action,
    Policy,
    fold,
)
from ledger.policy_decide import (
    AddActor,
    EnablePolicy,
    GrantRole,
    PolicyCommand,
    RevokeActor,
    RevokeKey,
)
from ledger.store import default_db

Common = Callable[..., None]
OPEN_MODE = OPEN_NOTE


def _meta(args: argparse.Namespace) -> Meta:
    return Meta(args.actor, args.reason, getattr(args, "idempotency_key", None))


def _actions(text: str) -> tuple[Action, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        return tuple(Action(name) for name in names)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise InputError(f"unknown action in {text!r} (actions: {known})") from None


def _submit(args: argparse.Namespace, command: PolicyCommand, what: str) -> int:
    with open_for(args) as app:
        return report(app.service.submit_policy(command), what)


def bootstrap(args: argparse.Namespace, admin: str, admin_key: str) -> int:
    """`init --admin` / `policy enable --admin`: the first admin, vouched for by the ledger key."""
    raw = read_actor_public_key(admin_key)
    command = EnablePolicy(Meta(args.actor or args.config.user, "enforce the policy"), admin=admin,
                           admin_keys=(raw,))
    with open_for(args) as app:
        code = report(app.service.submit_policy(command), "policy enable")
    if not code:
        print(f"policy enforced: {admin} is admin (key {public_text(raw)})")
    return code


def read_policy(args: argparse.Namespace) -> Policy:
    with Ledger.open(args.db or default_db(), args.key, writable=False) as ledger:
        return fold(ledger.records(POLICY_CHAIN))


def cmd_actors_add(args: argparse.Namespace) -> int:
    keys = tuple(read_actor_public_key(value) for value in args.public_key)
    command = AddActor(args.name, keys, tuple(args.role or ()), _meta(args), tuple(args.worker or ()))
    return _submit(args, command, "actors add")


def cmd_actors_revoke(args: argparse.Namespace) -> int:
    if args.key_id:
        return _submit(args, RevokeKey(args.name, args.key_id, _meta(args)), "actors revoke --key")
    return _submit(args, RevokeActor(args.name, _meta(args)), "actors revoke")


def actor_rows(policy: Policy) -> list[dict[str, Any]]:
    return [{"name": a.name, "roles": sorted(a.roles), "added_seq": a.added_seq,
             "revoked_seq": a.revoked_seq,
             "keys": [{"kid": k.kid, "public_key": public_text(k.public_raw), "revoked_seq": k.revoked_seq}
                      for k in a.keys.values()]}
            for a in sorted(policy.actors.values(), key=lambda a: a.name)]


def cmd_actors_list(args: argparse.Namespace) -> int:
    policy = read_policy(args)
    rows = actor_rows(policy)
    if wants_json(args):
        print_json({"enforced": policy.enforced, "actors": rows})
        return 0
    if not policy.enforced:
        print(OPEN_MODE)
    for row in rows:
        state = f" (revoked at {POLICY_CHAIN} seq {row['revoked_seq']})" if row["revoked_seq"] else ""
        print(f"{row['name']}: roles {', '.join(row['roles']) or '-'}{state}")
        for key in row["keys"]:
            revoked = f" revoked at seq {key['revoked_seq']}" if key["revoked_seq"] else ""
            print(f"  key {key['kid']} {key['public_key']}{revoked}")
    return 0


def cmd_policy_show(args: argparse.Namespace) -> int:
    policy = read_policy(args)
    grants = {g.role: {"actions": sorted(a.value for a in g.actions), "fleets": list(g.fleets)}
              for g in policy.grants.values()}
    if wants_json(args):
        print_json({"enforced": policy.enforced, "since": policy.enforced_since, "policy_seq": policy.seq,
                    "persons": policy.persons,
                    "approval_actions": sorted(a.value for a in policy.approval_actions),
                    "roles": grants, "actors": actor_rows(policy)})
        return 0
    if not policy.enforced:
        print(OPEN_MODE)
        return 0
    print(f"enforced since {policy.enforced_since} (policy at {POLICY_CHAIN} seq {policy.seq})")
    print(f"approvals: {policy.persons} distinct actors for "
          f"{', '.join(sorted(a.value for a in policy.approval_actions)) or 'nothing'}")
    for role, grant in sorted(grants.items()):
        print(f"role {role}: {', '.join(grant['actions']) or 'read only'} on "
              f"{', '.join(grant['fleets']) or 'no fleet'}")
    for actor in actor_rows(policy):
        print(f"actor {actor['name']}: {', '.join(actor['roles']) or '-'}"
              f"{' (revoked)' if actor['revoked_seq'] else ''}")
    return 0


def cmd_policy_enable(args: argparse.Namespace) -> int:
    if args.admin:
        if not args.admin_key:
            raise InputError("--admin needs the admin's public key (--admin-key PATH)")
        return bootstrap(args, args.admin, args.admin_key)
    command = EnablePolicy(_meta(args), args.persons, _actions(args.approval_actions))
    return _submit(args, command, "policy enable")


def cmd_policy_grant(args: argparse.Namespace) -> int:
    fleets = tuple(p.strip() for p in args.fleets.split(",") if p.strip())
    return _submit(args, GrantRole(args.role, _actions(args.actions), fleets, _meta(args)), "policy grant")


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a pending request; with the last approval needed, its command is decided too."""
    chain = POLICY_CHAIN if args.policy else args.fleet
    with open_for(args) as app:
        outcome = app.service.approve(chain, args.request, _meta(args))
        code = report(outcome, "approve")
    if not code and len(outcome.receipts) == 1:
        print(f"approval recorded; request {chain} seq {args.request} waits for more approvals")
    elif not code:
        print(f"approvals complete: request {chain} seq {args.request} was decided "
              f"(seq {outcome.receipts[-2].seq})")
    return code


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", required=True, help="the admin making the change (recorded, signs it)")
    p.add_argument("--reason", default=None, help="why (recorded)")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_signing_options(p)


def register(sub: argparse._SubParsersAction[Any], common: Common) -> None:
    actors = sub.add_parser("actors", help="who may sign commands: add, revoke, list")
    actors_sub = actors.add_subparsers(dest="actors_command", required=True, parser_class=type(actors))
    p = actors_sub.add_parser("add", help="register an actor with public keys and roles (admin)")
    common(p, fleet=False)
    p.add_argument("name")
    p.add_argument("--public-key", action="append", required=True, metavar="KEY",
                   help="ed25519:<base64>, an `ssh-ed25519 AAAA...` line, or a file holding one "
                   "(repeat for several keys)")
    p.add_argument("--role", action="append", help="a role (repeat for several)")
    p.add_argument("--worker", action="append", metavar="PATTERN",
                   help="for a reporter: a worker id (shell glob) whose facts it may sign (repeat)")
    _who(p)
    p.set_defaults(handler=cmd_actors_add)
    p = actors_sub.add_parser("revoke", help="revoke an actor, or one key of theirs (--key-id)")
    common(p, fleet=False)
    p.add_argument("name")
    p.add_argument("--key-id", default=None, help="revoke only this key (its 16-hex-digit id)")
    _who(p)
    p.set_defaults(handler=cmd_actors_revoke)
    p = actors_sub.add_parser("list", help="the actors, their roles and keys")
    common(p, fleet=False)
    add_output_option(p)
    p.set_defaults(handler=cmd_actors_list)

    p = sub.add_parser("approve", help="approve a pending request (two-person control), signed")
    common(p)
    p.add_argument("request", type=seq_argument, metavar="SEQ", help="the position of the pending request")
    p.add_argument("--policy", action="store_true", help="the request is a policy change (in @policy)")
    _who(p)
    p.set_defaults(handler=cmd_approve)

    policy = sub.add_parser("policy", help="the policy: show, enable, grant roles")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, parser_class=type(policy))
    p = policy_sub.add_parser("show", help="roles, actors and approval rules on record")
    common(p, fleet=False)
    add_output_option(p)
    p.set_defaults(handler=cmd_policy_show)
    p = policy_sub.add_parser("enable", help="enforce the policy (--admin), or change its approval rules")
    common(p, fleet=False)
    p.add_argument("--admin", default=None, help="the first admin's name (open ledger only)")
    p.add_argument("--admin-key", default=None, metavar="PATH", help="the first admin's public key")
    p.add_argument("--persons", type=int, default=DEFAULT_PERSONS,
                   help="distinct actors an approved action takes, the requester included (default 2)")
    p.add_argument("--approval-actions", default=",".join(a.value for a in DEFAULT_APPROVAL_ACTIONS),
                   help="actions that need approvals, comma-separated")
    p.add_argument("--actor", default=None, help="who makes the change (recorded, signs it)")
    p.add_argument("--reason", default=None, help="why (recorded)")
    p.add_argument("--projections", default=None, help=argparse.SUPPRESS)
    add_signing_options(p)
    p.set_defaults(handler=cmd_policy_enable)
    p = policy_sub.add_parser("grant", help="let a role perform actions on fleets (replaces its grant)")
    common(p, fleet=False)
    p.add_argument("role")
    p.add_argument("--actions", required=True, help="comma-separated: " + ", ".join(a.value for a in Action))
    p.add_argument("--fleets", default="*", help="comma-separated fleet patterns (shell globs, default *)")
    _who(p)
    p.set_defaults(handler=cmd_policy_grant)

