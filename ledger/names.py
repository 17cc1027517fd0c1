"""The one definition of what an identifier may look like, and how user text is shown.

Fleet names become chain ids, checkpoint origins and file names; worker ids
become lock and log file names; versions and actors are compared, printed and
stored in every backend. Each has one pattern here, written so that it means
the same in Python (always matched with `fullmatch`, so a trailing newline is
never accepted the way `re.match` with `$` accepts it) and in JSON Schema
(anchored with `^...$`; the schemas in `schemas/` are built from these very
strings).

`shown` is for every message that quotes text a user or a record supplied:
control characters are escaped, so an error line is one line and never drives
the terminal.
"""

from __future__ import annotations

import argparse
import re

from ledger.errors import RecordError

#: C0 controls (NUL included), DEL and C1 controls: never in a stored string.
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"
CONTROL_RE = re.compile(f"[{CONTROL_CLASS}]")
#: What no stored string may hold: control characters, and lone surrogates (not UTF-8 at all).
FORBIDDEN_RE = re.compile(f"[{CONTROL_CLASS}\ud800-\udfff]")

_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_VERSION_BODY = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
# Printable text of 1..256 characters with no whitespace at either end: room for
# e-mail addresses, URIs and display names ("ci@example.com", "spiffe://x/y").
_EDGE = rf"[^\s{CONTROL_CLASS}]"
_ACTOR_BODY = rf"{_EDGE}(?:[^{CONTROL_CLASS}]{{0,254}}{_EDGE})?"

FLEET_PATTERN = f"^{_ID_BODY}$"
WORKER_PATTERN = f"^{_ID_BODY}$"
VERSION_PATTERN = f"^{_VERSION_BODY}$"
ACTOR_PATTERN = f"^{_ACTOR_BODY}$"

_FLEET_RE = re.compile(_ID_BODY)
_WORKER_RE = re.compile(_ID_BODY)
_VERSION_RE = re.compile(_VERSION_BODY)
_ACTOR_RE = re.compile(_ACTOR_BODY)

_ID_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters"


def shown(text: object, limit: int = 80) -> str:
    """`text` quoted for a one-line message: control characters escaped, long text cut."""
    value = str(text)
    cut = value[:limit]
    quoted = repr(cut)  # repr escapes every non-printable character, C0/C1/DEL included
    return quoted + ("..." if len(value) > limit else "")


def escape_controls(line: str) -> str:
    """A message made safe for a terminal: each control character as a visible escape."""
    return CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), line)


_LEDGER_ID_RE = re.compile(r"(?!0{32}$)[0-9a-f]{32}")


def is_ledger_id(value: object) -> bool:
    """A ledger's identity: 128 random bits as 32 lowercase hex digits, never all zero."""
    return isinstance(value, str) and _LEDGER_ID_RE.fullmatch(value) is not None


def is_fleet_name(value: object) -> bool:
    return isinstance(value, str) and _FLEET_RE.fullmatch(value) is not None


def is_worker_id(value: object) -> bool:
    return isinstance(value, str) and _WORKER_RE.fullmatch(value) is not None


def is_version(value: object) -> bool:
    return isinstance(value, str) and _VERSION_RE.fullmatch(value) is not None


def is_actor(value: object) -> bool:
    return isinstance(value, str) and _ACTOR_RE.fullmatch(value) is not None


def check_fleet_name(fleet: str) -> str:
    """Fleet names become chain ids, origin lines and file names: keep them plain."""
    if not is_fleet_name(fleet):
        raise RecordError(f"fleet name {shown(fleet)} is invalid: use {_ID_RULE}")
    return fleet


def check_version(version: object, what: str = "version") -> str:
    """Versions become lookup keys of the read models and parts of worker ids: keep them plain."""
    if not is_version(version):
        raise RecordError(f"{what} {shown(version)} is invalid: use letters, digits, '.', '_', '+' or '-', "
                          "starting with a letter or digit, at most 128 characters")
    assert isinstance(version, str)
    return version


def check_actor(actor: object) -> str:
    """Actors are recorded as who did it: printable text, no control characters, no edge spaces."""
    if not is_actor(actor):
        raise RecordError(f"actor {shown(actor)} is invalid: printable text of at most 256 characters, "
                          "no control characters, not starting or ending with a space")
    assert isinstance(actor, str)
    return actor


def check_worker_id(worker_id: str) -> str:
    """Worker ids become file names of the local driver: keep them plain."""
    if not is_worker_id(worker_id):
        raise RecordError(f"worker id {shown(worker_id)} is invalid: use {_ID_RULE}")
    return worker_id


#: The largest position a chain can hold: both stores keep a seq in a signed 64-bit integer.
MAX_SEQ = 2**63 - 1


def seq_argument(text: str) -> int:
    """A command-line position (`SEQ`, `--after`, `--seq`): a whole number from 0 to `MAX_SEQ`.

    Checked while parsing, so a number no store can hold is bad input (exit 2),
    never a storage error from deep inside a query.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_SEQ:
        raise argparse.ArgumentTypeError(f"a position must be 0 to {MAX_SEQ}, not {value}")
    return value


def count_argument(text: str) -> int:
    """A command-line count (`--limit`): a whole number from 1 to `MAX_SEQ`, checked while parsing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_SEQ:
        raise argparse.ArgumentTypeError(f"a count must be 1 to {MAX_SEQ}, not {value}")
    return value
