"""Pure metric conversion: one row per point of every type, NULL for absent optionals, the
validation rules, deterministic point ids, and OTLP/JSON parsed point by point."""

from __future__ import annotations

import math

import orjson
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from receiver import schema
from receiver.convert.common import ConvertOptions
from receiver.convert.metrics import convert_metrics
from receiver.frontends.decode import parse_json
from receiver.frontends.signals import METRICS
from tests.support.otlp import (
    T0,
    attrs,
    gauge,
    histogram,
    metric_request,
    monotonic_sum,
    number_point,
    to_otlp_json,
)

Buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
Quantile = metrics_pb2.SummaryDataPoint.ValueAtQuantile


def rows_of(request, **options) -> list[dict[str, object]]:
    converted = convert_metrics(request, ConvertOptions(**options))
    assert converted.rejected == 0, converted.errors
    return [dict(zip(schema.METRICS_COLUMNS, row, strict=True)) for row in converted.rows]


def one(metric: metrics_pb2.Metric, **resource: object) -> dict[str, object]:
    (row,) = rows_of(metric_request([metric], "svc", **resource))
    return row


def test_gauge_double_and_int_points():
    row = one(gauge("g", [number_point(0.25, start_time_unix_nano=T0 - 10**9)]))
    assert (row["metric_type"], row["value"], row["value_int"]) == ("gauge", 0.25, None)
    assert row["temporality"] is None and row["is_monotonic"] is None
    assert row["start_ts"] is not None and (row["ts"] - row["start_ts"]).total_seconds() == 1
    big = 2**62 + 1  # not exactly representable as a double: value_int keeps it exact
    row = one(gauge("g", [number_point(big)]))
    assert row["value_int"] == big and row["value"] == float(big)
    assert row["start_ts"] is None


def test_sum_temporality_and_monotonicity():
    row = one(monotonic_sum("s", [number_point(3)], temporality=1, monotonic=True))
    assert (row["metric_type"], row["temporality"], row["is_monotonic"], row["value_int"]) == ("sum", "delta", True, 3)
    row = one(monotonic_sum("s", [number_point(-2.5)], temporality=2, monotonic=False))
    assert (row["temporality"], row["is_monotonic"], row["value"]) == ("cumulative", False, -2.5)
    row = one(monotonic_sum("s", [number_point(1)], temporality=0))
    assert row["temporality"] is None  # UNSPECIFIED is stored as NULL, not guessed


def test_histogram_optionals_are_null_when_absent_not_zero():
    point = metrics_pb2.HistogramDataPoint(
        time_unix_nano=T0, count=6, bucket_counts=[1, 2, 3], explicit_bounds=[10.0, 100.0]
    )
    row = one(histogram("h", [point]))
    assert (row["count"], row["bucket_counts"], row["explicit_bounds"]) == (6, [1, 2, 3], [10.0, 100.0])
    assert row["sum"] is None and row["min"] is None and row["max"] is None
    point.sum, point.min, point.max = 0.0, 0.0, 0.0  # present and zero: stored as 0, not NULL
    row = one(histogram("h", [point]))
    assert (row["sum"], row["min"], row["max"]) == (0.0, 0.0, 0.0)
    assert row["temporality"] == "delta"


def test_exponential_histogram_buckets_both_signs():
    point = metrics_pb2.ExponentialHistogramDataPoint(
        time_unix_nano=T0,
        count=9,
        sum=-1.5,
        scale=-2,
        zero_count=2,
        zero_threshold=1e-9,
        positive=Buckets(offset=-3, bucket_counts=[1, 0, 2]),
        negative=Buckets(offset=5, bucket_counts=[4]),
        min=-70.0,
        max=3.0,
    )
    metric = metrics_pb2.Metric(
        name="e", exponential_histogram=metrics_pb2.ExponentialHistogram(data_points=[point], aggregation_temporality=2)
    )
    row = one(metric)
    assert row["metric_type"] == "exponential_histogram" and row["temporality"] == "cumulative"
    assert (row["scale"], row["zero_count"], row["zero_threshold"]) == (-2, 2, 1e-9)
    assert (row["positive_offset"], row["positive_bucket_counts"]) == (-3, [1, 0, 2])
    assert (row["negative_offset"], row["negative_bucket_counts"]) == (5, [4])
    assert (row["count"], row["sum"], row["min"], row["max"]) == (9, -1.5, -70.0, 3.0)
    assert row["bucket_counts"] is None and row["explicit_bounds"] is None
    bare = metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=T0, count=0)
    metric.exponential_histogram.data_points[0].CopyFrom(bare)
    row = one(metric)
    assert row["positive_offset"] is None and row["negative_bucket_counts"] is None and row["sum"] is None


