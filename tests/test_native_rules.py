"""The GenAI rules in C (LlmRules, receiver/convert/_genai_rules.c) against genai.py, their reference.

The native rules execute genai.py's tables and answer only where they are certain; elsewhere they say
"don't know" (None) and the span takes extract_llm_fields. So two things are checked on generated
attribute sets that reach every key of every group with values of every type: where C answers, every
field equals extract_llm_fields' (value and type); and C does answer for the spans real instrumentations
send, so the fast path is not a fallback in disguise. Then whole rows: requests of such spans through
convert_traces_bytes (native rules, pricing, fallbacks) against the pure converter, column by column.
"""

from __future__ import annotations

import dataclasses
import gc
import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver import schema
from receiver.convert import genai, traces_bytes
from receiver.convert.traces_bytes import NATIVE_STATUS
from tests.support.differential import OPTIONS, assert_same
from tests.support.llmattrs import GROUP_KEYS, RULES, SCOPES, AttributeSets, assert_same_fields

pytestmark = pytest.mark.skipif(RULES is None, reason=NATIVE_STATUS)

def test_generated_attribute_sets_give_the_same_fields_or_fall_back():
    rng = random.Random(17)
    sets = AttributeSets(rng)
    answered = total = 0
    for _ in range(20000):
        attrs = sets.attrs()
        answered += assert_same_fields(attrs, rng.choice(SCOPES))
        total += 1
    # The generator's reach: C answers most sets (and so is compared on them), declines some.
    assert total * 0.5 < answered < total, (answered, total)


def test_typical_instrumentation_spans_never_fall_back_and_agree():
    rng = random.Random(18)
    sets = AttributeSets(rng)
    for _ in range(3000):
        attrs = sets.typical()
        scope = rng.choice(SCOPES)
        assert assert_same_fields(attrs, scope), f"fell back on a typical span: {attrs!r}"


@pytest.mark.parametrize(
    "attrs, scope",
    [
        # Crowded groups: the best key's value is no count, the next key's is (first_count).
        ({"gen_ai.usage.input_tokens": "n/a", "llm.token_count.prompt": 12, "gen_ai.usage.output_tokens": 3}, None),
        ({"gen_ai.usage.input_tokens": [1], "gen_ai.usage.prompt_tokens": 7.0, "llm.usage.prompt_tokens": 9}, None),
        ({"gen_ai.usage.output_tokens": True, "ai.usage.outputTokens": " 4 "}, None),
        # Cache counts added back: by scope, and when they cannot be inclusive.
        ({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_read.input_tokens": 90}, None),
        (
            {"gen_ai.system": "anthropic", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read_input_tokens": 5},
            "openlit.instrumentation.anthropic",
        ),
        (
            {"gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning_tokens": 4, "gen_ai.usage.total_tokens": 11},
            "openlit.instrumentation.google_ai_studio",
        ),
        # Providers: aliases, dotted suffixes, frameworks that are no provider, Azure by host and version.
        ({"ai.model.provider": "google.vertex.chat"}, None),
        ({"gen_ai.system": "LangChain", "gen_ai.request.model": "gpt-4o"}, None),
        ({"gen_ai.system": "openai", "gen_ai.openai.api_base": "https://r.openai.azure.com/"}, None),
        ({"gen_ai.system": "openai", "gen_ai.openai.api_version": "2024-06-01"}, None),
        ({"gen_ai.system": 42, "llm.system": "openai"}, None),
        # Operation from the instrumentation's span kind.
        ({"openinference.span.kind": "retriever"}, None),
        ({"traceloop.span.kind": "Workflow", "gen_ai.operation.name": ""}, None),
        ({"gen_ai.operation.name": ["chat"], "llm.request.type": "Completion"}, None),
        # Text values of other types; ids; tags.
        ({"gen_ai.request.model": 4, "gen_ai.response.model": 2.5, "user.id": True, "tag.tags": ["a", None, 3]}, None),
    ],
)
def test_hand_written_cases_agree_and_are_answered_natively(attrs, scope):
    assert assert_same_fields(attrs, scope)


@pytest.mark.parametrize(
    "attrs",
    [
        {"ai.operationId": "ai.generateText", "ai.usage.promptTokens": 3},
        {"ai.operationId": None, "gen_ai.usage.input_tokens": 3},
        {"llm.invocation_parameters": '{"model": "gpt-4o"}'},
        {"llm.cost.total": 0.5, "gen_ai.usage.input_tokens": 3},
        {"gen_ai.usage.input_tokens": "1_000"},
        {"gen_ai.usage.input_tokens": 2**61},
        {"gen_ai.system": "OPENAİ"},
        {"user.id": "u" * 129},
        {"gen_ai.system": "openai", "server.address": "ｘ.openai.azure.com"},
    ],
)
def test_what_the_native_rules_leave_to_python(attrs):
    assert RULES.extract(attrs, None) is None


def test_every_key_of_every_group_is_read_natively():
    """Each key alone, with a value of each kind, answered by C and equal to genai.py."""
    for key in GROUP_KEYS:
        if key in genai.INPUT_COST_KEYS + genai.OUTPUT_COST_KEYS + genai.TOTAL_COST_KEYS:
            assert RULES.extract({key: 1}, None) is None
            continue
        for value in ("gpt-4o", 12, 12.0, " 12 ", True, ["a", 1], "openai.chat"):
            assert assert_same_fields({key: value}, None), (key, value)


def _any_value(value: Any) -> common_pb2.AnyValue:
    if value is None:
        return common_pb2.AnyValue()
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=max(-(2**63), min(2**63 - 1, value)))
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any_value(v) for v in value]))
    if isinstance(value, dict):
        pairs = [common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in value.items()]
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=pairs))
    return common_pb2.AnyValue(string_value=value)


