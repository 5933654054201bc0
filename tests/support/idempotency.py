"""The check every signal's retry-twice test ends with: the retried rows reached the database, were
skipped as duplicates, and each item is stored exactly once."""

from __future__ import annotations

from typing import Any

from tests.support.wait import wait_until


def _skipped_metric(table: str) -> str:
    return f'storage_duplicate_rows_skipped_total{{table="{table}"}}'


async def duplicates_skipped(receiver: Any, table: str) -> float:
    """Rows of `table` the receiver has skipped as already stored, so far."""
    return await receiver.metric(_skipped_metric(table))


async def assert_retry_stored_once(
    receiver: Any, database: Any, table: str, id_column: str, service: str, count: int, skipped_before: float
) -> None:
    """After a request of `count` items was sent twice: wait until all of the retry was skipped by the
    database, then check one row per `id_column` of `service`, `count` rows in all."""

    async def duplicates_seen() -> bool:
        return await duplicates_skipped(receiver, table) - skipped_before >= count

    await wait_until(duplicates_seen, what=f"the retried {table} rows reached the database and were skipped")
    counts = await database.fetch(
        f"SELECT {id_column}, count(*) AS n FROM {table} WHERE service_name = $1 GROUP BY {id_column}", service
    )
    assert len(counts) == count and all(r["n"] == 1 for r in counts)
