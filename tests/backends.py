"""Direct access to a ledger's stored rows, for tests that play the attacker.

The same edits (change a record's bytes, delete, swap, insert, move between
chains) on either backend: a SQLite file through `sqlite3`, or a PostgreSQL
schema through `psycopg`, bypassing the ledger entirely.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ledger.postgres_url import postgres_env


class RawRows(Protocol):
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, *statements: tuple[str, tuple[Any, ...]]) -> None: ...

    @property
    def table(self) -> str: ...


class SQLiteRows:
    table = "stored_events"
    mark = "?"

    def __init__(self, path: str):
        self.path = path

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as c:
            return [tuple(row) for row in c.execute(sql.replace("%s", "?"), params)]

    def execute(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        with sqlite3.connect(self.path) as c:
            for sql, params in statements:
                c.execute(sql.replace("%s", "?"), params)


class PostgresRows:
    def __init__(self, url: str):
        env = postgres_env(url)
        self.conninfo = dict(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                             port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                             password=env["POSTGRES_PASSWORD"])
        schema = parse_qs(urlsplit(url).query).get("schema", ["public"])[0]
        self.table = f'"{schema}"."deployledger_events"'

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg  # the postgres extra, loaded only for a PostgreSQL ledger

        with psycopg.connect(**self.conninfo) as c:
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in c.execute(sql, params).fetchall()]  # type: ignore[arg-type]

    def execute(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        import psycopg

        with psycopg.connect(**self.conninfo) as c:
            for sql, params in statements:
                c.execute(sql, params)  # type: ignore[arg-type]


class Tamper:
    """Edits of one chain's stored rows, the way someone with database access would."""

    def __init__(self, rows: RawRows, stream: str = "fleet:prod"):
        self.raw = rows
        self.stream = stream

    def rows(self) -> list[tuple[int, bytes]]:
        return [(int(v), bytes(s)) for v, s in self.raw.query(
            f"SELECT originator_version, state FROM {self.raw.table} WHERE originator_id=%s "
            "ORDER BY originator_version", (self.stream,))]

    def set_state(self, seq: int, state: bytes) -> None:
        self.raw.execute((f"UPDATE {self.raw.table} SET state=%s WHERE originator_id=%s "
                          "AND originator_version=%s", (state, self.stream, seq)))

    def delete(self, seq: int) -> None:
        self.raw.execute((f"DELETE FROM {self.raw.table} WHERE originator_id=%s "
                          "AND originator_version=%s", (self.stream, seq)))

    def truncate_after(self, seq: int) -> None:
        self.raw.execute((f"DELETE FROM {self.raw.table} WHERE originator_id=%s "
                          "AND originator_version>%s", (self.stream, seq)))

    def insert(self, seq: int, topic: str, state: bytes, stream: str | None = None) -> None:
        self.raw.execute((f"INSERT INTO {self.raw.table} (originator_id, originator_version, topic, "
                          "state) VALUES (%s, %s, %s, %s)", (stream or self.stream, seq, topic, state)))

    def swap_positions(self, a: int, b: int) -> None:
        update = (f"UPDATE {self.raw.table} SET originator_version=%s WHERE originator_id=%s "
                  "AND originator_version=%s")
        self.raw.execute((update, (-1, self.stream, a)), (update, (a, self.stream, b)),
                         (update, (b, self.stream, -1)))

    def move(self, seq: int, stream: str) -> None:
        self.raw.execute((f"UPDATE {self.raw.table} SET originator_id=%s WHERE originator_id=%s "
                          "AND originator_version=%s", (stream, self.stream, seq)))


def tamper_for(db: str, stream: str = "fleet:prod") -> Tamper:
    rows: RawRows = PostgresRows(db) if db.startswith("postgresql://") else SQLiteRows(db)
    return Tamper(rows, stream)
