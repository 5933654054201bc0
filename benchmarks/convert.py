"""Conversion cost per span: `python -m benchmarks.convert` prints µs/span and spans/s (one core).

Three requests: loadgen's workload (the one `make bench` sends: chat, embeddings, tool-call and agent
traces, current and legacy GenAI names, 5% large prompts), a uniform GenAI batch (~20 attributes per
span, a 1 KB prompt on every span) and a batch of small non-LLM spans (5 attributes).

Paths: the pure-Python reference (upb decode, then convert_traces; decode is timed separately), the
native converter (convert_traces_bytes: decode and convert in one C pass, and the rows with the GenAI
rules in C, receiver/convert/_genai_rules.c), `native-pyrules` (the same with genai.py's rules and
traces.span_row in Python for every span, as before the rules moved to C), and
the same requests as OTLP/JSON through `decode_request` as the HTTP front end decodes them: `json` (the
C transcoder from JSON bytes to protobuf bytes, receiver/convert/_jsonwire.c, then the native
converter), `json-encoder` (orjson, then the C encoder of its dicts: the JSON path before the
transcoder) and `json-format` (json_format per span, the path before issue 13), each with its ratio to
`native`. `--request logs` / `metrics` (in `all`) run benchmarks.convert_metrics_logs's requests (512
log records; 512 metric points) on `native` (protobuf) and the JSON paths (`json-encoder` and
`json-format` are the same there: json_format), per record / point. Times are CPU time of the benchmark's thread
(the machine may be shared), not wall clock.
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

from llm_observatory_loadgen.bodies import otlp_json
from receiver.convert.budget import DecodeBudget, DecodeLimits
from receiver.convert.common import ConvertOptions
from receiver.convert.price_source import GenaiPrices
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
from receiver.convert.traces_bytes import NATIVE_STATUS, convert_traces_bytes, native_available
from receiver.convert.window import TimeWindow
from receiver.frontends.decode import decode_request
from receiver.frontends.signals import LOGS, METRICS, TRACES
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
SIGNAL_REQUESTS = ("logs", "metrics")
PATHS = ("pure", "native", "native-pyrules", "json", "json-encoder", "json-format")
JSON_FORMAT_TRACES = dataclasses.replace(TRACES, json_wire=False, json_signal=None)  # OTLP/JSON before issue 13
JSON_ENCODER_TRACES = dataclasses.replace(TRACES, json_signal=None)  # orjson + the C encoder of its dicts


def bodies_of(kind: str, spans: int, prompt_bytes: int) -> list[bytes]:
    if kind == "loadgen":
        return loadgen_bodies(spans)
    message = genai_request(spans, prompt_bytes) if kind == "genai" else small_request(spans)
    return [message.SerializeToString()]


def as_json(body: bytes) -> bytes:
    """The same request as OTLP/JSON (hex ids, enums as numbers, int64 as strings), as loadgen sends it."""
    return otlp_json(trace_service_pb2.ExportTraceServiceRequest.FromString(body))


def options(window: bool = True) -> ConvertOptions:
    """As the receiver converts: its default prices (the bundled price file in front of genai-prices;
    matching runs once per (provider, model, day) and is cached, as in the receiver: the first round pays
    for it) and, unless `window` is false, the accepted time window of the default configuration (90-day
    retention, 600 s future skew) around a receive time of now."""
    maintained = GenaiPrices()
    book = PriceBook(read_pricing_file(default_pricing_file()), maintained, maintained.name)
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
    """(decode seconds, convert seconds) of CPU over `rounds` conversions of `bodies` (in turn) on `path`."""
    clock = time.thread_time
    decode_s = convert_s = 0.0
    json = path.startswith("json")
    if json:
        bodies = [as_json(body) for body in bodies]
    spec = {"json-format": JSON_FORMAT_TRACES, "json-encoder": JSON_ENCODER_TRACES}.get(path, TRACES)
    for i in range(rounds):
        body = bodies[i % len(bodies)]
        if bounded or json:
            t1 = clock()
            budget = DecodeBudget(DecodeLimits()) if bounded else None
            converted = decode_request(spec, body, json, dataclasses.replace(opts, budget=budget)).converted
            t2 = clock()
        elif path == "pure":
            t0 = clock()
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            t1 = clock()
            converted = convert_traces(request, opts)
            t2 = clock()
            decode_s += t1 - t0
        else:
            t1 = clock()
            converted = convert_traces_bytes(body, opts)
            t2 = clock()
        convert_s += t2 - t1
        assert len(converted.rows) == spans
    return decode_s, convert_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--prompt-bytes", type=int, default=1024)
    parser.add_argument("--request", choices=[*REQUESTS, *SIGNAL_REQUESTS, "all"], default="all")
    parser.add_argument(
        "--path", action="append", choices=[*PATHS, "both", "all"], help="repeatable; default pure and native"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing (for instruction counting)")
    parser.add_argument("--bounded", action="store_true", help="as the front ends decode: scan + budget")
    parser.add_argument(
        "--no-gc", action="store_true", help="garbage collector off while converting (steadier instruction counts)"
    )
    parser.add_argument("--no-window", action="store_true", help="convert without the accepted time window")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    chosen = args.path or ["both"]
    paths = [p for p in PATHS if p in chosen or "all" in chosen or ("both" in chosen and p in ("pure", "native"))]
    if "native" in paths and not native_available():
        raise SystemExit(f"native converter unavailable: {NATIVE_STATUS}")
    opts = options(window=not args.no_window)
    kinds = [*REQUESTS, *SIGNAL_REQUESTS] if args.request == "all" else [args.request]
    for kind in kinds:
        if kind in SIGNAL_REQUESTS:
            signal_figures(kind, paths, args)
            continue
        bodies = bodies_of(kind, args.spans, args.prompt_bytes)
        size = sum(map(len, bodies)) // len(bodies)
        if not args.quiet:
            print(f"{kind} request: {args.spans} spans, {size:,} bytes ({size // args.spans:,} B/span)")
        totals = {}
        for path in paths:
            path_opts = dataclasses.replace(opts, native=path != "pure", native_rules=path != "native-pyrules")
            decode_s, convert_s = run(path, bodies, args.spans, args.rounds, path_opts, args.bounded)
            n = args.spans * args.rounds
            totals[path] = (decode_s + convert_s) / n
            if not args.quiet:
                if path == "pure" and not args.bounded:
                    what = f"decode {decode_s / n * 1e6:6.2f} + convert {convert_s / n * 1e6:6.2f}"
                else:
                    what = f"decode+convert {convert_s / n * 1e6:6.2f}"
                rate = 1 / totals[path]
                compared = path.startswith("json") or path == "native-pyrules"
                ratio = f" ({totals[path] / totals['native']:.2f}x native)" if compared and "native" in totals else ""
                print(f"  {path:11}: {what} = {totals[path] * 1e6:6.2f} µs/span CPU{ratio}, {rate:,.0f} spans/s")
        if "pure" in totals and "native" in totals and not args.quiet:
            print(f"  native is {totals['pure'] / totals['native']:.1f}x faster than pure")

def signal_figures(kind: str, paths: list[str], args: argparse.Namespace) -> None:
    """Logs or metrics (benchmarks.convert_metrics_logs's requests): µs of CPU per record / point on the
    protobuf native path and the JSON paths, as decode_request runs them."""
    from benchmarks import convert_metrics_logs as signals
    from tests.support.otlp import to_otlp_json

    spec, message, unit = (
        (LOGS, signals.logs_request(args.spans), "record")
        if kind == "logs"
        else (METRICS, signals.metrics_request(args.spans - args.spans % 4), "point")
    )
    items = args.spans if kind == "logs" else args.spans - args.spans % 4
    body, text = message.SerializeToString(), to_otlp_json(message)
    opts = signals.options()
    if not args.quiet:
        print(f"{kind} request: {items} {unit}s, {len(body):,} bytes protobuf, {len(text):,} bytes JSON")
    specs = {"native": spec, "json": spec, "json-encoder": dataclasses.replace(spec, json_signal=None)}
    totals = {}
    for path in [p for p in paths if p in specs]:
        if path == "json-format" and "json-encoder" in paths:
            continue
        json = path.startswith("json")
        rounds = max(1, args.rounds // 4) if path == "json-encoder" else args.rounds
        per_item = signals.cpu_per_item(
            specs[path], text if json else body, items, rounds, dataclasses.replace(opts, native=True), json,
            args.bounded,
        )  # fmt: skip
        totals[path] = per_item
        ratio = f" ({per_item / totals['native']:.2f}x native)" if json and "native" in totals else ""
        label = "json-format" if path == "json-encoder" else path  # logs and metrics had json_format only
        if not args.quiet:
            rate = f"{1 / per_item:,.0f} {unit}s/s"
            print(f"  {label:11}: decode+convert {per_item * 1e6:6.2f} µs/{unit} CPU{ratio}, {rate}")


if __name__ == "__main__":
    main()
