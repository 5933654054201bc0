"""Metrics end to end: the OpenTelemetry SDK's OTLP metric exporters (gRPC and HTTP) and raw OTLP
(protobuf and OTLP/JSON) through a real receiver into real PostgreSQL rows, value by value."""

from __future__ import annotations

import bisect
import math
import uuid
from collections import Counter

import orjson
import pytest
from opentelemetry.metrics import Observation
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.support.idempotency import assert_retry_stored_once, duplicates_skipped
from tests.support.otlp import (
    T0,
    attrs,
    export_grpc,
    export_http,
    gauge,
    histogram,
    metric_request,
    monotonic_sum,
    number_point,
    sdk_metric_exporter,
)

# gen_ai.client.token.usage: the semantic conventions' recommended bucket boundaries.
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
TTFT_BOUNDS = [0.01, 0.1, 1.0, 10.0]
ROWS = "SELECT * FROM llm_metrics WHERE service_name = $1"
COUNT = "SELECT count(*) FROM llm_metrics WHERE service_name = $1"
Buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
Quantile = metrics_pb2.SummaryDataPoint.ValueAtQuantile


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def explicit_counts(values: list[float], bounds: list[float]) -> list[int]:
    """Bucket i holds (bounds[i-1], bounds[i]]: the OTLP rule, computed independently of the SDK."""
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    return counts


def exponential_index(value: float, scale: int) -> int:
    """Bucket index of a positive value: bucket i holds (base^i, base^(i+1)], base = 2^(2^-scale)."""
    return math.ceil(math.log2(value) * 2**scale) - 1


def record_genai_metrics(meter, tracer, common: dict[str, object]) -> dict[str, object]:
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}", description="tokens used")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    ttft = meter.create_histogram(
        "gen_ai.server.time_to_first_token", unit="s", explicit_bucket_boundaries_advisory=TTFT_BOUNDS
    )
    requests = meter.create_counter("llm.requests")
    inflight = meter.create_up_down_counter("llm.inflight")
    temperature = meter.create_gauge("llm.temperature")
    meter.create_observable_gauge("llm.queue_depth", callbacks=[lambda _options: [Observation(7, {"queue": "a"})]])
    with tracer.start_as_current_span("chat") as span:
        tokens.record(1200, {**common, "gen_ai.token.type": "input"})
        tokens.record(300, {**common, "gen_ai.token.type": "output"})
        tokens.record(5, {**common, "gen_ai.token.type": "output"})
        for seconds in (0.8, 1.6, 3.2, 0.3):
            duration.record(seconds, common)
    for seconds in (0.05, 0.5, 20.0):
        ttft.record(seconds, common)
    requests.add(5, common)
    requests.add(7, common)
    inflight.add(10)
    inflight.add(-3)
    temperature.set(0.7, {"gen_ai.request.model": "gpt-4o"})
    return {"span": span.get_span_context()}


