"""GenAI spans from the OpenTelemetry Python SDK, through a real receiver, into real PostgreSQL rows."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.support.otlp import sdk_tracer_provider


def emit_chat_workflow(provider, service: str) -> dict[str, object]:
    """An agent span with a child chat call (GenAI names) and a child tool call that fails."""
    tracer = provider.get_tracer("tests.genai", "1.2.3")
    with tracer.start_as_current_span("invoke_agent planner", kind=SpanKind.INTERNAL) as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("session.id", "sess-42")
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as chat:
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            chat.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
            chat.set_attribute("gen_ai.usage.input_tokens", 1000)
            chat.set_attribute("gen_ai.usage.output_tokens", 250)
            chat.set_attribute("gen_ai.usage.cache_read.input_tokens", 400)
            chat.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            chat.set_attribute("user.id", "user-7")
            chat.set_attribute("session.id", "sess-42")
            chat.set_attribute("gen_ai.input.messages", '[{"role":"user","content":"hello"}]')
            chat.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hello"})
        with tracer.start_as_current_span(
            "execute_tool search", kind=SpanKind.INTERNAL, links=[Link(chat.get_span_context(), {"why": "caused"})]
        ) as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "search")
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
    provider.shutdown()
    return {
        "agent": agent.get_span_context(),
        "chat": chat.get_span_context(),
        "tool": tool.get_span_context(),
    }


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_sdk_genai_spans_become_rows(receiver, module_database, protocol):
    service = f"svc-{protocol}-{uuid.uuid4().hex[:6]}"
    provider = sdk_tracer_provider(protocol, receiver, service, **{"deployment.environment.name": "staging"})
    contexts = emit_chat_workflow(provider, service)

    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 3, service)
    rows = {
        r["span_name"]: r
        for r in await module_database.fetch("SELECT * FROM llm_traces WHERE service_name = $1", service)
    }
    assert set(rows) == {"invoke_agent planner", "chat gpt-4o-mini", "execute_tool search"}

    chat = rows["chat gpt-4o-mini"]
    ctx = contexts["chat"]
    assert chat["trace_id"] == uuid.UUID(int=ctx.trace_id)
    assert chat["span_id"] == f"{ctx.span_id:016x}"
    assert chat["parent_span_id"] == f"{contexts['agent'].span_id:016x}"
    assert chat["span_kind"] == "client"
    assert chat["provider"] == "openai"
    assert chat["model"] == "gpt-4o-mini-2024-07-18"
    assert chat["request_model"] == "gpt-4o-mini"
    assert chat["operation"] == "chat"
    assert (chat["input_tokens"], chat["output_tokens"], chat["total_tokens"]) == (1000, 250, 1250)
    assert chat["cache_read_tokens"] == 400
    # gpt-4o-mini: 0.15 in, 0.075 cached in, 0.60 out per 1M tokens (config/pricing.toml).
    assert chat["input_cost"] == Decimal("600") * Decimal("0.15") / 10**6 + Decimal("400") * Decimal("0.075") / 10**6
    assert chat["output_cost"] == Decimal("0.00015")
    assert chat["total_cost"] == chat["input_cost"] + chat["output_cost"]
    assert chat["cost_source"] == "pricing"
    assert chat["user_id"] == "user-7"
    assert chat["session_id"] == "sess-42"
    assert chat["environment"] == "staging"
    assert chat["finish_reasons"] == ["stop"]
    assert chat["status_code"] == "unset"
    assert chat["scope_name"] == "tests.genai" and chat["scope_version"] == "1.2.3"
    assert chat["duration_ms"] == pytest.approx((chat["end_ts"] - chat["ts"]).total_seconds() * 1000, abs=0.002)
    attributes = orjson.loads(chat["attributes"])
    assert attributes["gen_ai.usage.input_tokens"] == 1000
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.input.messages"] == '[{"role":"user","content":"hello"}]'
    resource = orjson.loads(chat["resource_attributes"])
    assert resource["service.name"] == service
    assert resource["telemetry.sdk.language"] == "python"
    events = orjson.loads(chat["events"])
    assert events[0]["name"] == "gen_ai.content.prompt"
    assert events[0]["attributes"] == {"gen_ai.prompt": "hello"}

    tool = rows["execute_tool search"]
    assert tool["status_code"] == "error"
    assert tool["status_message"] == "tool timed out"
    assert tool["operation"] == "execute_tool"
    assert tool["provider"] is None and tool["total_cost"] is None and tool["input_tokens"] is None
    links = orjson.loads(tool["links"])
    assert links == [
        {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}", "attributes": {"why": "caused"}}
    ]

    agent = rows["invoke_agent planner"]
    assert agent["parent_span_id"] is None
    assert agent["session_id"] == "sess-42"
    assert agent["events"] is None and agent["links"] is None


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_sdk_gzip_compression(receiver, module_database, protocol):
    service = f"gzip-{protocol}-{uuid.uuid4().hex[:6]}"
    provider = sdk_tracer_provider(protocol, receiver, service, compression="gzip")
    tracer = provider.get_tracer("tests")
    for i in range(20):
        with tracer.start_as_current_span(f"op-{i}") as s:
            s.set_attribute("payload", "x" * 2000)
    provider.shutdown()
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 20, service)
    names = {
        r["span_name"]
        for r in await module_database.fetch("SELECT span_name FROM llm_traces WHERE service_name = $1", service)
    }
    assert names == {f"op-{i}" for i in range(20)}
