"""OTLP ExportMetricsServiceRequest -> `llm_metrics` row tuples (columns in `receiver.schema`).

One row per data point, for every metric type, with enough columns to rebuild the point exactly:
gauge and sum values (`value` as double, `value_int` exact for integer points), histogram buckets and
bounds, exponential-histogram scale / zero bucket / positive and negative buckets, summary quantiles,
exemplars, and `sum` / `min` / `max` NULL when the point did not carry them (they are `optional` in
the proto). PostgreSQL `double precision` keeps NaN and ±Infinity natively; only the JSON columns
(attributes, exemplars) spell them as strings.

Pure: no I/O, no globals. The unit of rejection is the data point (`rejected_data_points`): a point
that breaks a rule below is refused with its reason, its neighbours still become rows.

Rules (a point is rejected when):
- its metric has no name (every point of that metric is rejected);
- `time_unix_nano` is 0, or outside the accepted window (older than llm_metrics' retention, or further
  ahead of the receive time than limits.max_future_skew_s; see receiver.convert.window);
- histogram: `bucket_counts` is neither empty nor `len(explicit_bounds) + 1` long (empty counts need
  empty bounds), or `explicit_bounds` is not strictly increasing / holds NaN;
- exponential histogram: `scale` outside [-10, 20], or `zero_threshold` negative or NaN;
- summary: a quantile outside [0, 1] (or NaN);
- a count (`count`, `zero_count`, a bucket count) exceeds the bigint range (uint64 > 2^63 - 1).
"""

from __future__ import annotations

from typing import Any

from receiver.convert import identity
from receiver.convert.attributes import ConversionStats, clean_text, finite_or_label, key_values
from receiver.convert.budget import charge_texts
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.envelope import json_text, resource_header, scope_header
from receiver.convert.genai import provider_and_model
from receiver.convert.pgvalues import Uuid, int32_from_uint32, timestamp_from_unix_nanos

INT64_MAX = (1 << 63) - 1
MIN_SCALE, MAX_SCALE = -10, 20  # the OTLP spec's valid range for exponential histograms
TEMPORALITIES = (None, "delta", "cumulative")  # AGGREGATION_TEMPORALITY_UNSPECIFIED -> NULL
SIGNAL = "metrics"  # the key of this signal's window in ConvertOptions.windows
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)

# The 17 type-specific columns (value .. quantile_values) of a gauge or sum point, after value/value_int.
_NUMBER_TAIL = (None,) * 15


def exemplars_json(exemplars: Any, limit: int, stats: ConversionStats) -> str | None:
    """Exemplars as a JSON array: time, value (int or double), hex ids when valid, filtered attributes."""
    if not exemplars:
        return None
    items = []
    for exemplar in exemplars:
        item: dict[str, Any] = {"time_unix_nano": exemplar.time_unix_nano}
        kind = exemplar.WhichOneof("value")
        if kind == "as_double":
            item["value"] = finite_or_label(exemplar.as_double, stats)
        elif kind == "as_int":
            item["value"] = exemplar.as_int
        trace_id = exemplar.trace_id
        if len(trace_id) == 16 and trace_id != _ZERO_TRACE_ID:
            item["trace_id"] = trace_id.hex()
        span_id = exemplar.span_id
        if len(span_id) == 8 and span_id != _ZERO_SPAN_ID:
            item["span_id"] = span_id.hex()
        item["filtered_attributes"] = key_values(exemplar.filtered_attributes, limit, stats)
        items.append(item)
    return json_text(items)


def _counts_problem(name: str, counts: Any) -> str | None:
    if counts and max(counts) > INT64_MAX:
        return f"{name} holds a count over 2^63-1 (bigint)"
    return None


