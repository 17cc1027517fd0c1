"""The PostgreSQL recorder of a ledger, in a module of its own.

eventsourcing loads it by its topic (`APPLICATION_RECORDER_TOPIC`, set by
`ledger.postgres_url.postgres_env`) only when a ledger lives at a
`postgresql://` location, so a SQLite-only install never imports
`eventsourcing.postgres` or psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import dict_row

from ledger import merkle_nodes
from ledger.store import chain_guards


class GuardedPostgresRecorder(PostgresApplicationRecorder):
    """The PostgreSQL twin of `ledger.store.GuardedSQLiteRecorder`.

    The guards (key chain, policy chain) run inside the insert's transaction,
    once the EXCLUSIVE table lock that eventsourcing takes for every insert is
    held (so no rotation or policy change can commit between the check and this
    commit), and before the insert is sent, so a refused batch leaves nothing to
    commit.
    """

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> None:
        guards = chain_guards(kwargs.get("key_chain_seq"), kwargs.get("policy_seq"))
        if guards:
            self._lock_table(curs)  # taken before the checks: commits are ordered from here
            table = f'"{self.datastore.schema}"."{self.events_table_name}"'
        for chain, length, moved in guards:
            expected = length + sum(1 for s in stored_events if s.originator_id == chain)
            curs.execute(f"SELECT COALESCE(MAX(originator_version), 0) AS length FROM {table} "
                         "WHERE originator_id = %s", (chain,))
            found = curs.fetchone()["length"]  # syncs the pipeline: nothing is queued behind it
            if found != expected:
                # Raised before the insert is sent, so the transaction holds nothing to commit.
                raise moved(f"{chain} at {found}, sealed against {expected}")
        super()._insert_stored_events(curs, stored_events, **kwargs)
        table = f'"{self.datastore.schema}"."{merkle_nodes.table_name(self.events_table_name)}"'
        # A cursor of its own: eventsourcing reads the insert's notification ids from `curs` next.
        # Never prepared: in pipeline mode a statement prepared in a transaction that then
        # fails (a lost race) is remembered by psycopg but unknown to the server.
        with curs.connection.cursor(row_factory=dict_row) as own:
            nodes = merkle_nodes.nodes_to_write(own, table, "%s", stored_events, prepare=False)
            for start in range(0, len(nodes), 1000):
                chunk = nodes[start:start + 1000]
                own.execute(merkle_nodes.insert_statement(table, len(chunk), "%s"),
                            [value for row in chunk for value in row], prepare=False)

    def _create_table(self, curs: Any) -> None:
        # Many processes opening one new ledger at once would otherwise race on
        # eventsourcing's CREATE OR REPLACE FUNCTION ("tuple concurrently updated").
        curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                     (f"{self.datastore.schema}.{self.events_table_name}",))
        super()._create_table(curs)
        table = merkle_nodes.table_name(self.events_table_name)
        curs.execute(f'CREATE TABLE IF NOT EXISTS "{self.datastore.schema}"."{table}" '
                     "(stream TEXT, level INTEGER, idx BIGINT, hash BYTEA, PRIMARY KEY (stream, level, idx))")
