"""PostgreSQL settings from a `postgresql://` URL, the PG* variables or a password file.

The URL's parts win; what it leaves out falls back to the standard libpq
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), and a password
that is nowhere given is left to libpq's password file (~/.pgpass or
PGPASSFILE). Passwords are never printed: `redact` is for messages.
"""

from __future__ import annotations

import importlib
import re
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.config import libpq_defaults
from ledger.errors import InputError, StorageError


def postgres_env(url: str) -> dict[str, str]:
    """eventsourcing's postgres settings for a URL (POSTGRES_ENABLE_DB_FUNCTIONS stays off).

    Every way to a PostgreSQL ledger passes here, so an install without the
    postgres extra refuses such a URL here, in one line, before any import fails.
    """
    try:
        importlib.import_module("psycopg")
    except ImportError:
        raise InputError(f"a PostgreSQL ledger ({redact(url)}) needs the postgres extra: "
                         "pip install 'deploy-ledger[postgres]'") from None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"invalid port in database URL {redact(url)}") from None
    libpq = libpq_defaults()
    dbname = unquote(parts.path.lstrip("/")) or libpq.get("PGDATABASE", "")
    if not dbname:
        raise InputError(f"database URL {redact(url)} names no database")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or libpq.get("PGHOST", "localhost"),
        "POSTGRES_PORT": str(port or libpq.get("PGPORT", "5432")),
        "POSTGRES_USER": unquote(parts.username or libpq.get("PGUSER", "postgres")),
        "POSTGRES_PASSWORD": unquote(parts.password or libpq.get("PGPASSWORD", "")),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_PRE_PING": "y",  # a pooled connection broken by a server restart is replaced
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "ORIGINATOR_ID_TYPE": "text",
        "APPLICATION_RECORDER_TOPIC": "ledger.store_postgres:GuardedPostgresRecorder",
    }
    schema = parse_qs(parts.query).get("schema")
    if schema:
        env["POSTGRES_SCHEMA"] = schema[0]
    return env


# userinfo of any URL ("scheme://user:secret@host"), and key=value passwords in a
# URL query or a libpq connection string ("password=secret", "?sslpassword=secret").
_USERINFO_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")
_PASSWORD_RE = re.compile(r"(?P<head>\b[A-Za-z_]*password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&;#]*)",
                          re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with any password replaced (in its userinfo or query), fit for a message."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """Any text (a URL, a driver's error message) with every password in it replaced."""
    text = _USERINFO_RE.sub(lambda m: f"{m.group('head')}:***@", text)
    return _PASSWORD_RE.sub(lambda m: f"{m.group('head')}***", text)


def ensure_schema(url: str) -> None:
    """Create the URL's `?schema=NAME` if it is missing, for `ledger init` (a new ledger's home)."""
    env = postgres_env(url)  # first: without the postgres extra, it says so
    import psycopg
    from psycopg import sql

    schema = env.get("POSTGRES_SCHEMA")
    if not schema:
        return
    try:
        with psycopg.connect(
            dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None, connect_timeout=5,
            autocommit=True,
        ) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        reason = redact_text(" ".join(str(exc).split())) or type(exc).__name__
        raise StorageError(f"storage fault: cannot create schema {schema!r} in {redact(url)}: {reason} "
                           f"(create it, or use a role allowed to: CREATE SCHEMA {schema})") from None


def check_connection(url: str) -> None:
    """Connect once, briefly, so a bad password or an unreachable server is one clear line."""
    env = postgres_env(url)  # first: without the postgres extra, it says so
    import psycopg

    try:
        psycopg.connect(
            dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        reason = redact_text(" ".join(str(exc).split())) or type(exc).__name__
        raise StorageError(f"storage fault: cannot connect to {redact(url)}: {reason}") from None
