"""Simple end-to-end figure: `python -m benchmarks.e2e` starts a throwaway PostgreSQL and a receiver,
sends prebuilt GenAI requests over OTLP/gRPC as fast as acknowledgements come back, and reports
acknowledged spans/s and landed spans/s (time until the last row is committed). loadgen (issue 6)
is the full tool; this is the quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc

from benchmarks.convert import genai_request
from receiver.storage.embedded import EmbeddedPostgres
from tests.support.process import ReceiverProcess

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


async def run(requests: int, spans: int, concurrency: int, prompt_bytes: int, native: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="llmobs-bench-"))
    os.chmod(root, 0o755)
    cluster = EmbeddedPostgres(root / "pg", port=55433)
    dsn = cluster.start()
    proc = ReceiverProcess(dsn, root, convert__native=str(native).lower())
    try:
        await proc.start()
        bodies = []
        for _ in range(requests):
            bodies.append(genai_request(spans, prompt_bytes).SerializeToString())
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        refused = 0

        async def worker() -> None:
            nonlocal refused
            async with grpc.aio.insecure_channel(proc.grpc_target) as channel:
                call = channel.unary_unary(EXPORT)
                while not queue.empty():
                    body = queue.get_nowait()
                    while True:
                        try:
                            await call(body, timeout=60)
                            break
                        except grpc.aio.AioRpcError as exc:
                            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                                raise
                            refused += 1
                            await asyncio.sleep(0.05)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        acked = time.perf_counter() - started
        total = requests * spans
        conn = await asyncpg.connect(dsn)
        while await conn.fetchval("SELECT count(*) FROM llm_traces") < total:
            await asyncio.sleep(0.02)
        landed = time.perf_counter() - started
        await conn.close()
        print(
            f"{total} spans ({requests} requests x {spans}, ~{len(bodies[0]) // spans} B/span), "
            f"concurrency {concurrency}, retried refusals {refused}, converter {'native' if native else 'python'}"
        )
        print(f"acknowledged: {total / acked:,.0f} spans/s ({acked:.2f} s)")
        print(f"landed      : {total / landed:,.0f} spans/s ({landed:.2f} s)")
    finally:
        await proc.stop()
        cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompt-bytes", type=int, default=1024)
    parser.add_argument("--converter", choices=["native", "python"], default="native", help="convert.native")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.spans, args.concurrency, args.prompt_bytes, args.converter == "native"))


if __name__ == "__main__":
    main()
