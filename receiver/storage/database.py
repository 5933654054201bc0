"""Opening connections, with the settings every receiver connection shares."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

APPLICATION_NAME = "llm-observatory-receiver"


@dataclass(frozen=True)
class Database:
    dsn: str
    connect_timeout_s: float = 10.0

    async def connect(self, role: str = "writer") -> asyncpg.Connection:
        return await asyncpg.connect(
            self.dsn,
            timeout=self.connect_timeout_s,
            server_settings={"application_name": f"{APPLICATION_NAME}:{role}"},
        )


async def probe(conn: asyncpg.Connection, timeout_s: float = 2.0) -> float:
    """Round-trip latency of a trivial query, in milliseconds."""
    started = time.perf_counter()
    await conn.fetchval("SELECT 1", timeout=timeout_s)
    return (time.perf_counter() - started) * 1000


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    auth, host = rest.rsplit("@", 1)
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in auth else ''}@{host}"