@pytest.mark.parametrize(("protocol", "temporality"), [("grpc", "cumulative"), ("http", "delta")])
async def test_sdk_metrics_of_every_type_are_stored_value_by_value(receiver, module_database, protocol, temporality):
    service = unique(f"sdk-{protocol}")
    preferred = None
    if temporality == "delta":
        preferred = {SdkCounter: AggregationTemporality.DELTA, SdkHistogram: AggregationTemporality.DELTA}
    reader = PeriodicExportingMetricReader(
        sdk_metric_exporter(protocol, receiver, preferred), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="gen_ai.client.operation.duration",
                aggregation=ExponentialBucketHistogramAggregation(max_size=16),
            ),
            View(
                instrument_name="gen_ai.client.token.usage",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=TOKEN_BOUNDS),
            ),
        ],
    )
    common = {
        "gen_ai.provider.name": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    }
    recorded = record_genai_metrics(provider.get_meter("tests.genai", "2.0"), TracerProvider().get_tracer("t"), common)
    provider.shutdown()  # the reader's one and only collection + export

    await module_database.wait_for_count(COUNT, 8, service)
    rows = await module_database.fetch(ROWS, service)
    assert len(rows) == 8
    by_name: dict[str, list] = {}
    for row in rows:
        by_name.setdefault(row["metric_name"], []).append(row)
        assert row["scope_name"] == "tests.genai" and row["scope_version"] == "2.0"
        assert orjson.loads(row["resource_attributes"])["service.name"] == service
    span = recorded["span"]

    # Explicit-bucket histogram, one row per attribute set (token type), with exemplars from the span.
    tokens = {orjson.loads(r["attributes"])["gen_ai.token.type"]: r for r in by_name["gen_ai.client.token.usage"]}
    for token_type, values in (("input", [1200]), ("output", [300, 5])):
        row = tokens[token_type]
        assert row["metric_type"] == "histogram" and row["temporality"] == temporality
        assert row["unit"] == "{token}" and row["description"] == "tokens used"
        assert row["explicit_bounds"] == [float(b) for b in TOKEN_BOUNDS]
        assert row["bucket_counts"] == explicit_counts(values, TOKEN_BOUNDS)
        assert (row["count"], row["sum"], row["min"], row["max"]) == (
            len(values),
            sum(values),
            min(values),
            max(values),
        )
        assert (row["provider"], row["model"]) == ("openai", "gpt-4o-mini-2024-07-18")
        assert row["value"] is None and row["scale"] is None and row["quantiles"] is None
        assert row["start_ts"] is not None and row["start_ts"] <= row["ts"]
        exemplars = orjson.loads(row["exemplars"])
        assert sorted(e["value"] for e in exemplars) == sorted(values)
        assert {(e["trace_id"], e["span_id"]) for e in exemplars} == {(f"{span.trace_id:032x}", f"{span.span_id:016x}")}

    # Exponential histogram: scale, zero bucket and positive buckets that rebuild every recorded value.
    (duration,) = by_name["gen_ai.client.operation.duration"]
    values = [0.8, 1.6, 3.2, 0.3]
    assert duration["metric_type"] == "exponential_histogram" and duration["temporality"] == temporality
    assert duration["count"] == 4 and duration["zero_count"] == 0
    assert duration["sum"] == 0.8 + 1.6 + 3.2 + 0.3
    assert (duration["min"], duration["max"]) == (0.3, 3.2)
    scale = duration["scale"]
    assert -10 <= scale <= 20 and len(duration["positive_bucket_counts"]) <= 16
    stored = {duration["positive_offset"] + i: n for i, n in enumerate(duration["positive_bucket_counts"]) if n}
    assert stored == dict(Counter(exponential_index(v, scale) for v in values))
    assert not any(duration["negative_bucket_counts"] or ())  # stored as sent (the SDK sends [0])
    assert len(orjson.loads(duration["exemplars"])) >= 1
    assert duration["explicit_bounds"] is None and duration["bucket_counts"] is None

    # Explicit buckets chosen by the instrument's advisory boundaries.
    (ttft,) = by_name["gen_ai.server.time_to_first_token"]
    assert ttft["explicit_bounds"] == TTFT_BOUNDS
    assert ttft["bucket_counts"] == explicit_counts([0.05, 0.5, 20.0], TTFT_BOUNDS) == [0, 1, 1, 0, 1]
    assert ttft["exemplars"] is None  # recorded outside any span

    # Sums: a monotonic counter (in the chosen temporality) and an up-down counter (always cumulative).
    (requests,) = by_name["llm.requests"]
    assert (requests["metric_type"], requests["temporality"], requests["is_monotonic"]) == ("sum", temporality, True)
    assert (requests["value_int"], requests["value"]) == (12, 12.0)
    assert requests["provider"] == "openai"
    (inflight,) = by_name["llm.inflight"]
    assert (inflight["temporality"], inflight["is_monotonic"], inflight["value_int"]) == ("cumulative", False, 7)

    # Gauges: a synchronous double gauge and an observable int gauge.
    (temperature,) = by_name["llm.temperature"]
    assert (temperature["metric_type"], temperature["value"], temperature["value_int"]) == ("gauge", 0.7, None)
    assert temperature["temporality"] is None and temperature["is_monotonic"] is None
    assert (temperature["provider"], temperature["model"]) == (None, "gpt-4o")
    (depth,) = by_name["llm.queue_depth"]
    assert (depth["value_int"], orjson.loads(depth["attributes"])) == (7, {"queue": "a"})


