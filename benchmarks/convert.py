"""Conversion cost per span: `python -m benchmarks.convert` prints µs/span and spans/s (one core).

Three requests: loadgen's workload (the one `make bench` sends: chat, embeddings, tool-call and agent
traces, current and legacy GenAI names, 5% large prompts), a uniform GenAI batch (~20 attributes per
span, a 1 KB prompt on every span) and a batch of small non-LLM spans (5 attributes).

Two paths: the pure-Python reference (upb decode, then convert_traces; decode is timed separately) and
the native converter (convert_traces_bytes: decode and convert in one C pass, then the rows in Python).
`--bounded` runs them as the front ends do since issue 9 (`decode_request` under a budget: the wire
scan, the charges), so the difference is what bounding a request costs.
`python -m benchmarks.instructions` counts instructions per span for the same runs under callgrind,
which unlike time is stable on shared cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert.budget import DecodeBudget, DecodeLimits
from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
from receiver.convert.traces_bytes import NATIVE_STATUS, convert_traces_bytes, native_available
from receiver.convert.window import TimeWindow
from receiver.frontends.decode import decode_request
from receiver.frontends.signals import TRACES
from receiver.storage.pricing_store import default_pricing_file, read_pricing_file


def kv(key: str, value: object) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        v = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        v = common_pb2.AnyValue(double_value=value)
    else:
        v = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=v)


def _request(items: list[trace_pb2.Span]) -> trace_service_pb2.ExportTraceServiceRequest:
    resource = resource_pb2.Resource(
        attributes=[
            kv("service.name", "bench"),
            kv("deployment.environment.name", "prod"),
            kv("telemetry.sdk.language", "python"),
            kv("telemetry.sdk.version", "1.30.0"),
        ]
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource,
                scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="bench"), spans=items)],
            )
        ]
    )


def genai_request(spans: int = 512, prompt_bytes: int = 1024) -> trace_service_pb2.ExportTraceServiceRequest:
    now = time.time_ns()
    items = []
    trace_id = os.urandom(16)
    for i in range(spans):
        if i % 4 == 0:
            trace_id = os.urandom(16)
        attrs = [
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.request.model", "gpt-4o-mini"),
            kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            kv("gen_ai.request.temperature", 0.7),
            kv("gen_ai.request.max_tokens", 1024),
            kv("gen_ai.usage.input_tokens", 1000 + i),
            kv("gen_ai.usage.output_tokens", 200 + i),
            kv("gen_ai.response.id", f"chatcmpl-{i:08d}"),
            kv("gen_ai.response.finish_reasons", "stop"),
            kv("user.id", f"user-{i % 50}"),
            kv("session.id", f"session-{i % 200}"),
            kv("server.address", "api.openai.com"),
            kv("server.port", 443),
            kv("http.response.status_code", 200),
            kv("gen_ai.conversation.id", f"conv-{i % 100}"),
            kv("app.feature", "support-bot"),
            kv("app.tenant", f"tenant-{i % 7}"),
            kv("gen_ai.input.messages", "x" * prompt_bytes),
            kv("gen_ai.output.messages", "y" * (prompt_bytes // 4)),
        ]
        items.append(
            trace_pb2.Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                parent_span_id=os.urandom(8) if i % 4 else b"",
                name="chat gpt-4o-mini",
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 850_000_000,
                attributes=attrs,
            )
        )
    return _request(items)


def small_request(spans: int = 512) -> trace_service_pb2.ExportTraceServiceRequest:
    """Plain service spans (no LLM attributes): HTTP handlers and database calls, 5 attributes each."""
    now = time.time_ns()
    items = []
    for i in range(spans):
        attrs = [
            kv("http.request.method", "GET"),
            kv("http.route", "/api/v1/items/{id}"),
            kv("http.response.status_code", 200),
            kv("server.address", "api.internal"),
            kv("thread.id", 1000 + i % 8),
        ]
        items.append(
            trace_pb2.Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                parent_span_id=os.urandom(8),
                name="GET /api/v1/items/{id}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 3_000_000,
                attributes=attrs,
            )
        )
    return _request(items)


def loadgen_bodies(spans: int, large_share: float = 0.05, large_bytes: int = 16384) -> list[bytes]:
    """Eight request bodies of loadgen's workload, as `make bench` sends them."""
    from llm_observatory_loadgen.bodies import build_pool
    from llm_observatory_loadgen.ids import RunId
    from llm_observatory_loadgen.workload import WorkloadSpec

    spec = WorkloadSpec(batch_spans=spans, large_share=large_share, large_bytes=large_bytes)
    pool = build_pool(spec, RunId.new(), "protobuf", 8, 1)
    return [entry.traces.render(k + 1) for k, entry in enumerate(pool.entries)]


