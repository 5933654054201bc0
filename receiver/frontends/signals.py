"""Per-signal facts the front ends need: message types, JSON envelope, converter, target table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from receiver import schema
from receiver.convert import logs_metrics_bytes, traces_bytes
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.logs import convert_logs
from receiver.convert.logs_metrics_bytes import convert_logs_bytes, convert_metrics_bytes
from receiver.convert.metrics import convert_metrics
from receiver.convert.traces import convert_traces
from receiver.convert.traces_bytes import convert_traces_bytes
from receiver.frontends.decode import JsonEnvelope


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str  # "traces"
    item_noun: str  # "span", in messages; the unit `rejected_field` counts
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str  # the partial_success field: "rejected_spans"
    envelope: JsonEnvelope
    convert: Callable[[Any, ConvertOptions], Converted]
    table: str
    http_path: str
    grpc_method: str  # full method name
    # Decode and convert protobuf bytes in one step (the native converters, which fall back to upb and
    # `convert` when off or not built), or None: parse with upb, then `convert`. Raises WireFormatError
    # for bytes that are not a valid request.
    convert_bytes: Callable[[bytes, ConvertOptions], Converted] | None = None
    # Whether `convert_bytes` has its native decoder (the memory a scan charges depends on the path).
    native_available: Callable[[], bool] = lambda: False
    # OTLP/JSON bodies are written straight to protobuf bytes for `convert_bytes` by the C encoder
    # (receiver.convert._otlpjson, traces only), not parsed into messages with json_format.
    json_wire: bool = False
    # OTLP/JSON bodies are transcoded to protobuf bytes in C (receiver.convert._jsonwire: this signal's
    # number there) for `convert_bytes`; what it leaves takes the paths above. None: off.
    json_signal: int | None = None


TRACES = SignalSpec(
    name="traces",
    item_noun="span",
    request_type=trace_service_pb2.ExportTraceServiceRequest,
    response_type=trace_service_pb2.ExportTraceServiceResponse,
    rejected_field="rejected_spans",
    envelope=JsonEnvelope(
        resource_list="resourceSpans",
        scope_list="scopeSpans",
        item_list="spans",
        item_noun="span",
        id_fields=("traceId", "spanId", "parentSpanId"),
        nested_id_lists=(("links",),),
        container_lists=("events", "links"),
    ),
    convert=convert_traces,
    table=schema.TRACES_TABLE,
    http_path="/v1/traces",
    grpc_method="/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    convert_bytes=convert_traces_bytes,
    native_available=traces_bytes.native_available,
    json_wire=True,
    json_signal=0,
)

# The item of OTLP/JSON parsing is the Metric, but rejections count data points, the unit of
# `rejected_data_points`: see JsonEnvelope.point_containers.
METRICS = SignalSpec(
    name="metrics",
    item_noun="data point",
    request_type=metrics_service_pb2.ExportMetricsServiceRequest,
    response_type=metrics_service_pb2.ExportMetricsServiceResponse,
    rejected_field="rejected_data_points",
    envelope=JsonEnvelope(
        resource_list="resourceMetrics",
        scope_list="scopeMetrics",
        item_list="metrics",
        item_noun="metric",
        id_fields=(),
        point_containers=("gauge", "sum", "histogram", "exponentialHistogram", "summary"),
        point_id_lists=(("exemplars",),),
        lenient_ids=True,
        container_lists=("exemplars",),
    ),
    convert=convert_metrics,
    table=schema.METRICS_TABLE,
    http_path="/v1/metrics",
    grpc_method="/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    convert_bytes=convert_metrics_bytes,
    native_available=logs_metrics_bytes.native_available,
    json_signal=2,
)

LOGS = SignalSpec(
    name="logs",
    item_noun="log record",
    request_type=logs_service_pb2.ExportLogsServiceRequest,
    response_type=logs_service_pb2.ExportLogsServiceResponse,
    rejected_field="rejected_log_records",
    envelope=JsonEnvelope(
        resource_list="resourceLogs",
        scope_list="scopeLogs",
        item_list="logRecords",
        item_noun="log record",
        id_fields=("traceId", "spanId"),
        lenient_ids=True,
    ),
    convert=convert_logs,
    table=schema.LOGS_TABLE,
    http_path="/v1/logs",
    grpc_method="/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    convert_bytes=convert_logs_bytes,
    native_available=logs_metrics_bytes.native_available,
    json_signal=1,
)

SIGNALS: dict[str, SignalSpec] = {spec.name: spec for spec in (TRACES, METRICS, LOGS)}
