"""Citus (distributed PostgreSQL): the native flavor with its signal tables spread over worker nodes.

`migrate` calls `distribute` after the migrations. Nothing happens unless the `citus` extension is
created in the database (the operator sets the cluster up: `CREATE EXTENSION citus` and
`citus_add_node` on the coordinator; the receiver connects to the coordinator). Then, once:

- the signal tables are hash-distributed, each by a column of its primary key (Citus requires every
  unique constraint of a distributed table to contain the distribution column, and refuses NULL in it):
  - `llm_traces` by `trace_id`: every span of a trace on one node (trace look-ups go to one shard);
  - `llm_metrics` by `point_id`: a data point has no trace; its identity hash spreads points evenly;
  - `llm_logs` by `record_id`: most log records carry no trace id (NULL is not allowed as a
    distribution value) and the primary key (record_id, ts) does not contain trace_id; the record's
    identity hash spreads them evenly. Logs of a trace are found through the trace_id index on
    every shard (one parallel query).
  Day partitions stay: a partition created later (the maintenance task's) is distributed with its
  parent automatically, colocated with it.
- the small supporting tables become reference tables (a copy on every node): model_pricing, users,
  projects, api_keys, dead_letters.
- schema_migrations, the rollup stores and rollup_watermarks stay on the coordinator: maintenance
  aggregates the distributed spans (each worker aggregates its shards) into them, under the same row
  lock and advisory lock as on a single node.
"""

from __future__ import annotations

import asyncpg

DISTRIBUTION_COLUMNS = {"llm_traces": "trace_id", "llm_metrics": "point_id", "llm_logs": "record_id"}
# In foreign-key order: a reference table may only point at reference tables.
REFERENCE_TABLES = ("users", "projects", "api_keys", "model_pricing", "dead_letters")


async def citus_enabled(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"))


async def distributed_tables(conn: asyncpg.Connection) -> dict[str, str]:
    """table -> its Citus type ('distributed', 'reference', 'local'), for the tables Citus manages here."""
    rows = await conn.fetch("SELECT table_name::text AS name, citus_table_type AS kind FROM citus_tables")
    return {r["name"]: r["kind"] for r in rows}


async def undistributed(conn: asyncpg.Connection) -> bool:
    """Whether `distribute` has something to do (a read: safe for the writer role and without the lock)."""
    if not await citus_enabled(conn):
        return False
    current = await distributed_tables(conn)
    for table in REFERENCE_TABLES:
        if current.get(table) != "reference" and await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return True
    return any(table not in current for table in DISTRIBUTION_COLUMNS)


async def distribute(conn: asyncpg.Connection) -> list[str]:
    """Distribute what is not distributed yet (idempotent); returns what was done, for the report."""
    if not await citus_enabled(conn):
        return []
    current = await distributed_tables(conn)
    done = []
    for table in REFERENCE_TABLES:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if exists and current.get(table) != "reference":
            await conn.execute("SELECT create_reference_table($1)", table)
            done.append(f"{table}: reference table")
    for table, column in DISTRIBUTION_COLUMNS.items():
        if table not in current:
            await conn.execute("SELECT create_distributed_table($1, $2)", table, column)
            done.append(f"{table}: distributed by {column}")
    return done
