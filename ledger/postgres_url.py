"""PostgreSQL settings from a `postgresql://` URL, the PG* variables or a password file.

The URL's parts win; what it leaves out falls back to the standard libpq
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), and a password
that is nowhere given is left to libpq's password file (~/.pgpass or
PGPASSFILE). Passwords are never printed: `redact` is for messages.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.errors import InputError, StorageError


def postgres_env(url: str) -> dict[str, str]:
    """eventsourcing's postgres settings for a URL (POSTGRES_ENABLE_DB_FUNCTIONS stays off)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"invalid port in database URL {redact(url)}") from None
    dbname = unquote(parts.path.lstrip("/")) or os.environ.get("PGDATABASE", "")
    if not dbname:
        raise InputError(f"database URL {redact(url)} names no database")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or os.environ.get("PGHOST", "localhost"),
        "POSTGRES_PORT": str(port or os.environ.get("PGPORT", "5432")),
        "POSTGRES_USER": unquote(parts.username or os.environ.get("PGUSER", "postgres")),
        "POSTGRES_PASSWORD": unquote(parts.password or os.environ.get("PGPASSWORD", "")),
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


def redact(url: str) -> str:
    """The URL with any password replaced, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def check_connection(url: str) -> None:
    """Connect once, briefly, so a bad password or an unreachable server is one clear line."""
    import psycopg

    env = postgres_env(url)
    try:
        psycopg.connect(
            dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StorageError(f"cannot connect to {redact(url)}: {reason}") from None
