"""How long each signal table keeps its rows, as the database enforces it: the lower edge of the accepted
time window (receiver.convert.window).

native flavor: the maintenance task drops daily partitions after `[maintenance] *_retention_days`, so the
configuration is the truth. timescale flavor: the retention policies (migration 007, or whatever an
operator set since with remove_retention_policy / add_retention_policy) are, so they are read from
`timescaledb_information.jobs` at start and on SIGHUP. A hypertable without a policy keeps the configured
number, so the window always has a lower edge (a table without one would take a chunk per distinct day
of any date a client sends).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from receiver import schema

SECONDS_PER_DAY = 86400

_POLICIES = """
SELECT hypertable_name, EXTRACT(EPOCH FROM (config->>'drop_after')::interval)::bigint AS seconds
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()
  AND hypertable_name = ANY($1::text[])
"""


def configured_retention_s(days_by_signal: Mapping[str, int]) -> dict[str, int]:
    """[maintenance] *_retention_days -> seconds per signal."""
    return {signal: days * SECONDS_PER_DAY for signal, days in days_by_signal.items()}


async def timescale_retention_s(conn: asyncpg.Connection) -> dict[str, int]:
    """Seconds of each signal table's retention policy, by signal; a table without a policy is absent.
    Two policies on one table (possible by hand): the shorter one drops first, so it counts."""
    found: dict[str, int] = {}
    tables = {table: signal for signal, table in schema.SIGNAL_TABLES.items()}
    for row in await conn.fetch(_POLICIES, list(tables)):
        signal = tables[row["hypertable_name"]]
        seconds = int(row["seconds"])
        found[signal] = min(seconds, found.get(signal, seconds))
    return found
