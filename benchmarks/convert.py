"""Conversion cost per span: `python -m benchmarks.convert` prints µs/span and spans/s (one core).

The requests are loadgen's (the same workload `make bench` sends): 512-span batches of chat,
embeddings, tool-call and agent traces, current and legacy GenAI attribute names, 5% large prompts.
Decoding (ParseFromString) is timed separately from conversion, in process, with no I/O: the figure to
profile when the end-to-end number of `make bench` says the receiver's CPU is the limit.
"""

from __future__ import annotations

import argparse
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from loadgen.bodies import build_pool
from loadgen.ids import RunId
from loadgen.workload import WorkloadSpec
from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
from receiver.storage.pricing_store import default_pricing_file, read_pricing_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512, help="spans per request (512)")
    parser.add_argument("--rounds", type=int, default=40, help="requests converted (40)")
    parser.add_argument("--large-share", type=float, default=0.05, help="share of large LLM payloads (0.05)")
    parser.add_argument("--large-bytes", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    spec = WorkloadSpec(batch_spans=args.spans, large_share=args.large_share, large_bytes=args.large_bytes)
    pool = build_pool(spec, RunId.new(), "protobuf", 8, args.seed)
    bodies = [entry.traces.render(k + 1) for k, entry in enumerate(pool.entries)]
    options = ConvertOptions(price_book=PriceBook(read_pricing_file(default_pricing_file())))
    decode_s = convert_s = 0.0
    for i in range(args.rounds):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        t1 = time.perf_counter()
        converted = convert_traces(request, options)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        convert_s += t2 - t1
        assert len(converted.rows) == args.spans
    n = args.spans * args.rounds
    print(f"requests: {args.spans} spans, {pool.body_bytes:,} bytes on average ({pool.bytes_per_span:,} B/span)")
    print(f"decode : {decode_s / n * 1e6:7.2f} µs/span")
    print(f"convert: {convert_s / n * 1e6:7.2f} µs/span")
    total_s = decode_s + convert_s
    print(f"total  : {total_s / n * 1e6:7.2f} µs/span = {n / total_s:,.0f} spans/s on one core")


if __name__ == "__main__":
    main()
