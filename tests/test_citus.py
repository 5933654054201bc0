"""The native flavor on Citus: a coordinator and two workers on loopback (built from source where this
runs; skipped where Citus is not installed, as on CI).

One receiver writes into the Citus cluster, another into a plain single-node database, from the same
requests: the signal tables are distributed (traces by trace_id, metrics by point_id, logs by record_id)
with rows on both workers, retried requests are stored once, partitions are created by maintenance,
and the rollups on Citus equal the single-node rollups row for row.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from receiver.storage.copy import CopyResult, copy_rows
from receiver.storage.errors import ErrorKind, classify
from tests.conftest import create_database
from tests.support.otlp import (
    T0,
    export_grpc,
    export_http,
    gauge,
    log_record,
    log_request,
    metric_request,
    number_point,
    span,
    trace_request,
)
from tests.support.process import ReceiverProcess
from tests.support.spans import assert_rollups_match_raw
from tests.support.wait import wait_until

pytestmark = pytest.mark.citus

MODELS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o-mini")]
ROLLUPS = ("llm_metrics_1min", "llm_metrics_1hour", "llm_metrics_1day", "cost_analysis_hourly")


def requests(service: str) -> list:
    out = []
    for i in range(12):
        provider, model = MODELS[i % len(MODELS)]
        spans = [
            span(
                f"chat {model}",
                attributes={
                    "gen_ai.provider.name": provider,
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 100 + i * 7 + k,
                    "gen_ai.usage.output_tokens": 10 + k,
                    "user.id": f"user-{k % 3}",
                },
            )
            for k in range(10)
        ]
        out.append(trace_request(spans, service))
    return out


async def export_all(proc: ReceiverProcess, traces: list, service: str) -> None:
    for i, request in enumerate(traces):
        if i % 2:
            await export_grpc(proc.grpc_target, request)
        else:
            result, _ = await export_http(proc.http_url, request)
            assert result.status == 200
    await export_grpc(proc.grpc_target, log_records(service))
    points = [number_point(float(i), time_ns=T0 + i * 1_000_000_000) for i in range(20)]
    await export_grpc(proc.grpc_target, metric_request([gauge("gen_ai.test.gauge", points)], service))


TRACE_IDS = [uuid.uuid4().bytes for _ in range(10)]


def log_records(service: str):
    """The same records for both receivers, half of them with a trace id."""
    records = [
        log_record(f"log {i}", time_ns=T0 + i, **({"trace_id": TRACE_IDS[i // 2]} if i % 2 else {})) for i in range(20)
    ]
    return log_request(records, service)


async def rollup_rows(database, view: str) -> list[tuple]:
    rows = await database.fetch(f"SELECT * FROM {view}")
    return sorted((tuple(r.values()) for r in rows), key=repr)


async def check_copy_errors_on_citus(database) -> None:
    """Citus reports every worker error in a COPY as XX000; copy_rows takes the staging path for it, which
    skips a duplicate but still raises a bad row's own error (23502 here), so it is quarantined, not retried."""
    conn = await database.connect()
    try:
        stored = dict(await conn.fetchrow("SELECT * FROM llm_logs LIMIT 1"))
        columns = list(stored)
        assert await copy_rows(conn, "llm_logs", columns, [tuple(stored.values())]) == CopyResult(0, 1, True)

        bad = {**stored, "record_id": uuid.uuid4(), "severity_number": None}
        with pytest.raises(asyncpg.InternalServerError):  # what the fast path sees on Citus
            await conn.copy_records_to_table("llm_logs", records=[tuple(bad.values())], columns=columns)
        with pytest.raises(asyncpg.NotNullViolationError) as refused:
            await copy_rows(conn, "llm_logs", columns, [tuple(bad.values())])
        assert classify(refused.value) is ErrorKind.DATA
    finally:
        await conn.close()


