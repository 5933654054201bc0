"""The receiver's own fixed cost of one small export: `Ingest.handle` on loadgen's 1-span bodies, with
no socket and no database (what the front ends add on top is what `benchmarks.transport_floor` and
`make bench --small-only` show).

    python -m benchmarks.request_path [--requests 20000] [--spans 1] [--rounds 3]

The receiver's pipeline is assembled as `run` assembles it (Receiver._assemble_pipeline; nothing
started, nothing connected); the queue is drained every 1,000 requests as the writers drain it (take,
complete: the COPY itself is left out). Prints µs per request for each round. Under callgrind the
difference of two request counts gives instructions per request, free of the machine's noise:
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.request_path --requests N
"""

from __future__ import annotations

import argparse
import time

from benchmarks.convert import loadgen_bodies
from receiver.app.config import load_config
from receiver.app.service import Receiver
from receiver.frontends.outcomes import Accepted
from receiver.frontends.signals import TRACES
from receiver.storage.database import Database

DRAIN_EVERY = 1000


async def run(requests: int, spans: int, rounds: int) -> list[float]:
    receiver = Receiver(load_config(None, env={}))
    receiver.database = Database("postgresql://unused@127.0.0.1:1/unused", 1.0)  # never connected
    ingest = receiver._assemble_pipeline()
    queue = receiver.queue
    bodies = loadgen_bodies(spans, large_share=0.0)

    async def drain() -> None:
        while queue.rows:
            batch = await queue.take(5000, 0.0)
            assert batch is not None
            queue.complete(batch)

    async def requests_of(n: int) -> None:
        for i in range(n):
            outcome = await ingest.handle(TRACES, bodies[i % len(bodies)], json=False, gzip=False, transport="grpc")
            assert isinstance(outcome, Accepted), outcome
            if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                await drain()
        await drain()

    await requests_of(min(requests, 2000))  # warm up: imports, caches, the rows-per-byte estimate
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        await requests_of(requests)
        figures.append((time.process_time() - started) / requests * 1e6)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--spans", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import uvloop

    figures = uvloop.run(run(args.requests, args.spans, args.rounds))
    print(
        f"Ingest.handle, {args.spans}-span loadgen requests: "
        + ", ".join(f"{f:.1f}" for f in figures)
        + " us of CPU per request (no socket, no COPY)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