def edge_case_request(service: str):
    """What the SDK does not send: summaries, negative exponential buckets, absent optionals, NaN."""
    summary = metrics_pb2.Metric(
        name="rpc.latency",
        unit="ms",
        summary=metrics_pb2.Summary(
            data_points=[
                metrics_pb2.SummaryDataPoint(
                    time_unix_nano=T0,
                    start_time_unix_nano=T0 - 60 * 10**9,
                    count=1000,
                    sum=123456.5,
                    quantile_values=[
                        Quantile(quantile=0.0, value=1.5),
                        Quantile(quantile=0.5, value=80.0),
                        Quantile(quantile=0.99, value=950.25),
                        Quantile(quantile=1.0, value=1200.0),
                    ],
                    attributes=attrs({"gen_ai.system": "vertex_ai", "gen_ai.request.model": "gemini-2.0"}),
                )
            ]
        ),
    )
    exponential = metrics_pb2.Metric(
        name="temperature.delta",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            aggregation_temporality=1,
            data_points=[
                metrics_pb2.ExponentialHistogramDataPoint(
                    time_unix_nano=T0,
                    count=10,
                    sum=-3.25,
                    scale=3,
                    zero_count=3,
                    zero_threshold=0.001,
                    positive=Buckets(offset=-2, bucket_counts=[1, 0, 2]),
                    negative=Buckets(offset=4, bucket_counts=[3, 1]),
                    min=-9.0,
                    max=4.0,
                    flags=0,
                )
            ],
        ),
    )
    bare_histogram = metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=4, bucket_counts=[4])
    bare_histogram.exemplars.add(time_unix_nano=T0, as_int=9, trace_id=bytes(16), span_id=b"\x07" * 8)
    return metric_request(
        [
            summary,
            exponential,
            histogram("no.sum.min.max", [bare_histogram], temporality=2),
            gauge(
                "odd.values",
                [
                    number_point(math.nan, attributes={"k": "nan"}),
                    number_point(math.inf, attributes={"k": "inf"}),
                    number_point(-math.inf, attributes={"k": "-inf"}),
                    number_point(-(2**63), attributes={"k": "min-int"}),
                    number_point(1.0, attributes={"k": "no-value-flag"}, flags=1),
                ],
            ),
        ],
        service,
        **{"gen_ai.provider.name": "resource-provider"},
    )


def row_values(rows) -> dict[tuple[str, str], dict[str, object]]:
    """Rows keyed by (metric, attributes), without what differs between two services' copies."""
    skip = {"point_id", "service_name", "resource_attributes"}
    return {(r["metric_name"], r["attributes"]): {k: v for k, v in r.items() if k not in skip} for r in rows}