def test_summary_quantiles():
    point = metrics_pb2.SummaryDataPoint(
        time_unix_nano=T0,
        count=100,
        sum=250.5,
        quantile_values=[Quantile(quantile=0.0, value=0.1), Quantile(quantile=0.99, value=9.5)],
    )
    row = one(metrics_pb2.Metric(name="q", summary=metrics_pb2.Summary(data_points=[point])))
    assert (row["metric_type"], row["count"], row["sum"]) == ("summary", 100, 250.5)
    assert (row["quantiles"], row["quantile_values"]) == ([0.0, 0.99], [0.1, 9.5])


def test_non_finite_values_stay_doubles_and_exemplars_spell_them():
    point = number_point(math.nan)
    point.exemplars.add(
        time_unix_nano=T0, as_double=math.inf, trace_id=b"\x01" * 16, span_id=b"\x02" * 8
    ).filtered_attributes.extend(attrs({"user": "u1"}))
    point.exemplars.add(time_unix_nano=T0, as_int=7, trace_id=b"\x01" * 5, span_id=bytes(8))
    row = one(gauge("g", [point]))
    assert math.isnan(row["value"])
    assert orjson.loads(row["exemplars"]) == [
        {
            "time_unix_nano": T0,
            "value": "Infinity",
            "trace_id": "01" * 16,
            "span_id": "02" * 8,
            "filtered_attributes": {"user": "u1"},
        },
        {"time_unix_nano": T0, "value": 7, "filtered_attributes": {}},  # invalid ids: left out
    ]


def test_provider_and_model_from_point_then_resource():
    token_usage = [
        number_point(1, attributes={"gen_ai.provider.name": "OpenAI", "gen_ai.request.model": "gpt-4o"}),
        number_point(2, attributes={"gen_ai.system": "anthropic", "gen_ai.response.model": "claude-x"}),
        number_point(3, attributes={"other": 1}),
    ]
    rows = rows_of(
        metric_request(
            [gauge("t", token_usage)], "svc", **{"gen_ai.provider.name": "azure", "gen_ai.request.model": "m"}
        )
    )
    assert [(r["provider"], r["model"], r["service_name"]) for r in rows] == [
        ("openai", "gpt-4o", "svc"),
        ("anthropic", "claude-x", "svc"),
        ("azure", "m", "svc"),
    ]


def test_flags_keep_their_32_bits():
    assert one(gauge("g", [number_point(1, flags=1)]))["flags"] == 1
    assert one(gauge("g", [number_point(1, flags=0x80000001)]))["flags"] == 0x80000001 - (1 << 32)


def test_invalid_points_are_rejected_one_by_one_with_reasons():
    bad_hist = [
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=3, bucket_counts=[1, 2], explicit_bounds=[1, 2]),
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=0, explicit_bounds=[1]),
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=3, bucket_counts=[1, 1, 1], explicit_bounds=[2, 1]),
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=2, bucket_counts=[1, 1], explicit_bounds=[math.nan]),
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=2**63, bucket_counts=[2**63], explicit_bounds=[]),
        metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=2, bucket_counts=[1, 1], explicit_bounds=[5]),  # ok
    ]
    exp = metrics_pb2.Metric(
        name="e",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            data_points=[
                metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=T0, scale=21),
                metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=T0, zero_threshold=-1),
                metrics_pb2.ExponentialHistogramDataPoint(
                    time_unix_nano=T0, positive=Buckets(bucket_counts=[2**64 - 1])
                ),
            ]
        ),
    )
    summary = metrics_pb2.Metric(
        name="q",
        summary=metrics_pb2.Summary(
            data_points=[metrics_pb2.SummaryDataPoint(time_unix_nano=T0, quantile_values=[Quantile(quantile=1.5)])]
        ),
    )
    request = metric_request(
        [
            gauge("", [number_point(1), number_point(2)]),  # nameless: both points rejected
            gauge("g", [number_point(1, time_ns=0), number_point(2)]),
            histogram("h", bad_hist),
            exp,
            summary,
            metrics_pb2.Metric(name="nodata"),  # no data at all: nothing stored, nothing rejected
        ],
        "svc",
    )
    converted = convert_metrics(request, ConvertOptions())
    assert converted.rejected == 2 + 1 + 5 + 3 + 1
    assert len(converted.rows) == 2  # g's second point and h's last point
    errors = converted.errors  # the first five reasons
    assert errors[0] == "metric 0 has no name (2 data point(s))"
    assert errors[1] == "metric 'g' data point 0: time_unix_nano is missing"
    assert "bucket_counts has 2 entries, expected len(explicit_bounds) + 1 = 3" in errors[2]
    assert "bucket_counts is empty but explicit_bounds has 1 entries" in errors[3]
    assert "explicit_bounds is not strictly increasing at index 1" in errors[4]
    more = convert_metrics(metric_request([histogram("h", bad_hist[3:5]), exp, summary], "s"), ConvertOptions())
    assert more.errors == [
        "metric 'h' data point 0: explicit_bounds[0] is NaN",
        "metric 'h' data point 1: count is over 2^63-1 (bigint)",
        "metric 'e' data point 0: scale 21 is outside [-10, 20]",
        "metric 'e' data point 1: zero_threshold -1.0 is not a non-negative number",
        "metric 'e' data point 2: positive.bucket_counts holds a count over 2^63-1 (bigint)",
    ]
    last = convert_metrics(metric_request([summary], "s"), ConvertOptions())
    assert last.errors == ["metric 'q' data point 0: quantile_values[0].quantile 1.5 is outside [0, 1]"]