def histogram_problem(point: Any, bucket_counts: list[int], bounds: list[float]) -> str | None:
    n = len(bucket_counts)
    if n and n != len(bounds) + 1:
        return f"bucket_counts has {n} entries, expected len(explicit_bounds) + 1 = {len(bounds) + 1}"
    if not n and bounds:
        return f"bucket_counts is empty but explicit_bounds has {len(bounds)} entries"
    for i in range(len(bounds)):
        bound = bounds[i]
        if bound != bound:
            return f"explicit_bounds[{i}] is NaN"
        if i and not bounds[i - 1] < bound:
            return f"explicit_bounds is not strictly increasing at index {i}"
    if point.count > INT64_MAX:
        return "count is over 2^63-1 (bigint)"
    return _counts_problem("bucket_counts", bucket_counts)


def exponential_problem(point: Any) -> str | None:
    scale = point.scale
    if not MIN_SCALE <= scale <= MAX_SCALE:
        return f"scale {scale} is outside [{MIN_SCALE}, {MAX_SCALE}]"
    threshold = point.zero_threshold
    if not threshold >= 0:  # also catches NaN
        return f"zero_threshold {threshold} is not a non-negative number"
    if point.count > INT64_MAX or point.zero_count > INT64_MAX:
        return "count or zero_count is over 2^63-1 (bigint)"
    return _counts_problem("positive.bucket_counts", point.positive.bucket_counts) or _counts_problem(
        "negative.bucket_counts", point.negative.bucket_counts
    )


def summary_problem(point: Any) -> str | None:
    for i, q in enumerate(point.quantile_values):
        if not 0.0 <= q.quantile <= 1.0:
            return f"quantile_values[{i}].quantile {q.quantile} is outside [0, 1]"
    if point.count > INT64_MAX:
        return "count is over 2^63-1 (bigint)"
    return None