def _chat_span(rng: random.Random, attrs: dict[str, Any], start: int, duration: int) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=rng.randbytes(16),
        span_id=rng.randbytes(8),
        name="chat",
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=[common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()],
    )


def _request(rng: random.Random, sets: AttributeSets, spans: int) -> bytes:
    scopes = []
    for _ in range(rng.randint(1, 3)):
        batch = []
        for _ in range(spans):
            attrs = sets.typical() if rng.random() < 0.6 else sets.attrs()
            if rng.random() < 0.1:
                attrs[rng.choice(genai.TOTAL_COST_KEYS)] = rng.choice((0, 0.25, "0.1"))
            start = 1_763_000_000_000_000_000 + rng.getrandbits(40)
            batch.append(_chat_span(rng, attrs, start, rng.randint(0, 10**10)))
        scope = rng.choice(SCOPES) or ""
        scopes.append(
            trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name=scope), spans=batch)
        )
    resource_attrs = [common_pb2.KeyValue(key="service.name", value=_any_value("svc"))]
    if rng.random() < 0.5:
        resource_attrs.append(common_pb2.KeyValue(key="deployment.environment", value=_any_value("staging")))
    resource = resource_pb2.Resource(attributes=resource_attrs)
    message = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=scopes)]
    )
    return message.SerializeToString()


def test_rows_of_genai_requests_equal_the_pure_converters(monkeypatch):
    """Whole rows: native rules, pricing (priced and unpriced models, costs the span states) and fallbacks."""
    rng = random.Random(19)
    sets = AttributeSets(rng)
    fallbacks = []
    python_row = traces_bytes._python_row
    monkeypatch.setattr(traces_bytes, "_python_row", lambda *args: fallbacks.append(1) or python_row(*args))
    rows = 0
    for options in (OPTIONS, dataclasses.replace(OPTIONS, native_rules=False)):
        for _ in range(60):
            converted = assert_same(_request(rng, sets, 20), options)
            assert converted is not None and converted.rows
            rows += len(converted.rows) if options.native_rules else 0
    # Most rows were made in C, some by the fallback (both compared above).
    assert 0 < len(fallbacks) < rows * 0.4, (len(fallbacks), rows)


def test_native_rows_with_lists_are_left_out_of_the_collectors_passes():
    """Finish reasons and tags are lists of str: the rows holding them are untracked as made, so full
    collections while the queue holds tens of thousands of rows do not walk them."""
    attrs = {"gen_ai.system": "openai", "gen_ai.response.finish_reasons": ["stop"], "tag.tags": "a"}
    span = trace_pb2.Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="chat",
        start_time_unix_nano=1_763_000_000_000_000_000,
        end_time_unix_nano=1_763_000_001_000_000_000,
        attributes=[common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()],
    )
    message = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]
    )
    converted = assert_same(message.SerializeToString(), OPTIONS)
    assert converted is not None
    row = dict(zip(schema.TRACES_COLUMNS, converted.rows[0], strict=True))
    assert (row["finish_reasons"], row["tags"]) == (["stop"], ["a"])
    assert not gc.is_tracked(converted.rows[0])


