"""OTLP clients for tests: the OpenTelemetry SDK exporters, and raw requests over real gRPC / HTTP
(for what an SDK never sends: invalid ids, hand-written OTLP/JSON, exact retries)."""

from __future__ import annotations

import base64
import gzip as gzip_module
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

# request type -> (gRPC method, response type, HTTP path)
EXPORTS: dict[type[Message], tuple[str, type[Message], str]] = {
    trace_service_pb2.ExportTraceServiceRequest: (
        TRACE_EXPORT,
        trace_service_pb2.ExportTraceServiceResponse,
        "/v1/traces",
    ),
    metrics_service_pb2.ExportMetricsServiceRequest: (
        METRICS_EXPORT,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "/v1/metrics",
    ),
    logs_service_pb2.ExportLogsServiceRequest: (
        LOGS_EXPORT,
        logs_service_pb2.ExportLogsServiceResponse,
        "/v1/logs",
    ),
}


def sdk_tracer_provider(
    protocol: str,
    receiver: object,
    service_name: str,
    compression: str | None = None,
    headers: dict[str, str] | None = None,
    **resource: object,
) -> TracerProvider:
    """A TracerProvider exporting every span synchronously to the receiver (SimpleSpanProcessor)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import Compression, OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=receiver.grpc_target,  # type: ignore[attr-defined]
            insecure=True,
            compression=Compression.Gzip if compression == "gzip" else None,
            headers=headers,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(
            endpoint=f"{receiver.http_url}/v1/traces",  # type: ignore[attr-defined]
            compression=HttpCompression.Gzip if compression == "gzip" else HttpCompression.NoCompression,
            headers=headers,
        )
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, **resource}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def attr(key: str, value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=any_value(value))


def any_value(value: object) -> common_pb2.AnyValue:
    if value is None:
        return common_pb2.AnyValue()  # no value set: null in JSON
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[attr(k, v) for k, v in value.items()]))
    return common_pb2.AnyValue(string_value=str(value))


def new_trace_id() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


def span(
    name: str = "span",
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    start_ns: int | None = None,
    duration_ns: int = 1_500_000,
    attributes: dict[str, object] | None = None,
    **fields: object,
) -> trace_pb2.Span:
    if start_ns is None:
        start_ns = T0
    return trace_pb2.Span(
        name=name,
        trace_id=new_trace_id() if trace_id is None else trace_id,
        span_id=new_span_id() if span_id is None else span_id,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=[attr(k, v) for k, v in (attributes or {}).items()],
        **fields,  # type: ignore[arg-type]
    )


def trace_request(spans: list[trace_pb2.Span], service_name: str) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[attr("service.name", service_name)]),
                scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="tests"), spans=spans)],
            )
        ]
    )


async def export_grpc(
    target: str,
    request: Message,
    compression: grpc.Compression | None = None,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> Any:
    """Send any Export*ServiceRequest over a real gRPC channel; raises grpc.aio.AioRpcError unless OK."""
    method, response_type, _ = EXPORTS[type(request)]
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return await call(request, timeout=30, compression=compression, metadata=metadata)


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


async def post(
    url: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    gzip: bool = False,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
) -> HttpResult:
    headers = {"Content-Type": content_type, **(headers or {})}
    if gzip:
        body = gzip_module.compress(body)
        headers["Content-Encoding"] = "gzip"
    data: object = body
    if chunked:

        async def chunks():  # no Content-Length: Transfer-Encoding: chunked
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        data = chunks()
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return HttpResult(response.status, dict(response.headers), await response.read())


# -- OTLP/JSON -----------------------------------------------------------------------------------

_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _HEX_ID_KEYS and isinstance(v, str) else _ids_to_hex(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_hex(v) for v in node]
    return node


def to_otlp_json(message: Message) -> bytes:
    """A request as OTLP/JSON: protobuf JSON mapping, but trace/span ids in hex (everywhere)."""
    return orjson.dumps(_ids_to_hex(MessageToDict(message)))


async def export_http(
    base_url: str, request: Message, json: bool = False, gzip: bool = False
) -> tuple[HttpResult, Any]:
    """POST any Export*ServiceRequest to its /v1/* path; returns the HTTP result and, on 200, the
    parsed Export*ServiceResponse."""
    _, response_type, path = EXPORTS[type(request)]
    body = to_otlp_json(request) if json else request.SerializeToString()
    result = await post(base_url + path, body, "application/json" if json else "application/x-protobuf", gzip=gzip)
    response = response_type()
    if result.status == 200:
        if json:
            ParseDict(orjson.loads(result.body), response)
        else:
            response.ParseFromString(result.body)
    return result, response


# -- metrics -------------------------------------------------------------------------------------

# A whole second an hour ago, in Unix ns: recent, so retention (90 days: maintenance drops older
# partitions and deletes older rows from DEFAULT) never removes test data while a test looks at it.
T0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000


def attrs(values: dict[str, object] | None) -> list[common_pb2.KeyValue]:
    return [attr(k, v) for k, v in (values or {}).items()]


def metric_request(
    metrics: list[metrics_pb2.Metric], service_name: str, **resource: object
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(attributes=attrs({"service.name": service_name, **resource})),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope=common_pb2.InstrumentationScope(name="tests", version="1.0"), metrics=metrics
                    )
                ],
            )
        ]
    )


def number_point(
    value: int | float, time_ns: int = T0, attributes: dict[str, object] | None = None, **fields: object
) -> metrics_pb2.NumberDataPoint:
    key = "as_int" if isinstance(value, int) else "as_double"
    return metrics_pb2.NumberDataPoint(time_unix_nano=time_ns, attributes=attrs(attributes), **{key: value}, **fields)


def gauge(name: str, points: list[metrics_pb2.NumberDataPoint], **fields: object) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points), **fields)


def monotonic_sum(
    name: str, points: list[metrics_pb2.NumberDataPoint], temporality: int = 2, monotonic: bool = True
) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(
        name=name,
        sum=metrics_pb2.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic),
    )


def histogram(name: str, points: list[metrics_pb2.HistogramDataPoint], temporality: int = 1) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(
        name=name, histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=temporality)
    )


# -- logs ----------------------------------------------------------------------------------------


def log_request(
    records: list[logs_pb2.LogRecord], service_name: str, **resource: object
) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=attrs({"service.name": service_name, **resource})),
                scope_logs=[
                    logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name="tests"), log_records=records)
                ],
            )
        ]
    )


def log_record(
    body: object = "hello", time_ns: int = T0, attributes: dict[str, object] | None = None, **fields: object
) -> logs_pb2.LogRecord:
    record = logs_pb2.LogRecord(time_unix_nano=time_ns, attributes=attrs(attributes), **fields)  # type: ignore[arg-type]
    if body is not None:
        record.body.CopyFrom(any_value(body))
    return record


# -- SDK providers -------------------------------------------------------------------------------


def sdk_metric_exporter(protocol: str, receiver: object, temporality: dict | None = None) -> Any:
    """The SDK's OTLP metric exporter for `protocol` ("grpc" | "http"), aimed at the receiver."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=receiver.grpc_target,  # type: ignore[attr-defined]
            insecure=True,
            preferred_temporality=temporality,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(
        endpoint=f"{receiver.http_url}/v1/metrics",  # type: ignore[attr-defined]
        preferred_temporality=temporality,
    )


def sdk_log_exporter(protocol: str, receiver: object) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=receiver.grpc_target, insecure=True)  # type: ignore[attr-defined]
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

    return HttpExporter(endpoint=f"{receiver.http_url}/v1/logs")  # type: ignore[attr-defined]


def sdk_spans(service_name: str, names: list[str]) -> list[Any]:
    """Finished SDK spans (ReadableSpan), for calling an exporter's `export` directly and seeing its result."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    collected = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("tests")
    for name in names:
        with tracer.start_as_current_span(name):
            pass
    provider.shutdown()
    return list(collected.get_finished_spans())
