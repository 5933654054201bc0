"""OTLP clients for tests: the OpenTelemetry SDK exporters, and raw requests over real gRPC / HTTP
(for what an SDK never sends: invalid ids, hand-written OTLP/JSON, exact retries)."""

from __future__ import annotations

import gzip as gzip_module
import os
from dataclasses import dataclass

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def sdk_tracer_provider(
    protocol: str, receiver: object, service_name: str, compression: str | None = None, **resource: object
) -> TracerProvider:
    """A TracerProvider exporting every span synchronously to the receiver (SimpleSpanProcessor)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import Compression, OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=receiver.grpc_target,  # type: ignore[attr-defined]
            insecure=True,
            compression=Compression.Gzip if compression == "gzip" else None,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(
            endpoint=f"{receiver.http_url}/v1/traces",  # type: ignore[attr-defined]
            compression=HttpCompression.Gzip if compression == "gzip" else HttpCompression.NoCompression,
        )
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, **resource}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def attr(key: str, value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=any_value(value))


def any_value(value: object) -> common_pb2.AnyValue:
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
    start_ns: int = 1_763_000_000_000_000_000,
    duration_ns: int = 1_500_000,
    attributes: dict[str, object] | None = None,
    **fields: object,
) -> trace_pb2.Span:
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
    target: str, request: trace_service_pb2.ExportTraceServiceRequest, compression: grpc.Compression | None = None
) -> trace_service_pb2.ExportTraceServiceResponse:
    """Send over a real gRPC channel; raises grpc.aio.AioRpcError on a non-OK status."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            TRACE_EXPORT,
            request_serializer=trace_service_pb2.ExportTraceServiceRequest.SerializeToString,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        return await call(request, timeout=30, compression=compression)


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


async def post(
    url: str, body: bytes, content_type: str = "application/x-protobuf", gzip: bool = False, chunked: bool = False
) -> HttpResult:
    headers = {"Content-Type": content_type}
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
