"""Per-signal facts the front ends need: message types, JSON envelope, converter, target table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from receiver import schema
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.traces import convert_traces
from receiver.frontends.decode import JsonEnvelope


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str  # "traces"
    item_noun: str  # "span", in messages
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str  # the partial_success field: "rejected_spans"
    envelope: JsonEnvelope
    convert: Callable[[Any, ConvertOptions], Converted]
    table: str
    http_path: str
    grpc_method: str  # full method name


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
    ),
    convert=convert_traces,
    table=schema.TRACES_TABLE,
    http_path="/v1/traces",
    grpc_method="/opentelemetry.proto.collector.trace.v1.TraceService/Export",
)

SIGNALS: dict[str, SignalSpec] = {spec.name: spec for spec in (TRACES,)}
