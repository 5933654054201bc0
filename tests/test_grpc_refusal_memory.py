"""A refused OTLP/gRPC request lets go of its body as soon as it is answered.

grpc.aio's `context.abort` raises inside the handler and keeps the exception on the call's state; the
exception's traceback holds the handler's frame, and with it the request body, in a reference cycle
that only the cyclic garbage collector breaks. The receiver runs that collector rarely (few container
objects per row, and a first-generation threshold of 10,000), so under overload every refused body
stayed in memory for a while: 155 bodies of 850 KB, 133 MB, at the peak of a 2x overload (memray).
Refusals are now answered without raising. Measured by the process's peak resident memory (VmHWM), the
number an operator's container limit sees. Both gRPC engines (otlp.grpc_engine) are held to it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from receiver.frontends import grpc_native
from tests.support.otlp import TRACE_EXPORT
from tests.support.process import ReceiverProcess
from tests.support.procmem import reset_peak, status_bytes

BODY_BYTES = 1024 * 1024
REQUESTS = 240
CONCURRENCY = 8


@pytest.mark.parametrize("engine", ["grpcio", "nghttp2"])
async def test_refused_grpc_bodies_are_freed_without_the_garbage_collector(database, tmp_path, engine):
    # auth.mode = api_key and no key presented: every request is refused (UNAUTHENTICATED) by the handler
    # after grpc has handed it the whole body.
    if engine == "nghttp2" and not grpc_native.available():
        pytest.skip("receiver.frontends._h2grpc is not built")
    proc = ReceiverProcess(database.dsn, tmp_path, auth__mode="api_key", otlp__grpc_engine=engine)
    await proc.start()
    assert proc.proc is not None
    body = b"\x0a" + bytes(BODY_BYTES - 1)  # never parsed: refused before decoding
    codes: list[grpc.StatusCode] = []
    async with grpc.aio.insecure_channel(
        proc.grpc_target, options=[("grpc.max_send_message_length", 2 * BODY_BYTES)]
    ) as channel:
        export = channel.unary_unary(TRACE_EXPORT)  # raw bytes in, raw bytes out

        async def send(count: int) -> None:
            for _ in range(count):
                try:
                    await export(body, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())

        await send(CONCURRENCY)  # warm: the channel, grpc's buffers, the handler's first allocations
        before = status_bytes(proc.proc.pid, "VmRSS")
        reset_peak(proc.proc.pid)
        await asyncio.gather(*(send(REQUESTS // CONCURRENCY) for _ in range(CONCURRENCY)))
        grown = status_bytes(proc.proc.pid, "VmHWM") - before
    print(f"{REQUESTS} refused 1 MiB gRPC requests: peak RSS grew {grown / 2**20:.1f} MiB")
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * (REQUESTS + CONCURRENCY)
    # 240 MB were sent; at most CONCURRENCY bodies are being handled at once (each held by grpc and by
    # the handler: ~2 MB). Kept until a garbage collection, they would add up to far more than this.
    assert grown < 48 * 1024 * 1024, f"peak RSS grew {grown / 2**20:.0f} MiB over {REQUESTS} refused 1 MiB requests"
    assert await proc.stop() == 0