def _priced_request(rng: random.Random, models: list[tuple[str, str]], spans: int) -> bytes:
    """GenAI spans with every combination of token counts compute_cost treats apart: absent, 0, cache and
    reasoning counts within and over their totals, at any time of day (for time-of-day prices)."""

    def count() -> int | None:
        return rng.choice((None, 0, 1, rng.randint(2, 5000), rng.randint(10**6, 10**9)))

    batch = []
    for _ in range(spans):
        provider, model = rng.choice(models)
        attrs: dict[str, Any] = {"gen_ai.request.model": model, "gen_ai.operation.name": "chat"}
        if provider:
            attrs["gen_ai.provider.name"] = provider
        for key in (
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.reasoning.output_tokens",
        ):
            value = count()
            if value is not None:
                attrs[key] = value
        if rng.random() < 0.5:  # ensure tokens were used, so the span is priced
            attrs["gen_ai.usage.input_tokens"] = rng.randint(1, 3000)
        start = 1_763_000_000_000_000_000 + rng.randrange(3 * 86_400) * 10**9
        batch.append(_chat_span(rng, attrs, start, 10**9))
    message = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=batch)])]
    )
    return message.SerializeToString()


def test_costs_computed_in_c_equal_compute_costs_digit_for_digit(monkeypatch):
    """Plain prices are computed in C from PriceBook.plan's rates, with no Python call per span; the
    costs must be compute_cost's to the digit and exponent (numeric keeps both: 0.0030 is not 0.003).
    Tiered and time-of-day prices still take compute_cost, span by span."""
    from datetime import time as day_time
    from decimal import Decimal as D

    from receiver.convert.pricing import ModelPrice, PriceBook, TimeOfDayPrices

    plain = [
        ModelPrice("openai", "gpt-4o", D("2.50"), D("10"), D("1.25")),
        ModelPrice("anthropic", "claude-x", D("3"), D("15"), D("0.30"), D("3.75")),
        ModelPrice("openai", "o-think", D("1.1"), D("4.4"), D("0.275"), reasoning_per_million=D("8.80")),
        ModelPrice("acme", "fee-model", D("0.075"), D("1E+1"), per_thousand_requests=D("5")),
        ModelPrice("acme", "free-model", D("0"), D("0.00")),
    ]
    tiered = ModelPrice("gcp.gemini", "gemini-tiered", D("1.25"), D("10"), tiers=((200_000, "input", D("2.50")),))
    off_peak = ModelPrice("deepseek", "night-model", D("0.135"), D("0.55"), D("0.035"))
    peak = ModelPrice("deepseek", "night-model", D("0.27"), D("1.10"), D("0.07"))
    timed = TimeOfDayPrices(((day_time(16, 30), day_time(0, 30), off_peak),), peak)

    def maintained(provider, model, day):
        return timed if model == "night-model" else None

    book = PriceBook([*plain, tiered], maintained, "test")
    options = dataclasses.replace(OPTIONS, price_book=book)
    calls: list[str] = []
    pricer = traces_bytes._pricer

    def counting(book):
        price = pricer(book)
        return lambda provider, model, *rest: calls.append(model) or price(provider, model, *rest)

    monkeypatch.setattr(traces_bytes, "_pricer", counting)
    rng = random.Random(23)
    models = [(p.provider, p.model) for p in plain] + [(None, "gpt-4o"), ("", "claude-x"), (None, "unknown-model")]
    for _ in range(40):
        converted = assert_same(_priced_request(rng, models, 50), options)
        assert converted is not None
    assert calls == [], "plain prices must be computed in C, without calling price()"
    costs = {row[schema.TRACES_COLUMNS.index("total_cost")] for row in converted.rows}
    assert len(costs) > 20  # really priced: many different costs
    per_span = [("gcp.gemini", "gemini-tiered"), ("deepseek", "night-model")]
    for _ in range(10):
        assert assert_same(_priced_request(rng, per_span, 50), options)
    assert {"gemini-tiered", "night-model"} <= set(calls)


def test_trace_ids_built_in_place_are_whole_uuids():
    """The decoder builds each trace id's Uuid in place (no bytes object, no type call): it must be the
    same value as Uuid(raw) — equal, the same hash (dicts mixing them must agree), NUL-terminated bytes,
    .bytes and repr — and untracked by the collector."""
    from receiver.convert.pgvalues import Uuid

    raw = bytes(range(1, 17))
    span = trace_pb2.Span(trace_id=raw, span_id=b"\x02" * 8, name="op", start_time_unix_nano=1, end_time_unix_nano=2)
    message = ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span] * 3)])]
    )
    rows = traces_bytes.convert_traces_bytes(message.SerializeToString(), OPTIONS).rows
    column = schema.TRACES_COLUMNS.index("trace_id")
    made = [row[column] for row in rows]
    expected = Uuid(raw)
    for uuid in made:
        assert type(uuid) is Uuid
        assert uuid == expected == raw and hash(uuid) == hash(expected) == hash(raw)
        assert {raw: 1}[uuid] == 1
        assert uuid.bytes == raw and bytes(uuid) + b"" == raw and repr(uuid) == repr(expected)
        assert not gc.is_tracked(uuid)
    assert made[0] is not made[1]
