"""`make run`'s path: no database configured -> the receiver starts its own PostgreSQL, migrates,
accepts spans from an SDK, and stops everything cleanly on SIGTERM."""

from __future__ import annotations

import uuid

from receiver.storage.embedded import EmbeddedPostgres, timescaledb_installed
from tests.support.cleanup import throwaway_dir
from tests.support.otlp import sdk_tracer_provider
from tests.support.process import ReceiverProcess


async def test_receiver_with_embedded_database_end_to_end():
    root = throwaway_dir("embedded")
    proc = ReceiverProcess("", root, database__embedded_dir=str(root / "pg"))  # no DATABASE_URL
    cluster = EmbeddedPostgres(root / "pg")
    try:
        await proc.start()
        service = f"embedded-{uuid.uuid4().hex[:6]}"
        provider = sdk_tracer_provider("grpc", proc, service)
        with provider.get_tracer("t").start_as_current_span("chat") as s:
            s.set_attribute("gen_ai.request.model", "gpt-4o")
        provider.shutdown()

        import asyncpg

        from tests.support.wait import wait_until

        async def landed() -> bool:
            conn = await asyncpg.connect(cluster.dsn)
            try:
                return await conn.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == 1
            finally:
                await conn.close()

        await wait_until(landed, what="the span in the embedded database")
        conn = await asyncpg.connect(cluster.dsn)
        try:
            flavor = await conn.fetchval("SELECT flavor FROM schema_migrations LIMIT 1")
        finally:
            await conn.close()
        # make run gets the timescale flavor wherever the extension is installed, plain PostgreSQL elsewhere.
        assert flavor == ("timescale" if timescaledb_installed() else "native")
        assert await proc.stop() == 0
        assert not cluster.running(), "the embedded PostgreSQL must stop with the receiver"
        assert "rows_lost" in proc.log_tail()
    finally:
        if proc.proc is not None:
            await proc.kill()
        cluster.destroy()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