@pytest.mark.parametrize("transport", ["grpc", "http-json-gzip"])
async def test_summary_negative_buckets_absent_optionals_and_non_finite_values(receiver, module_database, transport):
    service = unique(f"edge-{transport}")
    request = edge_case_request(service)
    if transport == "grpc":
        response = await export_grpc(receiver.grpc_target, request)
    else:
        result, response = await export_http(receiver.http_url, request, json=True, gzip=True)
        assert result.status == 200
    assert not response.HasField("partial_success")
    await module_database.wait_for_count(COUNT, 8, service)
    rows = {
        r["metric_name"] + "/" + orjson.loads(r["attributes"]).get("k", ""): r
        for r in await module_database.fetch(ROWS, service)
    }

    summary = rows["rpc.latency/"]
    assert (summary["metric_type"], summary["count"], summary["sum"], summary["unit"]) == (
        "summary",
        1000,
        123456.5,
        "ms",
    )
    assert summary["quantiles"] == [0.0, 0.5, 0.99, 1.0]
    assert summary["quantile_values"] == [1.5, 80.0, 950.25, 1200.0]
    assert (summary["ts"] - summary["start_ts"]).total_seconds() == 60
    assert (summary["provider"], summary["model"]) == ("gcp.vertex_ai", "gemini-2.0")  # one name per vendor
    assert summary["temporality"] is None and summary["min"] is None

    exp = rows["temperature.delta/"]
    assert (exp["scale"], exp["zero_count"], exp["zero_threshold"], exp["temporality"]) == (3, 3, 0.001, "delta")
    assert (exp["positive_offset"], exp["positive_bucket_counts"]) == (-2, [1, 0, 2])
    assert (exp["negative_offset"], exp["negative_bucket_counts"]) == (4, [3, 1])
    assert (exp["count"], exp["sum"], exp["min"], exp["max"]) == (10, -3.25, -9.0, 4.0)
    assert exp["provider"] == "resource-provider"  # no provider on the point: the resource's

    bare = rows["no.sum.min.max/"]
    assert (bare["count"], bare["bucket_counts"], bare["explicit_bounds"]) == (4, [4], [])
    assert bare["sum"] is None and bare["min"] is None and bare["max"] is None
    assert orjson.loads(bare["exemplars"]) == [
        {"time_unix_nano": T0, "value": 9, "span_id": "07" * 8, "filtered_attributes": {}}
    ]

    assert math.isnan(rows["odd.values/nan"]["value"])
    assert rows["odd.values/inf"]["value"] == math.inf and rows["odd.values/-inf"]["value"] == -math.inf
    assert rows["odd.values/min-int"]["value_int"] == -(2**63)
    assert rows["odd.values/no-value-flag"]["flags"] == 1
    nan_count = await module_database.fetchval(
        "SELECT count(*) FROM llm_metrics WHERE service_name = $1 AND value = 'NaN'::float8", service
    )
    assert nan_count == 1  # stored as a real NaN double, not as text


async def test_protobuf_and_otlp_json_store_identical_rows(receiver, module_database):
    grpc_service, json_service = unique("same-grpc"), unique("same-json")
    await export_grpc(receiver.grpc_target, edge_case_request(grpc_service))
    result, _ = await export_http(receiver.http_url, edge_case_request(json_service), json=True)
    assert result.status == 200
    await module_database.wait_for_count(COUNT, 8, grpc_service)
    await module_database.wait_for_count(COUNT, 8, json_service)
    via_grpc = row_values(await module_database.fetch(ROWS, grpc_service))
    via_json = row_values(await module_database.fetch(ROWS, json_service))
    nan_key = ("odd.values", '{"k": "nan"}')
    assert math.isnan(via_grpc.pop(nan_key)["value"]) and math.isnan(via_json.pop(nan_key)["value"])
    assert via_grpc == via_json


def mixed_request(service: str):
    good = [number_point(float(i), attributes={"i": i}) for i in range(4)]
    return metric_request(
        [
            gauge("ok.gauge", good[:2]),
            gauge("", [number_point(1), number_point(2)]),  # no name: 2 rejected
            monotonic_sum("ok.sum", [number_point(5, time_ns=0), good[2]]),  # time 0: 1 rejected
            histogram(
                "bad.histogram",
                [
                    metrics_pb2.HistogramDataPoint(
                        time_unix_nano=T0, count=3, bucket_counts=[1, 2], explicit_bounds=[1.0, 2.0]
                    ),  # 1 rejected
                    metrics_pb2.HistogramDataPoint(
                        time_unix_nano=T0, count=3, bucket_counts=[1, 2], explicit_bounds=[1.0]
                    ),
                ],
            ),
            metrics_pb2.Metric(
                name="bad.scale",
                exponential_histogram=metrics_pb2.ExponentialHistogram(
                    data_points=[metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=T0, scale=99)]
                ),
            ),  # 1 rejected
            gauge("ok.gauge2", [good[3]]),
        ],
        service,
    )


