"""Shared fixtures: a throwaway PostgreSQL cluster, fresh databases, and real receiver processes.

Nothing is mocked: the cluster is a real PostgreSQL started with the machine's server binaries (the
same code as the receiver's embedded database), the receiver is the real `llm-observatory-receiver
run` in a subprocess, and clients are the OpenTelemetry SDK exporters or raw OTLP over the wire.
"""

from __future__ import annotations

import os

# Fault tests fork pg_ctl (to stop and start a database) from this process while its gRPC clients are
# busy; gRPC's fork handlers then crash the forked child now and then (SIGSEGV before exec). Nothing here
# needs gRPC across a fork, so they are turned off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from receiver.storage.embedded import EmbeddedPostgres, citus_installed, timescaledb_installed
from tests.support import citus
from tests.support.cleanup import reap_orphans, throwaway_dir
from tests.support.process import ReceiverProcess, free_port
from tests.support.wait import wait_until


def pytest_sessionstart(session: pytest.Session) -> None:
    """Reap clusters left by a killed run, and let SIGTERM (e.g. `timeout`) run the teardowns."""
    reap_orphans()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(autouse=True)
async def _no_receiver_outlives_its_test():
    """A test that fails before stopping the receivers it started must not leave them running
    (receivers of module fixtures, started before the test, are theirs to stop)."""
    before = set(ReceiverProcess.running)
    yield
    for proc in set(ReceiverProcess.running) - before:
        await proc.kill()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    root = throwaway_dir("test-pg")
    # Plain PostgreSQL even where TimescaleDB is installed: CI has none, and the native flavor is what
    # most tests exercise. The timescale flavor has its own cluster (timescale_cluster).
    cluster = EmbeddedPostgres(Path(root) / "cluster", port=free_port(), timescale=False)
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


TIMESCALE_SKIP_REASON = (
    "TimescaleDB is not installed for this PostgreSQL (no timescaledb.control / timescaledb*.so); "
    "the timescale flavor is tested where it is"
)


@pytest.fixture(scope="session")
def timescale_cluster() -> Iterator[EmbeddedPostgres]:
    """A second throwaway cluster with TimescaleDB preloaded; skips the test where it is not installed."""
    if not timescaledb_installed():
        pytest.skip(TIMESCALE_SKIP_REASON)
    root = throwaway_dir("test-ts")
    cluster = EmbeddedPostgres(Path(root) / "cluster", port=free_port(), timescale=True)
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


CITUS_SKIP_REASON = (
    "Citus is not installed for this PostgreSQL (no citus.control / citus.so); build it from source for "
    "the test machine's PostgreSQL to run the Citus tests (README, 'Citus')"
)


class CitusCluster(citus.CitusCluster):
    """The shared loopback Citus cluster (tests/support/citus.py), handing out databases as DatabaseHandle."""

    async def create_database(self) -> DatabaseHandle:
        """A fresh database on every node with the extension, the workers added to the coordinator's."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        await self.add_database(name)
        return DatabaseHandle(self.coordinator, name)


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[CitusCluster]:
    """Three throwaway clusters forming a Citus cluster; skips the test where Citus is not installed."""
    if not citus_installed():
        pytest.skip(CITUS_SKIP_REASON)
    root = throwaway_dir("test-citus")
    cluster = CitusCluster(Path(root))
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


class DatabaseHandle:
    """A fresh database in the session cluster, with helpers to read what the receiver stored."""

    def __init__(self, cluster: EmbeddedPostgres, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.dsn = cluster.admin_dsn(name)

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: object) -> object:
        conn = await self.connect()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def wait_for_count(self, query: str, expected: int, *args: object, timeout: float = 30.0) -> int:
        """Poll `query` (a count) until it reaches `expected`; fail with the last value otherwise."""
        last: list[int] = [-1]

        async def reached() -> bool:
            last[0] = int(await self.fetchval(query, *args))  # type: ignore[arg-type]
            return last[0] >= expected

        await wait_until(reached, timeout=timeout, what=lambda: f"{query!r} = {last[0]}, expected {expected}")
        return last[0]


async def drop_database(database: DatabaseHandle) -> None:
    """Drop a test database (TimescaleDB runs a job scheduler per database: keep their number small)."""
    conn = await asyncpg.connect(database.cluster.admin_dsn())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")
    finally:
        await conn.close()


async def create_database(cluster: EmbeddedPostgres) -> DatabaseHandle:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(cluster.admin_dsn())
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return DatabaseHandle(cluster, name)


@pytest.fixture
async def database(pg_cluster: EmbeddedPostgres) -> DatabaseHandle:
    return await create_database(pg_cluster)


@pytest.fixture(scope="module")
async def module_database(pg_cluster: EmbeddedPostgres) -> DatabaseHandle:
    return await create_database(pg_cluster)


@pytest.fixture(scope="module")
async def receiver(
    module_database: DatabaseHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReceiverProcess]:
    """One real receiver per test module, on free ports, writing into the module's database."""
    proc = ReceiverProcess(module_database.dsn, tmp_path_factory.mktemp("receiver"))
    await proc.start()
    yield proc
    await proc.stop()
