"""Realistic `llm_traces` rows for storage benchmarks, built by the receiver's own conversion.

The rows are what the receiver really COPYs: GenAI spans from several services, providers and models,
~20 attributes each, a 1 KB prompt and a 256 B completion in the attributes (TOASTed jsonb), 2 % errors,
log-normal latencies, users and sessions of realistic cardinality, plus non-LLM spans (HTTP, DB) around
them. Index costs measured on toy rows would flatter wide indexes; these do not.
"""

from __future__ import annotations

import os
import random
from datetime import datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from benchmarks.convert import kv
from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
from receiver.storage.pricing_store import default_pricing_file, read_pricing_file

MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("gcp.gemini", "gemini-1.5-flash"),
)
SERVICES = ("support-bot", "search-api", "summarizer", "agent-runner")


def _llm_span(rng: random.Random, trace_id: bytes, start_ns: int, prompt_bytes: int) -> trace_pb2.Span:
    provider, model = rng.choice(MODELS)
    duration_ns = int(rng.lognormvariate(6.5, 0.8) * 1e6)  # median ~665 ms
    error = rng.random() < 0.02
    attrs = [
        kv("gen_ai.provider.name", provider),
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.request.model", model),
        kv("gen_ai.response.model", model),
        kv("gen_ai.request.temperature", 0.7),
        kv("gen_ai.request.max_tokens", 1024),
        kv("gen_ai.usage.input_tokens", rng.randint(50, 4000)),
        kv("gen_ai.usage.output_tokens", rng.randint(10, 800)),
        kv("gen_ai.response.id", f"resp-{rng.getrandbits(48):012x}"),
        kv("gen_ai.response.finish_reasons", "stop"),
        kv("user.id", f"user-{rng.randint(0, 5000)}"),
        kv("session.id", f"session-{rng.randint(0, 50000)}"),
        kv("server.address", f"api.{provider}.com"),
        kv("server.port", 443),
        kv("http.response.status_code", 500 if error else 200),
        kv("gen_ai.conversation.id", f"conv-{rng.randint(0, 50000)}"),
        kv("app.feature", rng.choice(("chat", "search", "summarize"))),
        kv("app.tenant", f"tenant-{rng.randint(0, 200)}"),
        kv("gen_ai.input.messages", "p" * prompt_bytes),
        kv("gen_ai.output.messages", "c" * (prompt_bytes // 4)),
    ]
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=os.urandom(8),
        name=f"chat {model}",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=attrs,
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if error else trace_pb2.Status.STATUS_CODE_OK),
    )


def _plain_span(rng: random.Random, trace_id: bytes, start_ns: int) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name=rng.choice(("POST /v1/chat", "SELECT documents", "vector search")),
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(rng.lognormvariate(3, 1) * 1e6),
        attributes=[kv("http.request.method", "POST"), kv("url.path", "/v1/chat"), kv("db.system", "postgresql")],
    )


def span_rows(count: int, day_start: datetime, seed: int = 7, prompt_bytes: int = 1024) -> list[tuple[Any, ...]]:
    """`count` row tuples (receiver.schema.TRACES_COLUMNS order) with start times spread over one day:
    three LLM spans for each non-LLM span, in traces of four spans."""
    rng = random.Random(seed)
    options = ConvertOptions(price_book=PriceBook(read_pricing_file(default_pricing_file())))
    base_ns = int(day_start.timestamp() * 1e9)
    day_ns = 86_400 * 10**9 - 3_600 * 10**9  # leave the last hour free: spans must start inside the day
    rows: list[tuple[Any, ...]] = []
    while len(rows) < count:
        service = rng.choice(SERVICES)
        spans = []
        for _ in range(128):
            trace_id = os.urandom(16)
            start_ns = base_ns + rng.randrange(day_ns)
            spans.append(_plain_span(rng, trace_id, start_ns))
            spans.extend(_llm_span(rng, trace_id, start_ns + i * 1000, prompt_bytes) for i in range(3))
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=resource_pb2.Resource(
                        attributes=[
                            kv("service.name", service),
                            kv("deployment.environment.name", rng.choice(("prod", "staging"))),
                            kv("telemetry.sdk.language", "python"),
                        ]
                    ),
                    scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
                )
            ]
        )
        rows.extend(convert_traces(request, options).rows)
    return rows[:count]