@pytest.mark.parametrize("transport", ["grpc", "http-protobuf", "http-json-gzip"])
async def test_invalid_points_are_rejected_by_partial_success_and_valid_ones_land(receiver, module_database, transport):
    service = unique(f"mixed-{transport}")
    before = await receiver.metric("otelcol_receiver_accepted_metric_points_total")
    request = mixed_request(service)
    if transport == "grpc":
        response = await export_grpc(receiver.grpc_target, request)
    else:
        result, response = await export_http(
            receiver.http_url, request, json=transport.startswith("http-json"), gzip=transport.endswith("gzip")
        )
        assert result.status == 200
    partial = response.partial_success
    assert partial.rejected_data_points == 5
    message = partial.error_message
    assert message.startswith("5 data point(s) rejected: ")
    assert "metric 1 has no name (2 data point(s))" in message
    assert "metric 'ok.sum' data point 0: time_unix_nano is missing" in message
    assert "bucket_counts has 2 entries, expected len(explicit_bounds) + 1 = 3" in message
    assert "scale 99 is outside [-10, 20]" in message
    await module_database.wait_for_count(COUNT, 5, service)
    names = sorted(r["metric_name"] for r in await module_database.fetch(ROWS, service))
    assert names == ["bad.histogram", "ok.gauge", "ok.gauge", "ok.gauge2", "ok.sum"]
    assert await receiver.metric("otelcol_receiver_accepted_metric_points_total") - before == 5


async def test_otlp_json_point_that_cannot_be_parsed_rejects_only_itself(receiver, module_database):
    service = unique("json-bad-point")
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "g",
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": str(T0), "asInt": "1"},
                                        {"timeUnixNano": str(T0), "asInt": "one"},
                                        {
                                            "timeUnixNano": T0,
                                            "asDouble": 2.5,
                                            "exemplars": [{"timeUnixNano": str(T0), "traceId": "xyz", "asInt": 1}],
                                        },
                                    ]
                                },
                                "futureField": True,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    from tests.support.otlp import post

    result = await post(f"{receiver.http_url}/v1/metrics", orjson.dumps(body), "application/json")
    assert result.status == 200
    partial = orjson.loads(result.body)["partialSuccess"]
    assert partial["rejectedDataPoints"] == "1"
    assert "metric 0 ('g') data point 1:" in partial["errorMessage"]
    await module_database.wait_for_count(COUNT, 2, service)
    values = sorted(r["value"] for r in await module_database.fetch(ROWS, service))
    assert values == [1.0, 2.5]


async def test_same_request_exported_twice_is_stored_once(receiver, module_database):
    service = unique("retry")
    request = metric_request(
        [
            gauge("g", [number_point(float(i), attributes={"i": i}) for i in range(30)]),
            histogram(
                "h",
                [
                    metrics_pb2.HistogramDataPoint(
                        time_unix_nano=T0,
                        count=1,
                        bucket_counts=[1, 0],
                        explicit_bounds=[1.0],
                        attributes=attrs({"j": j}),
                    )
                    for j in range(20)
                ],
            ),
        ],
        service,
    )
    before = await duplicates_skipped(receiver, "llm_metrics")
    await export_grpc(receiver.grpc_target, request)
    await module_database.wait_for_count(COUNT, 50, service)
    # The client's answer was lost; it retries the very same data, this time as OTLP/JSON over HTTP.
    result, _ = await export_http(receiver.http_url, request, json=True)
    assert result.status == 200
    await assert_retry_stored_once(receiver, module_database, "llm_metrics", "point_id", service, 50, before)