def point_ids(request) -> list[bytes]:
    return [r["point_id"].bytes for r in rows_of(request)]


def test_point_ids_are_deterministic_and_distinct_per_series():
    def request(**changes):
        unit = changes.get("unit", "s")
        metric = gauge("latency", [number_point(1.5, attributes={"route": changes.get("route", "/a")})], unit=unit)
        return metric_request([metric], changes.get("service", "svc"))

    base = point_ids(request())
    assert point_ids(request()) == base  # a retry
    assert point_ids(request(route="/b")) != base  # other series (point attributes)
    assert point_ids(request(unit="ms")) != base  # other metric identity
    assert point_ids(request(service="other")) != base  # other resource
    # The same point in two metrics of the same name but different type: two rows.
    both = metric_request([gauge("x", [number_point(1)]), monotonic_sum("x", [number_point(1)])], "svc")
    assert len(set(point_ids(both))) == 2


def test_otlp_json_and_protobuf_of_one_request_give_the_same_rows():
    point = metrics_pb2.HistogramDataPoint(
        time_unix_nano=T0, count=2, sum=3.5, bucket_counts=[1, 1], explicit_bounds=[2.0], attributes=attrs({"a": 1})
    )
    point.exemplars.add(time_unix_nano=T0, as_double=2.5, trace_id=b"\xab" * 16, span_id=b"\xcd" * 8)
    request = metric_request([histogram("h", [point]), gauge("g", [number_point(7)])], "svc")
    parsed = parse_json(METRICS.request_type, METRICS.envelope, to_otlp_json(request))
    assert parsed.rejected == 0, parsed.errors
    assert rows_of(parsed.message) == rows_of(request)


def test_otlp_json_rejects_per_point_and_counts_points():
    document = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "g",
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": str(T0), "asDouble": 1.5},
                                        {"timeUnixNano": "yesterday", "asDouble": 2},
                                        {
                                            "timeUnixNano": str(T0),
                                            "asInt": "3",
                                            "exemplars": [{"timeUnixNano": str(T0), "asInt": 1, "traceId": "zz"}],
                                        },
                                    ]
                                },
                            },
                            {"name": ["not", "a", "string"], "sum": {"dataPoints": [{}, {}, {}]}},
                            {"name": "two-types", "gauge": {"dataPoints": [{}]}, "sum": {"dataPoints": [{}]}},
                            {"name": "empty", "gauge": {}},
                        ]
                    }
                ],
            }
        ]
    }
    parsed = parse_json(METRICS.request_type, METRICS.envelope, orjson.dumps(document))
    assert parsed.rejected == 1 + 3 + 1
    assert "metric 0 ('g') data point 1:" in parsed.errors[0]
    assert parsed.errors[1].startswith("metric 1:")
    assert "has more than one of gauge, sum" in parsed.errors[2]
    rows = rows_of(parsed.message)
    assert [(r["metric_name"], r["value"]) for r in rows] == [("g", 1.5), ("g", 3.0)]
    assert orjson.loads(rows[1]["exemplars"]) == [{"time_unix_nano": T0, "value": 1, "filtered_attributes": {}}]


@pytest.mark.parametrize("kind", ["gauge", "sum", "histogram", "exponentialHistogram", "summary"])
def test_every_metric_type_parses_from_json(kind):
    point = {"timeUnixNano": str(T0), "count": "1"} if kind != "gauge" and kind != "sum" else {"timeUnixNano": T0}
    document = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", kind: {"dataPoints": [point]}}]}]}]}
    parsed = parse_json(METRICS.request_type, METRICS.envelope, orjson.dumps(document))
    assert parsed.rejected == 0, parsed.errors
    (row,) = rows_of(parsed.message)
    assert row["metric_type"] == {"exponentialHistogram": "exponential_histogram"}.get(kind, kind)


def test_rows_carry_the_project_and_two_projects_points_are_two_identities():
    import uuid

    request = metric_request([gauge("g", [number_point(1.0)])], "svc")
    first, second = uuid.uuid4(), uuid.uuid4()
    ids = {}
    for project in (None, first, second):
        (row,) = convert_metrics(request, ConvertOptions(project_id=project)).rows
        assert row[schema.METRICS_COLUMNS.index("project_id")] == project
        ids[project] = row[schema.METRICS_COLUMNS.index("point_id")]
    assert len(set(ids.values())) == 3, "the same point from two tenants (or none) is three rows"
    assert convert_metrics(request, ConvertOptions(project_id=first)).rows[0][2] == ids[first], "and a retry is one"
