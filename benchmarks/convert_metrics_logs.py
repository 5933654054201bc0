"""Conversion cost per metric data point and per log record: `python -m benchmarks.convert_metrics_logs`
prints µs of CPU per point and per record (decode + convert, as the front ends do it, one core).

The metrics request is what a GenAI application exports: 512 points — token-usage histograms
(14 explicit bounds, exemplars), exponential duration histograms (~40 buckets), request counters and
gauges, each with 5-6 gen_ai attributes. The logs request holds 512 records: log lines of ~200 bytes
inside spans and gen_ai events whose bodies are maps with a ~500-byte message.

Paths: `pure` (upb's parse, then the pure-Python converter: the reference), `native` (the C decoder
when the signal has one, `convert.native`), `json` (the same request as OTLP/JSON). Times are CPU time
of the benchmark's thread (the machine may be shared), the minimum over `--repeats` runs. The last line
is the target: the native protobuf trace path's µs per span on loadgen's workload, measured in the same
run (`python -m benchmarks.convert --request loadgen`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from benchmarks import convert as convert_bench
from llm_observatory_loadgen.workload import kv
from receiver.convert.budget import DecodeBudget, DecodeLimits
from receiver.convert.common import ConvertOptions
from receiver.convert.window import TimeWindow
from receiver.frontends.decode import decode_path, decode_request
from receiver.frontends.signals import LOGS, METRICS, SignalSpec
from tests.support.otlp import to_otlp_json  # OTLP/JSON as the spec (and SDK JSON exporters) write it

TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
RESOURCE = resource_pb2.Resource(
    attributes=[
        kv("service.name", "bench"),
        kv("deployment.environment.name", "prod"),
        kv("telemetry.sdk.language", "python"),
        kv("telemetry.sdk.version", "1.45.0"),
    ]
)


def genai_attrs(i: int) -> list[common_pb2.KeyValue]:
    return [
        kv("gen_ai.provider.name", "openai"),
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.request.model", "gpt-4o-mini"),
        kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
        kv("server.address", "api.openai.com"),
        kv("app.tenant", f"tenant-{i % 50}"),
    ]


def metrics_request(points: int) -> metrics_service_pb2.ExportMetricsServiceRequest:
    now = time.time_ns()
    quarter = points // 4
    tokens, durations, counters, gauges = [], [], [], []
    for i in range(quarter):
        point = metrics_pb2.HistogramDataPoint(
            start_time_unix_nano=now - 60 * 10**9,
            time_unix_nano=now,
            count=20,
            sum=12345.0 + i,
            min=3,
            max=4000,
            bucket_counts=[0, 1, 2, 3, 4, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            explicit_bounds=TOKEN_BOUNDS,
            attributes=[*genai_attrs(i), kv("gen_ai.token.type", "input" if i % 2 else "output")],
        )
        for _ in range(2):
            point.exemplars.add(time_unix_nano=now, as_int=1000 + i, trace_id=os.urandom(16), span_id=os.urandom(8))
        tokens.append(point)
        durations.append(
            metrics_pb2.ExponentialHistogramDataPoint(
                start_time_unix_nano=now - 60 * 10**9,
                time_unix_nano=now,
                count=40,
                sum=52.5,
                scale=4,
                zero_count=0,
                positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=-20, bucket_counts=[1] * 40),
                min=0.3,
                max=4.2,
                attributes=genai_attrs(i),
            )
        )
        counters.append(
            metrics_pb2.NumberDataPoint(
                start_time_unix_nano=now - 60 * 10**9, time_unix_nano=now, as_int=100 + i, attributes=genai_attrs(i)
            )
        )
        gauges.append(metrics_pb2.NumberDataPoint(time_unix_nano=now, as_double=0.5 + i, attributes=genai_attrs(i)))
    metrics = [
        metrics_pb2.Metric(
            name="gen_ai.client.token.usage",
            unit="{token}",
            histogram=metrics_pb2.Histogram(data_points=tokens, aggregation_temporality=2),
        ),
        metrics_pb2.Metric(
            name="gen_ai.client.operation.duration",
            unit="s",
            exponential_histogram=metrics_pb2.ExponentialHistogram(data_points=durations, aggregation_temporality=2),
        ),
        metrics_pb2.Metric(
            name="llm.requests",
            sum=metrics_pb2.Sum(data_points=counters, aggregation_temporality=2, is_monotonic=True),
        ),
        metrics_pb2.Metric(name="llm.cache.hit_ratio", gauge=metrics_pb2.Gauge(data_points=gauges)),
    ]
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=RESOURCE,
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(scope=common_pb2.InstrumentationScope(name="bench"), metrics=metrics)
                ],
            )
        ]
    )


def logs_request(records: int) -> logs_service_pb2.ExportLogsServiceRequest:
    now = time.time_ns()
    items = []
    for i in range(records):
        record = logs_pb2.LogRecord(
            time_unix_nano=now + i,
            observed_time_unix_nano=now + i + 1000,
            severity_number=9,
            severity_text="INFO",
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            flags=1,
            attributes=[*genai_attrs(i)[:4], kv("code.function.name", "handle_chat"), kv("code.line.number", 42)],
        )
        if i % 2:
            message = common_pb2.KeyValueList(
                values=[kv("role", "assistant"), kv("content", "z" * 500), kv("finish_reason", "stop")]
            )
            record.event_name = "gen_ai.choice"
            record.body.kvlist_value.values.extend(
                [kv("index", 0), common_pb2.KeyValue(key="message", value=common_pb2.AnyValue(kvlist_value=message))]
            )
        else:
            record.body.string_value = f"request {i} completed in 812 ms; " + "x" * 170
        items.append(record)
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=RESOURCE,
                scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name="bench"), log_records=items)],
            )
        ]
    )


PATHS = ("pure", "native", "json")


def options() -> ConvertOptions:
    """As the receiver converts: the default retention windows (37 days for points and records, 600 s of
    future skew) around a receive time of now."""
    window = TimeWindow(retention_s=37 * 86400, max_future_skew_s=600)
    return ConvertOptions(received_unix_nanos=time.time_ns(), windows={"metrics": window, "logs": window})


def cpu_per_item(
    spec: SignalSpec, body: bytes, items: int, rounds: int, opts: ConvertOptions, json: bool, bounded: bool
) -> float:
    """CPU seconds of this thread per item over `rounds` decodes of `body`, as the front ends decode."""
    clock = time.thread_time
    spent = 0.0
    for _ in range(rounds):
        budget = DecodeBudget(DecodeLimits()) if bounded else None
        run_options = dataclasses.replace(opts, budget=budget)
        t0 = clock()
        converted = decode_request(spec, body, json, run_options).converted
        spent += clock() - t0
        assert len(converted.rows) == items and converted.rejected == 0, converted.errors
    return spent / (rounds * items)


def span_reference(rounds: int, repeats: int, bounded: bool) -> float:
    """The target: µs of CPU per span of loadgen's workload on the native protobuf trace path."""
    bodies = convert_bench.loadgen_bodies(512)
    opts = dataclasses.replace(convert_bench.options(), native=True)
    best = math.inf
    for _ in range(repeats):
        decode_s, convert_s = convert_bench.run("native", bodies, 512, rounds, opts, bounded)
        best = min(best, (decode_s + convert_s) / (512 * rounds))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=512, help="data points / log records per request")
    parser.add_argument("--rounds", type=int, default=20, help="requests decoded per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="the minimum over this many repeats is printed")
    parser.add_argument("--path", action="append", choices=[*PATHS, "all"], help="repeatable; default pure and native")
    parser.add_argument("--bounded", action="store_true", help="as the front ends decode: scan + budget")
    parser.add_argument("--no-reference", action="store_true", help="skip the protobuf span figure (the target)")
    parser.add_argument("--signal", choices=["metrics", "logs", "both"], default="both")
    parser.add_argument("--quiet", action="store_true", help="print nothing (for instruction counting)")
    args = parser.parse_args()
    chosen = args.path or ["pure", "native"]
    paths = [p for p in PATHS if p in chosen or "all" in chosen]
    opts = options()
    points = args.items - args.items % 4
    requests = []
    if args.signal in ("metrics", "both"):
        requests.append((METRICS, metrics_request(points), points, "point"))
    if args.signal in ("logs", "both"):
        requests.append((LOGS, logs_request(args.items), args.items, "record"))
    say = (lambda *_: None) if args.quiet else print
    say(
        f"CPU time per item, minimum of {args.repeats} repeats of {args.rounds} requests"
        + (", bounded" if args.bounded else "")
    )
    for spec, message, items, unit in requests:
        body = message.SerializeToString()
        say(f"{spec.name}: {items} {unit}s/request, {len(body):,} B protobuf ({len(body) // items} B/{unit})")
        for path in paths:
            json = path == "json"
            run_options = dataclasses.replace(opts, native=path != "pure")
            data = to_otlp_json(message) if json else body
            rounds = max(1, args.rounds // 10) if json else args.rounds
            best = min(
                cpu_per_item(spec, data, items, rounds, run_options, json, args.bounded) for _ in range(args.repeats)
            )
            decoder = "json" if json else decode_path(spec, run_options)
            say(f"  {path:7} ({decoder:6}): {best * 1e6:7.2f} µs/{unit} CPU = {1 / best:,.0f} {unit}s/s on one core")
    if not args.no_reference:
        reference = span_reference(args.rounds, args.repeats, args.bounded)
        say(f"target: protobuf spans, native (loadgen's workload): {reference * 1e6:.2f} µs/span CPU")


if __name__ == "__main__":
    main()
