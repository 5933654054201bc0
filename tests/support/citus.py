"""A Citus cluster on loopback: a coordinator and two workers, each a throwaway EmbeddedPostgres.

Shared by the Citus tests (the `citus_cluster` fixture) and `make bench BENCH_ARGS="--flavor citus"`,
so both set the cluster up the same way: Citus preloaded on every node, then per database the
extension on every node, the coordinator's own address recorded and the workers added to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from receiver.storage.embedded import EmbeddedPostgres
from tests.support.process import free_port

CITUS_SETTINGS = {
    "shared_preload_libraries": "citus",
    "citus.node_conninfo": "sslmode=disable",  # loopback nodes without certificates
    "citus.shard_count": "4",  # 32 by default: every partition is that many tables on the workers
    "max_connections": "200",
}
NODE_NAMES = ("coordinator", "worker1", "worker2")


@contextlib.asynccontextmanager
async def _connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


class CitusCluster:
    """A coordinator and two workers on loopback, each a throwaway cluster with Citus preloaded.

    `extra_settings` go to every node on top of CITUS_SETTINGS (the bench adds track_commit_timestamp,
    which the workers need too: they commit the rows)."""

    def __init__(self, root: Path, extra_settings: dict[str, str] | None = None) -> None:
        settings = {**CITUS_SETTINGS, **(extra_settings or {})}
        self.nodes = [
            EmbeddedPostgres(
                root / name, port=free_port(), timescale=False, listen_addresses="127.0.0.1", extra_settings=settings
            )
            for name in NODE_NAMES
        ]
        self.coordinator, self.workers = self.nodes[0], self.nodes[1:]

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()

    async def add_database(self, name: str) -> str:
        """Database `name` on every node (created unless it exists) with the extension, the workers added
        to the coordinator's; returns the coordinator's DSN for it (where the receiver connects)."""
        for node in self.nodes:
            async with _connected(node.admin_dsn()) as conn:
                if not await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name):
                    await conn.execute(f'CREATE DATABASE "{name}"')
            async with _connected(node.admin_dsn(name)) as conn:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        async with _connected(self.coordinator.admin_dsn(name)) as conn:
            await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", self.coordinator.port)
            for worker in self.workers:
                await conn.execute("SELECT citus_add_node('127.0.0.1', $1)", worker.port)
        return self.coordinator.admin_dsn(name)

    def add_database_sync(self, name: str) -> str:
        """add_database for callers without an event loop (the bench)."""
        return asyncio.run(self.add_database(name))

    async def drop_database(self, name: str) -> None:
        """Drop `name` on every node (Citus does not propagate CREATE/DROP DATABASE by default)."""
        for node in self.nodes:
            async with _connected(node.admin_dsn()) as conn:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_database_sync(self, name: str) -> None:
        asyncio.run(self.drop_database(name))
