"""Small requests are decoded on the event loop, not queued behind large ones in the decode pool.

A request of a few KB decodes in tens of µs; sending it to a decode thread and back (two wake-ups, the
GIL handed over twice) cost more than that — about a sixth of an OTLP/HTTP 1-span request's CPU — and,
worse, it waited behind whatever the pool was decoding. Requests up to ingest.INLINE_DECODE_MAX_BYTES
(uncompressed) are therefore decoded where they arrive. The test makes the difference visible with one
decode thread: while that thread decodes a request of tens of MB, a 1-span request is answered.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import grpc

from receiver.frontends.ingest import INLINE_DECODE_MAX_BYTES
from tests.support.otlp import TRACE_EXPORT, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until

MIB = 1024 * 1024


async def _export_grpc(target: str, body: bytes) -> None:
    """The serialized request over a real gRPC channel (raises grpc.aio.AioRpcError unless OK)."""
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 128 * MIB)]) as channel:
        await channel.unary_unary(TRACE_EXPORT)(body, timeout=120)


def _large_request(service: str, spans: int) -> bytes:
    """Spans of ~1.4 KB with 12 attributes each: a decode of hundreds of ms."""
    text = "x" * 100
    items = [span(f"large-{i}", attributes={f"attr.{k}": f"{text}{i}" for k in range(12)}) for i in range(spans)]
    return trace_request(items, service).SerializeToString()


async def test_a_small_request_is_answered_while_the_only_decode_thread_is_busy(module_database, tmp_path):
    proc = ReceiverProcess(
        module_database.dsn,
        tmp_path,
        otlp__decode_threads=1,
        pipeline__queue_max_bytes=512 * MIB,
        pipeline__queue_max_rows=400_000,
    )
    await proc.start()
    try:
        service = f"small-{uuid.uuid4().hex[:8]}"
        large = _large_request(service, 40_000)
        small = trace_request([span("small")], service).SerializeToString()
        assert len(small) <= INLINE_DECODE_MAX_BYTES < len(large) <= 64 * MIB

        large_export = asyncio.create_task(_export_grpc(proc.grpc_target, large))

        async def large_being_decoded() -> bool:
            return await proc.metric("observatory_decode_requests") >= 1

        await wait_until(large_being_decoded, timeout=60, what="the large request in the decode thread")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{proc.http_url}/v1/traces", data=small, headers={"Content-Type": "application/x-protobuf"}
            ) as response,
        ):
            assert response.status == 200, await response.text()
        # Answered while the only decode thread still works on the large request: it did not queue there.
        assert not large_export.done()
        await large_export
        await module_database.wait_for_count(
            "SELECT count(*) FROM llm_traces WHERE service_name = $1", 40_001, service
        )
    finally:
        await proc.stop()
