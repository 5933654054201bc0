"""The read API (/api/v1 on query.endpoint) of a real receiver, over spans, log records and metric points
exported to that receiver by the OpenTelemetry SDK and raw OTLP, stored in a real PostgreSQL.

Each answer is compared with what was sent (a trace as the SDK recorded it) or with SQL over the raw rows
(usage: counts, tokens and cost exactly, percentiles within the histogram's documented error).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from receiver.storage import rollups
from tests.conftest import create_database, drop_database
from tests.support.otlp import (
    export_grpc,
    gauge,
    log_record,
    log_request,
    metric_request,
    number_point,
    sdk_tracer_provider,
    span,
    trace_request,
)
from tests.support.process import ReceiverProcess
from tests.support.spans import _close_percentile


async def get(receiver: ReceiverProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    url = f"{receiver.query_url}/api/v1{path}"
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


def micros(ns: int) -> datetime:
    """A SDK time (ns) as PostgreSQL keeps it (µs)."""
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 with Z (a '+' in a query string would read as a space)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- one trace ----------------------------------------------------------------------------------------


def emit_workflow(receiver: ReceiverProcess, service: str, session_id: str) -> list[Any]:
    """An agent span with a chat call (GenAI attributes, an event) and a failing tool call linked to it;
    returns the spans as the SDK finished them (what it exported)."""
    provider = sdk_tracer_provider("grpc", receiver, service, **{"deployment.environment.name": "staging"})
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.read_api", "0.1")
    with tracer.start_as_current_span("invoke_agent planner", kind=SpanKind.INTERNAL) as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("session.id", session_id)
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as chat:
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            chat.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
            chat.set_attribute("gen_ai.usage.input_tokens", 1000)
            chat.set_attribute("gen_ai.usage.output_tokens", 250)
            chat.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            chat.set_attribute("user.id", "user-7")
            chat.set_attribute("session.id", session_id)
            chat.set_attribute("gen_ai.input.messages", '[{"role":"user","content":"hello"}]')
            chat.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hello", "n": 2})
        with tracer.start_as_current_span(
            "execute_tool search", kind=SpanKind.INTERNAL, links=[Link(chat.get_span_context(), {"why": "caused"})]
        ) as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


async def test_trace_by_id_is_what_was_sent(receiver, module_database):
    service = f"trace-{uuid.uuid4().hex[:8]}"
    sent = emit_workflow(receiver, service, f"sess-{uuid.uuid4().hex[:8]}")
    by_name = {s.name: s for s in sent}
    chat = by_name["chat gpt-4o-mini"]
    trace_id = chat.context.trace_id.to_bytes(16, "big")
    # Two log records of the trace: one from the chat span, one without a span id (trace level).
    records = [
        log_record(
            "model said hi",
            time_ns=chat.end_time,
            trace_id=trace_id,
            span_id=chat.context.span_id.to_bytes(8, "big"),
            severity_text="INFO",
            event_name="gen_ai.choice",
        ),
        log_record({"summary": "done", "turns": 3}, time_ns=chat.end_time + 1000, trace_id=trace_id),
    ]
    await export_grpc(receiver.grpc_target, log_request(records, service))
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 3, service)
    await module_database.wait_for_count("SELECT count(*) FROM llm_logs WHERE service_name = $1", 2, service)

    status, trace, _ = await get(receiver, f"/traces/{trace_id.hex()}")
    assert status == 200, trace
    assert trace["trace_id"] == trace_id.hex() and trace["truncated"] is False
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert len(spans) == 3
    for original in sent:
        got = spans[format(original.context.span_id, "016x")]
        assert got["trace_id"] == format(original.context.trace_id, "032x")
        parent = format(original.parent.span_id, "016x") if original.parent else None
        assert got["parent_span_id"] == parent
        assert got["name"] == original.name
        assert got["kind"] == original.kind.name.lower()
        assert parse_time(got["start"]) == micros(original.start_time)
        assert parse_time(got["end"]) == micros(original.end_time)
        assert got["duration_ms"] == pytest.approx((original.end_time - original.start_time) / 1e6)
        assert got["status"]["code"] == original.status.status_code.name.lower()
        assert got["status"]["message"] == original.status.description
        assert got["attributes"] == {k: _plain(v) for k, v in original.attributes.items()}
        assert got["resource_attributes"]["service.name"] == service
        assert [(e["name"], e["attributes"]) for e in got["events"] or []] == [
            (e.name, dict(e.attributes)) for e in original.events
        ]
        assert [(lk["span_id"], lk["attributes"]) for lk in got["links"] or []] == [
            (format(lk.context.span_id, "016x"), dict(lk.attributes)) for lk in original.links
        ]
    # The tree: the agent is the root, its two children in start order.
    agent_id = format(by_name["invoke_agent planner"].context.span_id, "016x")
    chat_id = format(chat.context.span_id, "016x")
    tool_id = format(by_name["execute_tool search"].context.span_id, "016x")
    assert trace["roots"] == [agent_id]
    assert [s["span_id"] for s in trace["spans"]] == [agent_id, chat_id, tool_id]
    assert [s["depth"] for s in trace["spans"]] == [0, 1, 1]
    assert spans[agent_id]["children"] == [chat_id, tool_id]
    # LLM fields, as the receiver extracted them; the cost exactly as stored.
    row = (await module_database.fetch("SELECT total_cost FROM llm_traces WHERE span_id = $1", chat_id))[0]
    llm = spans[chat_id]
    assert (llm["provider"], llm["model"], llm["request_model"], llm["operation"]) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
        "chat",
    )
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (1000, 250, 1250)
    assert llm["cost"] is not None and Decimal(llm["cost"]) == row["total_cost"]
    assert llm["finish_reasons"] == ["stop"] and llm["user_id"] == "user-7"
    assert trace["totals"]["cost"] == llm["cost"] and trace["totals"]["errors"] == 1
    # Log records: under the span whose id they carry, or at the trace level.
    assert [(r["body"], r["event_name"]) for r in llm["logs"]] == [("model said hi", "gen_ai.choice")]
    assert [r["body"] for r in trace["logs"]] == [{"summary": "done", "turns": 3}]
    # A time window narrows the search (fewer partitions); outside it the trace is not found.
    start = micros(by_name["invoke_agent planner"].start_time)
    around = f"from={iso(start - timedelta(minutes=5))}&to={iso(start + timedelta(minutes=5))}"
    status, windowed, _ = await get(receiver, f"/traces/{trace_id.hex()}?{around}")
    assert status == 200 and windowed["spans"] == trace["spans"]
    earlier = f"from={iso(start - timedelta(hours=2))}&to={iso(start - timedelta(hours=1))}"
    assert (await get(receiver, f"/traces/{trace_id.hex()}?{earlier}"))[0] == 404


async def test_session_lists_its_traces_with_totals(receiver, module_database):
    service = f"sess-{uuid.uuid4().hex[:8]}"
    session_id = f"conv-{uuid.uuid4().hex[:8]}"
    first = emit_workflow(receiver, service, session_id)
    second = emit_workflow(receiver, service, session_id)
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 6, service)
    status, body, _ = await get(receiver, f"/sessions/{session_id}")
    assert status == 200, body
    assert [t["trace_id"] for t in body["traces"]] == [
        format(first[0].context.trace_id, "032x"),
        format(second[0].context.trace_id, "032x"),
    ]
    for item in body["traces"]:
        assert item["spans"] == 3 and item["llm_spans"] == 1 and item["errors"] == 1
        assert item["total_tokens"] == 1250 and item["root_name"] == "invoke_agent planner"
        assert item["models"] == ["gpt-4o-mini-2024-07-18"]
    costs = await module_database.fetch("SELECT total_cost FROM llm_traces WHERE service_name = $1", service)
    assert Decimal(body["totals"]["cost"]) == sum(r["total_cost"] for r in costs if r["total_cost"] is not None)
    assert body["totals"]["traces"] == 2 and body["truncated"] is False
    status, body, _ = await get(receiver, f"/sessions/{session_id}?limit=1")
    assert status == 200 and len(body["traces"]) == 1 and body["truncated"] is True


# -- pages while spans arrive -------------------------------------------------------------------------


async def test_paging_returns_every_matching_span_once_while_spans_arrive(receiver, module_database):
    """Pages of 10 through one service's spans. Between pages more spans are stored: some newer than
    everything (above the first page), some dated inside the part not yet paged. Spans come in groups of
    7 sharing one start time, so page boundaries fall inside ties of the first sort key."""
    service = f"pages-{uuid.uuid4().hex[:8]}"
    other = f"other-{uuid.uuid4().hex[:8]}"
    base = time.time_ns() - 3_000_000_000_000  # 50 minutes ago
    step = 1_000_000_000

    def group(start_ns: int, name: str) -> list[Any]:
        return [span(f"{name}-{i}", start_ns=start_ns, attributes={"gen_ai.request.model": "m"}) for i in range(7)]

    initial = [s for g in range(8) for s in group(base + g * step, f"g{g}")]  # 56 spans, 8 timestamps
    await export_grpc(receiver.grpc_target, trace_request(initial, service))
    await export_grpc(receiver.grpc_target, trace_request(group(base + 5 * step, "noise"), other))
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 56, service)
    before = {
        (r["trace_id"].hex, r["span_id"])
        for r in await module_database.fetch(
            "SELECT trace_id, span_id FROM llm_traces WHERE service_name = $1", service
        )
    }

    seen: list[tuple[str, str]] = []
    newer: set[tuple[str, str]] = set()
    late: set[tuple[str, str]] = set()
    cursor = None
    pages = 0
    stored = 56
    while True:
        path = f"/spans?service={service}&limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await get(receiver, path)
        assert status == 200, body
        seen.extend((s["trace_id"], s["span_id"]) for s in body["spans"])
        assert len(body["spans"]) <= 10
        cursor = body["next_cursor"]
        if cursor is None:
            break
        pages += 1
        last_start = parse_time(body["spans"][-1]["start"])
        # Arrivals between two pages: one group newer than all, one dated just before where the next page
        # starts (not yet paged: must be returned), each stored before the next page is asked for.
        arriving_newer = group(time.time_ns() - 60_000_000_000 + pages * 1000, f"new{pages}")
        late_ns = int(last_start.timestamp() * 1e9) - 1000 * (pages + 1)
        arriving_late = group(late_ns, f"late{pages}") if late_ns > base else []
        await export_grpc(receiver.grpc_target, trace_request(arriving_newer + arriving_late, service))
        stored += len(arriving_newer) + len(arriving_late)
        await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", stored, service)
        newer |= {(s.trace_id.hex(), s.span_id.hex()) for s in arriving_newer}
        late |= {(s.trace_id.hex(), s.span_id.hex()) for s in arriving_late}

    assert pages >= 8 and late, "spans must have arrived while paging"
    assert len(seen) == len(set(seen)), "a span was returned twice"
    assert before <= set(seen), f"{len(before - set(seen))} spans that matched before paging were never returned"
    assert late <= set(seen), "spans stored inside the range not yet paged were skipped"
    assert not (newer & set(seen)), "spans newer than the first page belong to a new listing"
    assert set(seen) == before | late  # this service's spans, nothing else


async def test_a_rare_model_without_a_window_pages_exactly_with_the_rollup_bound(receiver, module_database):
    """/spans?model=M without a time window asks llm_metrics_1hour how far back the page's spans go and
    scans only from there. Pages of 3 through a model with one span every 40 minutes, among many spans of
    another model, equal the direct query page for page: including spans the rollup has not seen yet (a
    new one, and a late one dated hours back) and a page bounded by `to`."""
    from receiver.query import spans as span_query
    from receiver.query.cursor import Position

    service = f"bound-{uuid.uuid4().hex[:8]}"
    model = f"rare-{uuid.uuid4().hex[:8]}"
    now_ns = time.time_ns()
    minute = 60 * 10**9
    rare = [span(f"r{i}", start_ns=now_ns - (40 * i + 5) * minute, attributes={"gen_ai.request.model": model})
            for i in range(10)]  # fmt: skip
    common = [span(f"c{i}", start_ns=now_ns - i * 2 * minute, attributes={"gen_ai.request.model": "common-m"})
              for i in range(240)]  # fmt: skip
    await export_grpc(receiver.grpc_target, trace_request(rare + common, service))
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 250, service)
    conn = await asyncpg.connect(module_database.dsn)
    try:
        while not (await rollups.refresh(conn, 0.0)).caught_up:
            pass
        query = span_query.SpanQuery({"model": model, "limit": 3}, None)
        assert span_query.rollup_bound_applies(query)
        bound_sql, bound_args = span_query.rollup_bound_sql(query, None)
        bound = await conn.fetchval(bound_sql, *bound_args)
        assert bound is not None and bound > micros(now_ns - 400 * minute), "the first page must be bounded"
        unseen = [span("new", start_ns=now_ns - minute, attributes={"gen_ai.request.model": model}),
                  span("late", start_ns=now_ns - 170 * minute, attributes={"gen_ai.request.model": model})]  # fmt: skip
        await export_grpc(receiver.grpc_target, trace_request(unseen, service))
        await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 252, service)
        expected = [
            (r["trace_id"].hex, r["span_id"])
            for r in await conn.fetch(
                "SELECT trace_id, span_id FROM llm_traces WHERE model = $1 "
                "ORDER BY ts DESC, trace_id DESC, span_id DESC",
                model,
            )
        ]
        top = micros(now_ns - 100 * minute)
        expected_to = [
            (r["trace_id"].hex, r["span_id"])
            for r in await conn.fetch(
                "SELECT trace_id, span_id FROM llm_traces WHERE model = $1 AND ts < $2 "
                "ORDER BY ts DESC, trace_id DESC, span_id DESC",
                model,
                top,
            )
        ]
        after_second = Position(top, b"\x00" * 16, "")
        assert await conn.fetchval(*_first(span_query.rollup_bound_sql(query, after_second))) is not None
    finally:
        await conn.close()
    assert len(expected) == 12
    for extra, want in (("", expected), (f"&to={iso(top)}", expected_to)):
        seen: list[tuple[str, str]] = []
        cursor = None
        while True:
            status, body, _ = await get(
                receiver, f"/spans?model={model}&limit=3{extra}" + (f"&cursor={cursor}" if cursor else "")
            )
            assert status == 200, body
            seen.extend((s["trace_id"], s["span_id"]) for s in body["spans"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == want, f"pages{extra or ' without to'} differ from the direct query"


def _first(built: tuple[str, list[Any]]) -> list[Any]:
    sql, args = built
    return [sql, *args]


# -- usage from the rollups ---------------------------------------------------------------------------

MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku"), (None, "llama-3-70b"))


def usage_spans(now_ns: int, count: int, seed: int) -> dict[str, list[Any]]:
    """LLM spans over the last 26 hours, per environment (a resource attribute): varied models, users,
    errors, tokens and durations from 0.01 ms to minutes; a few non-LLM spans (not in the rollups)."""
    rng = random.Random(seed)
    out: dict[str, list[Any]] = {"prod": [], "staging": []}
    for i in range(count):
        start = now_ns - rng.randrange(26 * 3600) * 1_000_000_000 - rng.randrange(10**9)
        duration_ms = rng.choice((0.01, 0.5, 3.0, 42.0)) if i % 9 == 0 else math.exp(rng.uniform(math.log(0.2), 11))
        provider, model = rng.choice(MODELS)
        attributes: dict[str, object] = {"gen_ai.request.model": model, "gen_ai.operation.name": "chat"}
        if provider:
            attributes["gen_ai.provider.name"] = provider
        if i % 10 == 9:
            attributes = {"http.route": "/chat"}  # not an LLM span
        else:
            attributes["gen_ai.usage.input_tokens"] = rng.randint(1, 5000)
            if rng.random() < 0.9:
                attributes["gen_ai.usage.output_tokens"] = rng.randint(1, 900)
            attributes["user.id"] = rng.choice(("alice", "bob", "carol"))
        fields: dict[str, Any] = {}
        if rng.random() < 0.1:
            fields["status"] = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom")
        item = span(
            f"chat {model}", start_ns=start, duration_ns=int(duration_ms * 1_000_000), attributes=attributes, **fields
        )
        out[rng.choice(("prod", "staging"))].append(item)
    return out


_RAW_DIMENSIONS = {
    "provider": "provider",
    "model": "model",
    "service": "service_name",
    "user": "user_id",
    "environment": "environment",
}


async def raw_usage(conn: asyncpg.Connection, service: str, width: str, dims: list[str], lo: datetime, hi: datetime):
    columns = [_RAW_DIMENSIONS[d] for d in dims]
    sql = f"""
    SELECT date_bin('{width}', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket{"".join(", " + c for c in columns)},
           count(*) AS requests, count(*) FILTER (WHERE status_code = 'error') AS errors,
           coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
           coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(total_cost), 0) AS cost,
           min(duration_ms) AS min_ms, max(duration_ms) AS max_ms,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
           percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
    FROM llm_traces
    WHERE service_name = $1 AND (provider IS NOT NULL OR model IS NOT NULL)
      AND ts >= $2 AND ts < $3
    GROUP BY 1{"".join(", " + c for c in columns)}
    """
    rows = await conn.fetch(sql, service, lo, hi)
    return {(r["bucket"], *(r[c] for c in columns)): r for r in rows}


async def assert_usage_matches_raw(receiver, database, service: str, now: datetime) -> int:
    """Every bucket width and grouping the API offers, against SQL over the raw spans."""
    cases = [
        ("1h", ["model"], now - timedelta(hours=27), now + timedelta(hours=1)),
        ("1h", ["environment", "user"], now - timedelta(hours=27), now + timedelta(hours=1)),
        ("1h", ["environment"], now - timedelta(hours=27), now + timedelta(hours=1)),
        ("1d", ["environment", "model"], now - timedelta(days=3), now + timedelta(days=1)),
        ("1d", ["provider", "model"], now - timedelta(days=3), now + timedelta(days=1)),
        ("1d", ["user"], now - timedelta(days=3), now + timedelta(days=1)),
        ("1m", ["provider"], now - timedelta(hours=20), now),
        ("1h", [], now - timedelta(hours=27), now + timedelta(hours=1)),
    ]
    compared = 0
    conn = await asyncpg.connect(database.dsn)
    try:
        for bucket, dims, lo, hi in cases:
            width = {"1m": "1 minute", "1h": "1 hour", "1d": "1 day"}[bucket]
            query = f"/usage?bucket={bucket}&service={service}&from={iso(lo)}&to={iso(hi)}"
            if dims:
                query += "&group_by=" + ",".join(dims)
            status, body, _ = await get(receiver, query)
            assert status == 200, body
            start, end = parse_time(body["from"]), parse_time(body["to"])
            expected = await raw_usage(conn, service, width, dims, start, end)
            got = {(parse_time(r["bucket"]), *(r[d] for d in dims)): r for r in body["rows"]}
            assert set(got) == set(expected), f"{bucket} {dims}: groups differ {set(got) ^ set(expected)}"
            for key, want in expected.items():
                row = got[key]
                for column in ("requests", "errors", "input_tokens", "output_tokens", "total_tokens"):
                    assert row[column] == want[column], (bucket, dims, key, column)
                assert Decimal(row["cost"]) == want["cost"], (bucket, dims, key)
                assert (row["min_latency_ms"], row["max_latency_ms"]) == (want["min_ms"], want["max_ms"])
                for q in ("p50", "p95", "p99"):
                    assert _close_percentile(row[f"{q}_latency_ms"], want[q]), (bucket, dims, key, q)
                compared += 1
    finally:
        await conn.close()
    return compared


async def export_usage_spans(receiver: ReceiverProcess, service: str, count: int) -> None:
    by_environment = usage_spans(time.time_ns(), count, seed=5)
    for environment, spans in by_environment.items():
        for i in range(0, len(spans), 200):
            request = trace_request(spans[i : i + 200], service)
            request.resource_spans[0].resource.attributes.add(
                key="deployment.environment.name"
            ).value.string_value = environment
            await export_grpc(receiver.grpc_target, request)


async def test_usage_equals_sums_over_the_raw_spans(receiver, module_database):
    service = f"usage-{uuid.uuid4().hex[:8]}"
    await export_usage_spans(receiver, service, 1200)
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 1200, service)
    conn = await asyncpg.connect(module_database.dsn)
    try:
        while not (await rollups.refresh(conn, 0.0)).caught_up:
            pass
    finally:
        await conn.close()
    assert await assert_usage_matches_raw(receiver, module_database, service, datetime.now(UTC)) > 100


@pytest.mark.timescale
async def test_usage_and_trace_in_the_timescale_flavor(timescale_cluster, tmp_path):
    """The same answers from the TimescaleDB flavor's hypertables and rollups."""
    database = await create_database(timescale_cluster)
    proc = ReceiverProcess(database.dsn, tmp_path)
    try:
        await proc.start()
        service = f"ts-usage-{uuid.uuid4().hex[:8]}"
        await export_usage_spans(proc, service, 600)
        sent = emit_workflow(proc, service, f"ts-sess-{uuid.uuid4().hex[:8]}")
        await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 603, service)
        conn = await asyncpg.connect(database.dsn)
        try:
            while not (await rollups.refresh(conn, 0.0)).caught_up:
                pass
        finally:
            await conn.close()
        assert await assert_usage_matches_raw(proc, database, service, datetime.now(UTC)) > 50
        status, trace, _ = await get(proc, f"/traces/{format(sent[0].context.trace_id, '032x')}")
        assert status == 200 and {s["name"] for s in trace["spans"]} == {s.name for s in sent}
        status, body, _ = await get(proc, f"/spans?service={service}&status=error&limit=1000")
        errors = await database.fetchval(
            "SELECT count(*) FROM llm_traces WHERE service_name = $1 AND status_code = 'error'", service
        )
        assert status == 200 and len(body["spans"]) == errors and body["next_cursor"] is None
    finally:
        await proc.stop()
        await drop_database(database)


