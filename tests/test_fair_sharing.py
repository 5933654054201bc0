"""A flood of metrics cannot starve spans: one queue and one writer pool, shared fairly per table.

The database is made to stall metric writes for real (the test holds `LOCK TABLE llm_metrics IN
ACCESS EXCLUSIVE MODE` in an open transaction), metrics are exported until the receiver refuses them
with UNAVAILABLE + RetryInfo, and spans and logs must still be accepted *and land* meanwhile. When the
lock goes, every acknowledged metric point lands exactly once and no refused one does.
"""

from __future__ import annotations

import uuid

import grpc

from tests.support.load import retry_delay_from_grpc as retry_delay
from tests.support.otlp import (
    export_grpc,
    gauge,
    log_record,
    log_request,
    metric_request,
    number_point,
    span,
    trace_request,
)
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until

POINTS_PER_REQUEST = 50


def flood_request(service: str, request_no: int):
    points = [number_point(float(i), attributes={"request": request_no, "i": i}) for i in range(POINTS_PER_REQUEST)]
    return metric_request([gauge("flood.value", points)], service)


async def test_metric_flood_against_a_stalled_table_does_not_starve_spans(database, tmp_path):
    proc = ReceiverProcess(
        database.dsn,
        tmp_path,
        pipeline__writers=2,
        pipeline__max_share=0.5,
        pipeline__queue_max_rows=1000,
        pipeline__queue_max_bytes=16 * 1024 * 1024,
        pipeline__batch_max_rows=100,
    )
    await proc.start()
    service = f"flood-{uuid.uuid4().hex[:8]}"
    locker = await database.connect()
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE llm_metrics IN ACCESS EXCLUSIVE MODE")

        acknowledged: list[int] = []
        refusal: grpc.aio.AioRpcError | None = None
        for request_no in range(200):  # the metrics lane holds 500 rows: refusal comes after ~10
            try:
                response = await export_grpc(proc.grpc_target, flood_request(service, request_no))
            except grpc.aio.AioRpcError as exc:
                refusal = exc
                break
            assert not response.HasField("partial_success")
            acknowledged.append(request_no)
        assert refusal is not None, "the metric flood was never refused"
        assert refusal.code() == grpc.StatusCode.UNAVAILABLE
        assert retry_delay(refusal) is not None
        assert acknowledged, "no metric export was accepted before the lane filled"

        # Metric writes are stuck behind the lock, yet spans and logs are accepted and land.
        for i in range(5):
            await export_grpc(proc.grpc_target, trace_request([span(f"s{i}-{j}") for j in range(10)], service))
        await export_grpc(proc.grpc_target, log_request([log_record(f"line {i}") for i in range(20)], service))
        await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 50, service)
        await database.wait_for_count("SELECT count(*) FROM llm_logs WHERE service_name = $1", 20, service)
        assert await database.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == 50
        # ... while metrics are still refused: the lane is still full.
        try:
            await export_grpc(proc.grpc_target, flood_request(service, 10_000))
            raise AssertionError("a metric export was accepted while the metrics lane was full")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE

        await lock.rollback()  # the database takes metric writes again

        expected = len(acknowledged) * POINTS_PER_REQUEST
        await database.wait_for_count(
            "SELECT count(*) FROM llm_metrics WHERE service_name = $1", expected, service, timeout=60
        )

        async def drained() -> bool:
            return await proc.metric("otelcol_exporter_queue_size") == 0

        await wait_until(drained, what="the receiver's queue to drain")
        rows = await database.fetch(
            "SELECT (attributes->>'request')::int AS request_no, count(*) AS n, count(DISTINCT point_id) AS ids "
            "FROM llm_metrics WHERE service_name = $1 GROUP BY 1 ORDER BY 1",
            service,
        )
        assert [r["request_no"] for r in rows] == acknowledged  # refused requests never landed
        assert all(r["n"] == POINTS_PER_REQUEST and r["ids"] == POINTS_PER_REQUEST for r in rows)
        assert await proc.metric("otelcol_receiver_accepted_metric_points_total") == expected
        # Both refusals are counted, and were made before decoding (the lane's room is judged from the
        # rows earlier requests of the signal had): nothing was converted only to be refused.
        refused = 'otelcol_receiver_requests_total{outcome="refused",signal="metrics",transport="grpc"}'
        assert await proc.metric(refused) == 2
        assert await proc.metric("otelcol_exporter_enqueue_failed_metric_points_total") == 0
    finally:
        if not locker.is_closed():
            await locker.close()
        assert await proc.stop() == 0
