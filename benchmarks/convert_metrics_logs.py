"""Conversion cost per metric data point and per log record: `python -m benchmarks.convert_metrics_logs`
prints µs/point and µs/record (decode and conversion timed separately, one core).

The metrics request is what a GenAI application exports: 512 points — token-usage histograms
(14 explicit bounds, exemplars), exponential duration histograms (~40 buckets), request counters and
gauges, each with 5-6 gen_ai attributes. The logs request holds 512 records: log lines of ~200 bytes
inside spans and gen_ai events whose bodies are maps with a ~500-byte message.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from llm_observatory_loadgen.workload import kv
from receiver.convert.common import ConvertOptions
from receiver.convert.logs import convert_logs
from receiver.convert.metrics import convert_metrics
from receiver.frontends.decode import parse_json
from receiver.frontends.signals import LOGS, METRICS
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


def measure(
    name: str,
    unit: str,
    request: Any,
    items: int,
    convert: Callable[[Any, ConvertOptions], Any],
    envelope: Any,
    rounds: int,
) -> None:
    body = request.SerializeToString()
    json_body = to_otlp_json(request)
    options = ConvertOptions(received_unix_nanos=time.time_ns())
    message_type = type(request)
    decode_s = convert_s = json_s = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        parsed = message_type.FromString(body)
        t1 = time.perf_counter()
        converted = convert(parsed, options)
        t2 = time.perf_counter()
        parse_json(message_type, envelope, json_body)
        t3 = time.perf_counter()
        decode_s += t1 - t0
        convert_s += t2 - t1
        json_s += t3 - t2
        assert len(converted.rows) == items and converted.rejected == 0, converted.errors
    n = items * rounds
    print(f"{name}: {items} {unit}s/request, {len(body)} B protobuf ({len(body) // items} B/{unit})")
    print(f"  decode protobuf : {decode_s / n * 1e6:7.2f} µs/{unit}")
    print(f"  decode OTLP/JSON: {json_s / n * 1e6:7.2f} µs/{unit}")
    print(f"  convert         : {convert_s / n * 1e6:7.2f} µs/{unit}")
    total = decode_s + convert_s
    print(f"  protobuf total  : {total / n * 1e6:7.2f} µs/{unit} = {n / total:,.0f} {unit}s/s on one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=512, help="data points / log records per request")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    points = args.items - args.items % 4
    measure("metrics", "point", metrics_request(points), points, convert_metrics, METRICS.envelope, args.rounds)
    measure("logs", "record", logs_request(args.items), args.items, convert_logs, LOGS.envelope, args.rounds)


if __name__ == "__main__":
    main()
