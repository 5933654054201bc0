"""Conversion cost per span: `python -m benchmarks.convert` prints µs/span and spans/s (one core).

The request is a realistic GenAI batch: 512 spans, ~20 attributes each, a 1 KB prompt on every
chat span. Decoding (ParseFromString) is timed separately from conversion.
"""

from __future__ import annotations

import argparse
import os
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--prompt-bytes", type=int, default=1024)
    args = parser.parse_args()
    body = genai_request(args.spans, args.prompt_bytes).SerializeToString()
    options = ConvertOptions(price_book=PriceBook(read_pricing_file(default_pricing_file())))
    decode_s = convert_s = 0.0
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        t1 = time.perf_counter()
        converted = convert_traces(request, options)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        convert_s += t2 - t1
        assert len(converted.rows) == args.spans
    n = args.spans * args.rounds
    print(f"request: {args.spans} spans, {len(body)} bytes ({len(body) // args.spans} B/span)")
    print(f"decode : {decode_s / n * 1e6:7.2f} µs/span")
    print(f"convert: {convert_s / n * 1e6:7.2f} µs/span")
    total_s = decode_s + convert_s
    print(f"total  : {total_s / n * 1e6:7.2f} µs/span = {n / total_s:,.0f} spans/s on one core")


if __name__ == "__main__":
    main()
