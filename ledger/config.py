"""Settings that come from the user's environment, read in one place.

Library code asks these functions instead of reading `os.environ` itself, so
every setting the ledger honours is listed here, with its default, and tests
can isolate all of them by setting the environment of one process.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = "deploy-ledger"


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
