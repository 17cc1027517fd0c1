"""The configuration: every setting the ledger honours, read from flags and environment in one place.

`Config.load` builds one frozen `Config` from what the command line gave and
the environment (a flag wins over its variable, a variable over the default);
the CLI builds it once per command. No other module reads `os.environ`:
library code takes its settings as arguments, and the few facts of the user's
environment it needs (where their configuration lives, libpq's standard
variables) come from the functions here.

| setting | flag | variable | default |
|---|---|---|---|
| db | `--db` | `LEDGER_DB` | `ledger.db` |
| key | `--key` | `LEDGER_KEY` | `ledger.key` |
| fleet | `--fleet` | `LEDGER_FLEET` | `default` |
| projections | `--projections` | `LEDGER_PROJECTIONS` | beside the ledger |
| driver | `--driver` | `LEDGER_DRIVER` | `local` |
| driver_config | `--driver-config` | `LEDGER_DRIVER_CONFIG` | none |
| trust | `--public-key` | `LEDGER_TRUST` | the key pinned at init |
| actor_key | `--actor-key` | `LEDGER_ACTOR_KEY` | none (commands go unsigned) |
| reporter | `--reporter` | `LEDGER_REPORTER` | none (worker facts go unsigned) |
| reporter_key | `--reporter-key` | `LEDGER_REPORTER_KEY` | none |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_DIR = "deploy-ledger"
DEFAULT_DB = "ledger.db"
DEFAULT_KEY = "ledger.key"
DEFAULT_FLEET = "default"
DEFAULT_DRIVER = "local"


@dataclass(frozen=True)
class Config:
    """One command's settings, from its flags and the environment."""

    db: str = DEFAULT_DB
    key: str = DEFAULT_KEY
    #: None for a command that covers every fleet unless one is named (`verify`).
    fleet: str | None = DEFAULT_FLEET
    projections: str | None = None
    driver: str = DEFAULT_DRIVER
    driver_config: str | None = None
    #: Who runs this command, by the login name: the default actor of `ledger init`.
    user: str = "ledger-init"
    #: The private key the actor signs decisions with (enforced ledgers need it).
    actor_key: str | None = None
    #: The reporter actor that signs the worker facts a driver or importer writes, and its key.
    reporter: str | None = None
    reporter_key: str | None = None

    @classmethod
    def load(cls, given: Mapping[str, Any], environ: Mapping[str, str] | None = None, *,
             every_fleet: bool = False) -> Config:
        """Flags in `given` (None or absent = not given), then `environ`, then the defaults."""
        env = os.environ if environ is None else environ

        def pick(name: str, variable: str, default: str | None) -> str | None:
            value = given.get(name)
            if value is not None:
                return str(value)
            return env.get(variable) or default

        return cls(
            db=pick("db", "LEDGER_DB", DEFAULT_DB) or DEFAULT_DB,
            key=pick("key", "LEDGER_KEY", DEFAULT_KEY) or DEFAULT_KEY,
            fleet=given.get("fleet") or (None if every_fleet else env.get("LEDGER_FLEET") or DEFAULT_FLEET),
            projections=pick("projections", "LEDGER_PROJECTIONS", None),
            driver=pick("driver", "LEDGER_DRIVER", DEFAULT_DRIVER) or DEFAULT_DRIVER,
            driver_config=pick("driver_config", "LEDGER_DRIVER_CONFIG", None),
            user=env.get("USER") or "ledger-init",
            actor_key=pick("actor_key", "LEDGER_ACTOR_KEY", None),
            reporter=pick("reporter", "LEDGER_REPORTER", None),
            reporter_key=pick("reporter_key", "LEDGER_REPORTER_KEY", None),
        )


def tokens_file() -> str | None:
    """`LEDGER_TOKENS`: the service's token file, unless `--tokens` names one."""
    return os.environ.get("LEDGER_TOKENS") or None


def hand_over(name: str, value: str) -> None:
    """Leave `value` in this process's environment for the processes it starts.

    `ledger serve` hands its settings to uvicorn's worker processes this way:
    they import the application by name and can receive nothing else.
    """
    os.environ[name] = value


def handed_over(name: str) -> str | None:
    """What a parent process left with `hand_over`, if anything."""
    return os.environ.get(name) or None


def libpq_defaults() -> dict[str, str]:
    """libpq's standard variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`), for the
    parts a `postgresql://` URL leaves out, as psql would use them."""
    return {name: os.environ[name] for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
            if os.environ.get(name)}


def config_home() -> Path:
    """The user's configuration directory: `$XDG_CONFIG_HOME`, else `~/.config`."""
    configured = os.environ.get("XDG_CONFIG_HOME", "")
    if configured and Path(configured).is_absolute():  # the XDG spec ignores relative paths
        return Path(configured)
    return Path.home() / ".config"


def trust_dir() -> Path:
    """Where `ledger init` pins each ledger's anchor key: `<config>/deploy-ledger/trust/`."""
    return config_home() / APP_DIR / "trust"


def pinned_anchor_path(ledger_id: str) -> Path:
    """The pinned anchor of one ledger, named by its identity."""
    return trust_dir() / f"{ledger_id}.pub"


def trust_from_env() -> str | None:
    """`LEDGER_TRUST`: a trusted public key, or the path of a file holding one."""
    return os.environ.get("LEDGER_TRUST") or None
