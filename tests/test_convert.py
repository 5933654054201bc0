"""Pure conversion: attribute names of each instrumentation family, cost rules, validation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from receiver import schema
from receiver.convert.attributes import ConversionStats, clean_text
from receiver.convert.common import ConvertOptions
from receiver.convert.genai import extract_llm_fields
from receiver.convert.pricing import ModelPrice, PriceBook, compute_cost
from receiver.convert.traces import convert_traces
from tests.support.otlp import span, trace_request

COL = {name: i for i, name in enumerate(schema.TRACES_COLUMNS)}
BOOK = PriceBook(
    [
        ModelPrice("openai", "gpt-4o", Decimal("2.50"), Decimal("10"), Decimal("1.25")),
        ModelPrice("openai", "gpt-4o-mini", Decimal("0.15"), Decimal("0.60")),
        ModelPrice("anthropic", "claude-3-5-sonnet", Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75")),
        ModelPrice("openai", "o1", Decimal("15"), Decimal("60"), effective_date=date(2024, 1, 1)),
        ModelPrice("openai", "o1", Decimal("10"), Decimal("40"), effective_date=date(2025, 6, 1)),
        ModelPrice("azure.ai.openai", "gpt-4.1", Decimal("2.2"), Decimal("8.8")),
        ModelPrice("openai", "gpt-4.1", Decimal("2"), Decimal("8")),
    ]
)


def convert_one(attributes: dict[str, object], **span_fields: object) -> dict[str, object]:
    converted = convert_traces(
        trace_request([span(attributes=attributes, **span_fields)], "svc"), ConvertOptions(price_book=BOOK)
    )
    assert converted.rejected == 0, converted.errors
    return dict(zip(schema.TRACES_COLUMNS, converted.rows[0], strict=True))


@pytest.mark.parametrize(
    ("family", "attributes"),
    [
        (
            "genai current",
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.operation.name": "chat",
            },
        ),
        (
            "genai deprecated",
            {
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.prompt_tokens": 100,
                "gen_ai.usage.completion_tokens": 20,
                "gen_ai.operation.name": "chat",
            },
        ),
        (
            "openllmetry",
            {
                "gen_ai.system": "OpenAI",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.prompt_tokens": 100,
                "gen_ai.usage.completion_tokens": 20,
                "llm.request.type": "chat",
                "llm.usage.total_tokens": 120,
            },
        ),
        (
            "openinference",
            {
                "openinference.span.kind": "LLM",
                "llm.system": "openai",
                "llm.model_name": "gpt-4o",
                "llm.token_count.prompt": 100,
                "llm.token_count.completion": 20,
            },
        ),
    ],
)
def test_every_family_yields_the_same_llm_columns(family, attributes):
    row = convert_one(attributes)
    assert row["provider"] == "openai", family
    assert row["model"] == "gpt-4o"
    assert row["operation"] == "chat"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (100, 20, 120)
    assert row["total_cost"] == Decimal("0.00045")  # 100 x 2.50/M + 20 x 10/M
    assert row["cost_source"] == "pricing"


def test_cost_carried_by_the_span_wins_over_the_price_table():
    row = convert_one(
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10,
            "llm.cost.prompt": 0.1,
            "llm.cost.completion": 0.2,
        }
    )
    assert (row["input_cost"], row["output_cost"]) == (Decimal("0.1"), Decimal("0.2"))
    assert row["total_cost"] == Decimal("0.3")  # exact: the floats' shortest repr, not their binary value
    assert row["cost_source"] == "span"
    row = convert_one({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.cost": "0.0123"})  # OpenLIT
    assert row["total_cost"] == Decimal("0.0123") and row["input_cost"] is None


def test_model_matching_rule():
    assert BOOK.lookup("openai", "gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # longest prefix
    assert BOOK.lookup("openai", "gpt-4o-2024-08-06").model == "gpt-4o"
    assert BOOK.lookup(None, "openai/gpt-4o").model == "gpt-4o"  # provider path stripped
    assert BOOK.lookup("openai", "GPT-4O").model == "gpt-4o"  # case-insensitive
    assert BOOK.lookup("openai", "gpt-4omni") is None  # prefix must end at a separator
    assert BOOK.lookup("anthropic", "claude-3-5-sonnet-20241022").provider == "anthropic"
    assert BOOK.lookup("azure.ai.openai", "gpt-4.1").input_per_million == Decimal("2.2")  # provider's own price
    assert BOOK.lookup("openai", "gpt-4.1").input_per_million == Decimal("2")
    assert BOOK.lookup("somecloud", "gpt-4.1") is None  # two providers price it: ambiguous
    assert BOOK.lookup("somecloud", "claude-3-5-sonnet").provider == "anthropic"  # unambiguous fallback
    assert BOOK.lookup("openai", "o1", date(2024, 3, 1)).input_per_million == Decimal("15")
    assert BOOK.lookup("openai", "o1", date(2025, 7, 1)).input_per_million == Decimal("10")
    assert BOOK.lookup("openai", "o1", date(2023, 1, 1)) is None  # before any price


def test_provider_is_filled_from_the_matched_price():
    row = convert_one({"gen_ai.request.model": "claude-3-5-sonnet-latest", "gen_ai.usage.input_tokens": 1000})
    assert row["provider"] == "anthropic" and row["total_cost"] == Decimal("0.003")


def test_cached_tokens_are_priced_at_the_cache_rate():
    price = BOOK.lookup("anthropic", "claude-3-5-sonnet")
    cost = compute_cost(price, input_tokens=1000, output_tokens=100, cache_read_tokens=600, cache_write_tokens=200)
    # 200 uncached x 3 + 600 x 0.30 + 200 x 3.75 = 600 + 180 + 750 -> 0.00153; 100 x 15 -> 0.0015
    assert cost.input == Decimal("0.00153") and cost.output == Decimal("0.0015")
    # Inconsistent counts (more cached than input) fall back to pricing every input token at the input rate.
    assert compute_cost(price, 10, 0, cache_read_tokens=50).input == Decimal("0.00003")


def test_token_counts_from_strings_and_floats_and_garbage():
    fields = extract_llm_fields(
        {"gen_ai.usage.input_tokens": "42", "gen_ai.usage.output_tokens": 7.0, "llm.token_count.total": "n/a"}
    )
    assert (fields.input_tokens, fields.output_tokens, fields.total_tokens) == (42, 7, 49)
    fields = extract_llm_fields({"gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 1.5})
    assert fields.input_tokens is None and fields.output_tokens is None and fields.total_tokens is None


def test_user_session_and_operation_fallbacks():
    fields = extract_llm_fields({"enduser.id": "e1", "gen_ai.conversation.id": "c1", "traceloop.span.kind": "agent"})
    assert (fields.user_id, fields.session_id, fields.operation) == ("e1", "c1", "invoke_agent")
    fields = extract_llm_fields(
        {"traceloop.association.properties.user_id": "u2", "traceloop.association.properties.session_id": "s2"}
    )
    assert (fields.user_id, fields.session_id) == ("u2", "s2")


def test_validation_messages_name_the_span_and_the_problem():
    spans = [
        span("a", trace_id=bytes(16)),
        span("b", span_id=b"\x01" * 4),
        span("c", parent_span_id=b"\x01" * 3),
        span("d", start_ns=0),
        span("e"),
    ]
    converted = convert_traces(trace_request(spans, "svc"), ConvertOptions())
    assert converted.rejected == 4 and len(converted.rows) == 1
    assert converted.errors[0].startswith("span 0 ('a', trace 0000")
    assert "trace_id is all zeros" in converted.errors[0]
    assert "span_id has 4 bytes, expected 8" in converted.errors[1]
    assert "parent_span_id has 3 bytes" in converted.errors[2]
    assert "start_time_unix_nano is missing" in converted.errors[3]


def test_all_zero_parent_means_root_and_unknown_enums_are_kept_safe():
    row = convert_one({}, parent_span_id=bytes(8), kind=42)
    assert row["parent_span_id"] is None and row["span_kind"] == "unspecified"


def test_clean_text_caps_utf8_bytes_without_splitting_a_character():
    stats = ConversionStats()
    text = clean_text("ab" + "€" * 10, 8, stats)  # € is 3 bytes: 2 + 3 + 3 = 8 fit
    assert text == "ab€€…[truncated 24 bytes]"
    assert stats.truncated_values == 1
    assert clean_text("short", 8, stats) == "short"


def test_user_and_session_ids_are_bounded_index_keys():
    """user_id and session_id are btree keys (migration 009): an entry over ~2.7 KB would fail its whole
    COPY batch, so a longer id keeps its start plus a hash of the whole value, and two long ids that
    share a start stay distinct. Normal ids are untouched."""
    from receiver.convert.genai import KEY_MAX_BYTES, as_key

    assert as_key("user-42") == "user-42"
    assert as_key("é" * (KEY_MAX_BYTES // 2)) == "é" * (KEY_MAX_BYTES // 2)  # exactly the limit in bytes
    first, second = as_key("u" * 5000 + "a"), as_key("u" * 5000 + "b")
    assert first != second
    for key in (first, second, as_key("€" * 3000)):
        assert len(key.encode()) <= KEY_MAX_BYTES
    assert first.startswith("u" * 100)