def _short(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "…"


def convert_metrics(request: Any, options: ConvertOptions) -> Converted:
    """Every data point of the request -> one row tuple, or one rejection with its reason."""
    out = Converted()
    limit = options.max_attribute_bytes
    stats = out.stats
    append = out.rows.append
    budget = options.budget
    project_id = options.project_id
    window = options.window(SIGNAL)
    received = options.received_unix_nanos
    earliest, latest = window.bounds(received)
    metric_index = 0
    # An SDK stamps every point of one collection with the same times: convert each distinct one once.
    last_time_ns = last_start_ns = -1
    last_ts = last_start_ts = None
    for resource_metrics in request.resource_metrics:
        resource_json, service_name, resource_provider, resource_model, resource_hash = resource_header(
            identity.METRICS_DOMAIN, resource_metrics.resource, resource_metrics.schema_url, limit, stats, project_id
        )
        charge_texts(budget, resource_json)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_name, scope_version, scope_hash = scope_header(
                resource_hash, scope_metrics.scope, scope_metrics.schema_url, limit, stats
            )
            charge_texts(budget, scope_name, scope_version)
            for metric in scope_metrics.metrics:
                index = metric_index
                metric_index += 1
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue  # no data: nothing to store, nothing to refuse
                data = getattr(metric, kind)
                points = data.data_points
                if not metric.name:
                    if points:
                        out.reject(f"metric {index} has no name ({len(points)} data point(s))", len(points))
                    continue
                name = clean_text(metric.name, limit, stats)
                temporality = None
                is_monotonic = None
                if kind == "sum":
                    is_monotonic = data.is_monotonic
                if kind != "gauge" and kind != "summary":
                    temporality_code = data.aggregation_temporality
                    temporality = TEMPORALITIES[temporality_code] if 0 <= temporality_code < 3 else None
                series_hash = identity.extend(
                    scope_hash,
                    metric.name,
                    metric.description,
                    metric.unit,
                    kind,
                    temporality or "",
                    "m" if is_monotonic else "",
                )
                head = (
                    name,
                    kind,
                    clean_text(metric.description, limit, stats) or None,
                    clean_text(metric.unit, limit, stats) or None,
                    temporality,
                    is_monotonic,
                )
                charge_texts(budget, name, head[2], head[3])
                for point_index, point in enumerate(points):
                    time_ns = point.time_unix_nano
                    if time_ns == 0:
                        out.reject(f"metric {_short(name)!r} data point {point_index}: time_unix_nano is missing")
                        continue
                    if not earliest <= time_ns <= latest:
                        out.reject_time(
                            f"metric {_short(name)!r} data point {point_index}", "time", window, time_ns, received
                        )
                        continue
                    if kind == "gauge" or kind == "sum":
                        value_kind = point.WhichOneof("value")
                        if value_kind == "as_double":
                            middle: tuple[Any, ...] = (point.as_double, None, *_NUMBER_TAIL)
                        elif value_kind == "as_int":
                            as_int = point.as_int
                            middle = (float(as_int), as_int, *_NUMBER_TAIL)
                        else:
                            middle = (None, None, *_NUMBER_TAIL)
                        exemplars = point.exemplars
                    elif kind == "histogram":
                        bucket_counts = list(point.bucket_counts)
                        bounds = list(point.explicit_bounds)
                        problem = histogram_problem(point, bucket_counts, bounds)
                        if problem is not None:
                            out.reject(f"metric {_short(name)!r} data point {point_index}: {problem}")
                            continue
                        middle = (
                            None,
                            None,
                            point.count,
                            point.sum if point.HasField("sum") else None,
                            point.min if point.HasField("min") else None,
                            point.max if point.HasField("max") else None,
                            bucket_counts,
                            bounds,
                            *_NUMBER_TAIL[:9],
                        )
                        exemplars = point.exemplars
                    elif kind == "exponential_histogram":
                        problem = exponential_problem(point)
                        if problem is not None:
                            out.reject(f"metric {_short(name)!r} data point {point_index}: {problem}")
                            continue
                        has_positive = point.HasField("positive")
                        has_negative = point.HasField("negative")
                        middle = (
                            None,
                            None,
                            point.count,
                            point.sum if point.HasField("sum") else None,
                            point.min if point.HasField("min") else None,
                            point.max if point.HasField("max") else None,
                            None,
                            None,
                            point.scale,
                            point.zero_count,
                            point.zero_threshold,
                            point.positive.offset if has_positive else None,
                            list(point.positive.bucket_counts) if has_positive else None,
                            point.negative.offset if has_negative else None,
                            list(point.negative.bucket_counts) if has_negative else None,
                            None,
                            None,
                        )
                        exemplars = point.exemplars
                    else:  # summary
                        problem = summary_problem(point)
                        if problem is not None:
                            out.reject(f"metric {_short(name)!r} data point {point_index}: {problem}")
                            continue
                        quantile_values = point.quantile_values
                        middle = (
                            None,
                            None,
                            point.count,
                            point.sum,
                            *_NUMBER_TAIL[:11],
                            [q.quantile for q in quantile_values],
                            [q.value for q in quantile_values],
                        )
                        exemplars = ()
                    attrs = key_values(point.attributes, limit, stats)
                    provider, model = provider_and_model(attrs) if attrs else (None, None)
                    if time_ns != last_time_ns:
                        last_time_ns, last_ts = time_ns, timestamp_from_unix_nanos(time_ns)
                    start_ns = point.start_time_unix_nano
                    if start_ns != last_start_ns:
                        last_start_ns = start_ns
                        last_start_ts = timestamp_from_unix_nanos(start_ns) if start_ns else None
                    exemplars_text = exemplars_json(exemplars, limit, stats) if exemplars else None
                    attributes_json = json_text(attrs)
                    charge_texts(budget, exemplars_text, attributes_json)
                    append(
                        (
                            last_ts,
                            last_start_ts,
                            Uuid(identity.item_id(series_hash, point)),
                            *head,
                            *middle,
                            exemplars_text,
                            int32_from_uint32(point.flags),
                            service_name,
                            provider or resource_provider,
                            model or resource_model,
                            scope_name,
                            scope_version,
                            attributes_json,
                            resource_json,
                            project_id,
                        )
                    )
    return out