REQUESTS = ("loadgen", "genai", "small")


def bodies_of(kind: str, spans: int, prompt_bytes: int) -> list[bytes]:
    if kind == "loadgen":
        return loadgen_bodies(spans)
    message = genai_request(spans, prompt_bytes) if kind == "genai" else small_request(spans)
    return [message.SerializeToString()]


def options(window: bool = True) -> ConvertOptions:
    """As the receiver converts: its prices and, unless `window` is false, the accepted time window of the
    default configuration (90-day retention, 600 s future skew) around a receive time of now."""
    book = PriceBook(read_pricing_file(default_pricing_file()))
    if not window:
        return ConvertOptions(price_book=book)
    received = time.time_ns()
    return ConvertOptions(
        price_book=book,
        received_unix_nanos=received,
        windows={"traces": TimeWindow(retention_s=90 * 86400, max_future_skew_s=600)},
    )


def run(
    path: str, bodies: list[bytes], spans: int, rounds: int, opts: ConvertOptions, bounded: bool = False
) -> tuple[float, float]:
    """(decode seconds, convert seconds) over `rounds` conversions of `bodies` (in turn) on `path`."""
    decode_s = convert_s = 0.0
    for i in range(rounds):
        body = bodies[i % len(bodies)]
        if bounded:
            t1 = time.perf_counter()
            budget = DecodeBudget(DecodeLimits())
            converted = decode_request(TRACES, body, False, dataclasses.replace(opts, budget=budget)).converted
            t2 = time.perf_counter()
        elif path == "pure":
            t0 = time.perf_counter()
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            t1 = time.perf_counter()
            converted = convert_traces(request, opts)
            t2 = time.perf_counter()
            decode_s += t1 - t0
        else:
            t1 = time.perf_counter()
            converted = convert_traces_bytes(body, opts)
            t2 = time.perf_counter()
        convert_s += t2 - t1
        assert len(converted.rows) == spans
    return decode_s, convert_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--prompt-bytes", type=int, default=1024)
    parser.add_argument("--request", choices=[*REQUESTS, "all"], default="all")
    parser.add_argument("--path", choices=["pure", "native", "both"], default="both")
    parser.add_argument("--quiet", action="store_true", help="print nothing (for instruction counting)")
    parser.add_argument("--bounded", action="store_true", help="as the front ends decode: scan + budget")
    parser.add_argument(
        "--no-gc", action="store_true", help="garbage collector off while converting (steadier instruction counts)"
    )
    parser.add_argument("--no-window", action="store_true", help="convert without the accepted time window")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    paths = ["pure", "native"] if args.path == "both" else [args.path]
    if "native" in paths and not native_available():
        raise SystemExit(f"native converter unavailable: {NATIVE_STATUS}")
    opts = options(window=not args.no_window)
    for kind in REQUESTS if args.request == "all" else [args.request]:
        bodies = bodies_of(kind, args.spans, args.prompt_bytes)
        size = sum(map(len, bodies)) // len(bodies)
        if not args.quiet:
            print(f"{kind} request: {args.spans} spans, {size:,} bytes ({size // args.spans:,} B/span)")
        totals = {}
        for path in paths:
            decode_s, convert_s = run(
                path, bodies, args.spans, args.rounds, dataclasses.replace(opts, native=path == "native"), args.bounded
            )
            n = args.spans * args.rounds
            totals[path] = (decode_s + convert_s) / n
            if not args.quiet:
                if path == "pure" and not args.bounded:
                    what = f"decode {decode_s / n * 1e6:6.2f} + convert {convert_s / n * 1e6:6.2f}"
                else:
                    what = f"decode+convert {convert_s / n * 1e6:6.2f}"
                rate = 1 / totals[path]
                print(f"  {path:6}: {what} = {totals[path] * 1e6:6.2f} µs/span = {rate:,.0f} spans/s on one core")
        if len(totals) == 2 and not args.quiet:
            print(f"  native is {totals['pure'] / totals['native']:.1f}x faster")


if __name__ == "__main__":
    main()