# -- metric points ------------------------------------------------------------------------------------


async def test_metric_points_of_one_name_in_a_window(receiver, module_database):
    name = f"queue.depth.{uuid.uuid4().hex[:6]}"
    now_ns = time.time_ns()
    points = [
        number_point(float(i), now_ns - (10 - i) * 60_000_000_000, attributes={"shard": str(i % 2)}) for i in range(10)
    ]
    points.append(number_point(7, now_ns - 30_000_000_000))  # an integer point: exact
    await export_grpc(receiver.grpc_target, metric_request([gauge(name, points)], "metrics-svc"))
    await module_database.wait_for_count("SELECT count(*) FROM llm_metrics WHERE metric_name = $1", 11, name)
    collected: list[dict[str, Any]] = []
    cursor = None
    while True:
        status, body, _ = await get(receiver, f"/metrics?name={name}&limit=4" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, body
        collected.extend(body["points"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [p["value"] for p in collected] == [*map(float, range(10)), 7]
    assert all(p["type"] == "gauge" and p["service"] == "metrics-svc" for p in collected)
    assert collected[0]["attributes"] == {"shard": "0"}
    since = datetime.fromtimestamp(now_ns / 1e9 - 150, UTC)
    status, body, _ = await get(receiver, f"/metrics?name={name}&from={iso(since)}")
    assert status == 200 and [p["value"] for p in body["points"]] == [8.0, 9.0, 7]


async def test_models_lists_the_prices_in_effect(receiver):
    status, body, _ = await get(receiver, "/models?provider=openai")
    assert status == 200 and body["currency"] == "USD"
    prices = {m["model"]: m for m in body["models"]}
    assert prices["gpt-4o-mini"]["input_price_per_million"] is not None
    assert Decimal(prices["gpt-4o-mini"]["input_price_per_million"]) > 0
    assert all(m["provider"] == "openai" for m in body["models"])
    status, body, _ = await get(receiver, "/models?at=1969-12-31")
    assert status == 200 and body["models"] == []


async def test_models_writes_prices_as_the_decimals_stored(receiver):
    """The prices are numeric's own text (not decoded to Decimal and formatted again): the same digits
    as the stored value at its scale, never an exponent, for tiny, huge and trailing-zero values."""
    stored = {
        "input_price_per_million": Decimal("0.0000001"),
        "output_price_per_million": Decimal("123456789012345678901234567890.500"),
        "cache_read_price_per_million": Decimal("2.50"),
        "cache_write_price_per_million": None,
    }
    conn = await asyncpg.connect(receiver.dsn)
    try:
        await conn.execute(
            "INSERT INTO model_pricing (provider, model, effective_date, source, input_price_per_million, "
            "output_price_per_million, cache_read_price_per_million, cache_write_price_per_million) "
            "VALUES ('scale-test', 'odd-scales', DATE '2020-01-01', 'test', $1, $2, $3, $4)",
            *stored.values(),
        )
    finally:
        await conn.close()
    status, body, _ = await get(receiver, "/models?provider=scale-test")
    assert status == 200 and len(body["models"]) == 1, body
    listed = body["models"][0]
    assert {column: listed[column] for column in stored} == {
        column: None if value is None else format(value, "f") for column, value in stored.items()
    }
    assert listed["output_price_per_million"] == "123456789012345678901234567890.500"


# -- refusals -----------------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("/spans?limit=0", "limit"),
    ("/spans?limit=1001", "limit"),
    ("/spans?limit=ten", "limit"),
    ("/spans?modle=gpt-4o", "modle"),
    ("/spans?status=fine", "status"),
    ("/spans?from=yesterday", "from"),
    ("/spans?from=2026-01-01T00:00:00", "from"),
    ("/spans?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ("/spans?min_duration_ms=-1", "min_duration_ms"),
    ("/spans?attribute=novalue", "attribute"),
    ("/spans?cursor=AAAA", "cursor"),
    ("/spans?model=a&model=b", "model"),
    ("/traces/not-a-trace-id", "trace_id"),
    ("/traces/0af7651916cd43dd8448eb211c80319c?x=1", "x"),
    ("/usage?bucket=5m", "bucket"),
    ("/usage?group_by=model,colour", "group_by"),
    ("/usage?bucket=1m&group_by=user", "bucket"),
    ("/usage?bucket=1m&from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z", "from"),
    ("/metrics", "name"),
    ("/metrics?name=x&limit=5000", "limit"),
    ("/models?at=tomorrow", "at"),
    ("/sessions/s1?limit=0", "limit"),
]


async def test_bad_parameters_are_400_naming_the_parameter(receiver):
    for path, parameter in BAD_REQUESTS:
        status, body, _ = await get(receiver, path)
        assert status == 400, (path, body)
        assert body["error"]["parameter"] == parameter, (path, body)
        assert body["error"]["message"].startswith(f"{parameter}: "), (path, body)
    for path in (
        "/traces/0af7651916cd43dd8448eb211c80319c",
        "/traces/00000000000000000000000000000000",
        f"/sessions/nobody-{uuid.uuid4().hex}",
    ):
        status, body, _ = await get(receiver, path)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    status, body, _ = await get(receiver, "/nothing-here")
    assert status == 404
    samples = await receiver.metrics()
    assert samples['observatory_query_requests_total{endpoint="spans",status="400"}'] >= 12
    assert samples['observatory_query_requests_total{endpoint="trace",status="404"}'] >= 1


async def test_a_cursor_is_bound_to_its_filters(receiver, module_database):
    service = f"cur-{uuid.uuid4().hex[:8]}"
    await export_grpc(receiver.grpc_target, trace_request([span(f"s{i}") for i in range(5)], service))
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 5, service)
    status, body, _ = await get(receiver, f"/spans?service={service}&limit=2")
    cursor = body["next_cursor"]
    assert status == 200 and cursor
    status, body, _ = await get(receiver, f"/spans?service={service}&limit=3&cursor={cursor}")
    assert status == 200 and len(body["spans"]) == 3  # the page size may change, the filters may not
    for tampered in (
        f"/spans?service=other&limit=2&cursor={cursor}",
        f"/spans?service={service}&limit=2&cursor={cursor[:-2]}{'AB' if cursor[-2:] != 'AB' else 'CD'}",
        f"/metrics?name=x&cursor={cursor}",
    ):
        status, body, _ = await get(receiver, tampered)
        assert status == 400 and body["error"]["parameter"] == "cursor", tampered


async def test_query_metrics_and_the_openapi_document(receiver):
    status, document, _ = await get(receiver, "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    from receiver.query import models, points, sessions, spans, traces, usage

    for path, module in (
        ("/api/v1/traces/{trace_id}", traces),
        ("/api/v1/spans", spans),
        ("/api/v1/sessions/{session_id}", sessions),
        ("/api/v1/usage", usage),
        ("/api/v1/metrics", points),
        ("/api/v1/models", models),
    ):
        declared = {p["name"] for p in document["paths"][path]["get"]["parameters"]}
        assert declared == {p.name for p in module.PARAMS}
    await get(receiver, "/models")
    samples = await receiver.metrics()
    assert samples['observatory_query_duration_seconds_count{endpoint="models"}'] >= 1
    assert samples['observatory_query_rows_count{endpoint="models"}'] >= 1


def test_every_operation_matches_the_openapi_document(receiver):
    """schemathesis, from the served document: every operation, with parameters that fit it and ones
    that do not, answers with a documented status and content type, a body matching the documented
    schema, never a 5xx, and refuses what the document calls invalid. Not checked: that every request
    the document allows is accepted — some limits span parameters and cannot be said in OpenAPI (`from`
    before `to`, buckets per window, per-user usage only per hour or day); those 400s are tested above."""
    schema = schemathesis.openapi.from_url(f"{receiver.query_url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    with requests.Session() as session:
        for operation in operations:
            # Few examples: generating them is most of the cost (~3 s per operation on a busy machine).
            for mode, examples in ((GenerationMode.POSITIVE, 8), (GenerationMode.NEGATIVE, 4)):

                @given(case=operation.as_strategy(mode))
                @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                def check(case):
                    case.call_and_validate(session=session, excluded_checks=[positive_data_acceptance])

                check()


# -- timeouts, keys, tenants --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def keyed(pg_cluster, tmp_path_factory):
    """A receiver with auth.mode = api_key and a 1-second statement timeout."""
    database = await create_database(pg_cluster)
    proc = ReceiverProcess(
        database.dsn,
        tmp_path_factory.mktemp("keyed"),
        auth__mode="api_key",
        auth__refresh_interval_s=0.5,
        query__statement_timeout_ms=1000,
        query__retry_after_s=3,
    )
    await proc.start()
    yield proc, database
    await proc.stop()
    await drop_database(database)


async def make_key(database, project: str, scopes: list[str]) -> tuple[str, uuid.UUID]:
    from receiver.storage.api_keys import create_key

    conn = await database.connect()
    try:
        created = await create_key(conn, project, scopes=tuple(scopes))
        project_id = await conn.fetchval("SELECT project_id FROM api_keys WHERE id = $1", created.id)
    finally:
        await conn.close()
    return created.key, project_id


async def wait_key_loaded(proc: ReceiverProcess, key: str) -> None:
    from tests.support.wait import wait_until

    async def loaded() -> bool:
        status, _, _ = await get(proc, "/models", {"Authorization": f"Bearer {key}"})
        return status != 401

    await wait_until(loaded, what="the new key loaded by the receiver")


async def test_keys_without_the_read_scope_are_refused(keyed):
    proc, database = keyed
    reader, _ = await make_key(database, "readers", ["read"])
    ingest_only, _ = await make_key(database, "writers", ["ingest"])
    await wait_key_loaded(proc, reader)
    await wait_key_loaded(proc, ingest_only)
    status, body, _ = await get(proc, "/spans")
    assert status == 401 and "missing API key" in body["error"]["message"]
    status, body, _ = await get(proc, "/spans", {"Authorization": "Bearer lobs_not-a-key"})
    assert status == 401
    status, body, _ = await get(proc, "/spans", {"x-api-key": ingest_only})
    assert status == 403 and "'read'" in body["error"]["message"]
    status, _, _ = await get(proc, "/models", {"x-api-key": reader})
    assert status == 200


async def test_a_query_over_its_statement_timeout_is_503_with_retry_after(keyed):
    proc, database = keyed
    reader, _ = await make_key(database, "slow", ["read"])
    await wait_key_loaded(proc, reader)
    headers = {"Authorization": f"Bearer {reader}"}
    blocker = await database.connect()
    transaction = blocker.transaction()
    await transaction.start()
    try:
        # Holding the table's lock makes any read of it wait; statement_timeout counts the wait.
        await blocker.execute("LOCK TABLE model_pricing IN ACCESS EXCLUSIVE MODE")
        status, body, response_headers = await get(proc, "/models", headers)
        assert status == 503, body
        assert response_headers["Retry-After"] == "3"
        assert "statement_timeout_ms = 1000" in body["error"]["message"]
    finally:
        await transaction.rollback()
        await blocker.close()
    status, body, _ = await get(proc, "/models", headers)  # the pool connections work again
    assert status == 200, body
    samples = await proc.metrics()
    assert samples['observatory_query_requests_total{endpoint="models",status="503"}'] == 1


async def test_a_key_sees_only_its_projects_rows(keyed):
    proc, database = keyed
    key_a, project_a = await make_key(database, f"tenant-a-{uuid.uuid4().hex[:6]}", ["ingest", "read"])
    key_b, _ = await make_key(database, f"tenant-b-{uuid.uuid4().hex[:6]}", ["ingest", "read"])
    await wait_key_loaded(proc, key_a)
    await wait_key_loaded(proc, key_b)
    trace_a, trace_b = uuid.uuid4().bytes, uuid.uuid4().bytes
    for key, trace_id, service in ((key_a, trace_a, "svc-a"), (key_b, trace_b, "svc-b")):
        spans = [
            span(f"{service}-{i}", trace_id=trace_id, attributes={"session.id": f"sess-{service}"}) for i in range(3)
        ]
        await export_grpc(proc.grpc_target, trace_request(spans, service), metadata=(("x-api-key", key),))
    await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name LIKE 'svc-_'", 6)
    a = {"x-api-key": key_a}
    # By id.
    assert (await get(proc, f"/traces/{trace_a.hex()}", a))[0] == 200
    assert (await get(proc, f"/traces/{trace_b.hex()}", a))[0] == 404
    assert (await get(proc, "/sessions/sess-svc-b", a))[0] == 404
    # By filter.
    status, body, _ = await get(proc, "/spans?service=svc-b", a)
    assert status == 200 and body["spans"] == []
    status, body, _ = await get(proc, "/spans?limit=1000", a)
    assert {s["service"] for s in body["spans"]} == {"svc-a"}
    status, body, _ = await get(proc, f"/spans?project={uuid.uuid4()}", a)
    assert status == 403 and body["error"]["parameter"] == "project"
    # By cursor: B's cursor is not valid for A.
    status, body, _ = await get(proc, "/spans?limit=1", {"x-api-key": key_b})
    status, body, _ = await get(proc, f"/spans?limit=1&cursor={body['next_cursor']}", a)
    assert status == 400 and body["error"]["parameter"] == "cursor"
    status, body, _ = await get(proc, "/usage?group_by=project", a)
    assert status == 200 and {r["project"] for r in body["rows"]} <= {str(project_a)}