async def test_native_flavor_on_citus(citus_cluster, pg_cluster, tmp_path):
    distributed = await citus_cluster.create_database()
    single = await create_database(pg_cluster)
    settings = {
        "maintenance__interval_s": 1,
        "maintenance__rollup_delay_s": 0,
        # Few partitions: each one is citus.shard_count tables on the workers, created by the first pass.
        "maintenance__partition_hours": 24,
        "maintenance__partition_days_ahead": 1,
    }
    on_citus = ReceiverProcess(distributed.dsn, tmp_path / "citus", **settings)
    on_single = ReceiverProcess(single.dsn, tmp_path / "single", **settings)
    for proc in (on_citus, on_single):
        proc.workdir.mkdir()
    # The first maintenance pass creates every partition's shards on the workers before the receiver is ready.
    await asyncio.gather(on_citus.start(wait_ready=False), on_single.start())
    await on_citus.wait_ready(timeout=180)
    try:
        tables = {
            r["table_name"]: (r["citus_table_type"], r["distribution_column"])
            for r in await distributed.fetch(
                "SELECT table_name::text, citus_table_type, distribution_column FROM citus_tables"
            )
        }
        assert tables["llm_traces"] == ("distributed", "trace_id")
        assert tables["llm_metrics"] == ("distributed", "point_id")
        assert tables["llm_logs"] == ("distributed", "record_id")
        for reference in ("model_pricing", "api_keys", "projects", "users", "dead_letters"):
            assert tables[reference][0] == "reference", reference
        # today's and the coming days' partitions, created by maintenance after distribution, are distributed
        partitions = [t for t in tables if t.startswith("llm_traces_p")]
        assert partitions and all(tables[p] == ("distributed", "trace_id") for p in partitions)

        service = f"citus-{uuid.uuid4().hex[:6]}"
        traces = requests(service)
        await asyncio.gather(export_all(on_citus, traces, service), export_all(on_single, traces, service))
        await export_grpc(on_citus.grpc_target, traces[1])  # a client retry of an acknowledged request
        await export_grpc(on_citus.grpc_target, traces[3])
        sent = sum(len(r.resource_spans[0].scope_spans[0].spans) for r in traces)
        for database, proc in ((distributed, on_citus), (single, on_single)):
            try:
                await database.wait_for_count(
                    "SELECT count(*) FROM llm_traces WHERE service_name = $1", sent, service, timeout=120
                )
                await database.wait_for_count("SELECT count(*) FROM llm_logs", 20, timeout=120)
                await database.wait_for_count("SELECT count(*) FROM llm_metrics", 20, timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nreceiver log:\n{proc.log_tail(60)}") from None

        # The two retries (20 spans) reach the writers' idempotent path: the COPY is refused as a duplicate
        # (XX000 on Citus), then INSERT … ON CONFLICT DO NOTHING skips them. Only then is the count final.
        async def retries_skipped() -> bool:
            return await on_citus.metric("storage_duplicate_rows_skipped_total") >= 20

        await wait_until(retries_skipped, timeout=60, what=lambda: f"20 duplicates skipped\n{on_citus.log_tail(30)}")
        assert await on_citus.metric("storage_duplicate_rows_skipped_total") == 20
        assert await distributed.fetchval("SELECT count(DISTINCT (trace_id, span_id)) FROM llm_traces") == sent
        assert await distributed.fetchval("SELECT count(*) FROM llm_traces") == sent  # retries stored once

        # Rows on both workers: the node of each trace id's shard.
        placements = {
            r["shardid"]: r["nodeport"]
            for r in await distributed.fetch(
                "SELECT shardid, nodeport FROM citus_shards WHERE table_name = 'llm_traces'::regclass"
            )
        }
        nodes: dict[int, int] = {}
        for r in await distributed.fetch("SELECT trace_id, count(*) AS n FROM llm_traces GROUP BY trace_id"):
            shard = await distributed.fetchval(
                "SELECT get_shard_id_for_distribution_column('llm_traces', $1::uuid)", r["trace_id"]
            )
            nodes[placements[shard]] = nodes.get(placements[shard], 0) + r["n"]
        assert set(nodes) == {w.port for w in citus_cluster.workers}, nodes

        await check_copy_errors_on_citus(distributed)

        for database in (distributed, single):
            await database.wait_for_count(
                "SELECT coalesce(sum(request_count), 0) FROM llm_metrics_1min", sent, timeout=120
            )
        for view in ROLLUPS:
            assert await rollup_rows(distributed, view) == await rollup_rows(single, view), view
        conn = await distributed.connect()
        try:
            await assert_rollups_match_raw(conn)
        finally:
            await conn.close()
    finally:
        assert await on_citus.stop() == 0
        assert await on_single.stop() == 0
