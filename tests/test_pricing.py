"""Prices: the receiver's cost equals genai-prices' own calculation; unpriced is not free."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from receiver.convert.common import ConvertOptions
from receiver.convert.price_source import GenaiPrices, provider_name
from receiver.convert.pricing import ModelPrice, PriceBook, compute_cost
from receiver.convert.traces import convert_traces
from receiver.schema import TRACES_COLUMNS
from tests.support.otlp import span, trace_request

MAINTAINED = GenaiPrices()
BOOK = PriceBook([ModelPrice("openai", "gpt-4o", Decimal("2"), Decimal("8"))], MAINTAINED, MAINTAINED.name)
USAGE = {"input_tokens": 300_000, "cache_read_tokens": 1200, "cache_write_tokens": 300, "output_tokens": 5000}


def test_every_model_in_genai_prices_costs_what_genai_prices_says():
    moment = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    compared = 0
    for provider in MAINTAINED._snapshot.providers:
        for info in provider.models:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = calc_price(Usage(**USAGE), info.id, provider_id=provider.id, genai_request_timestamp=moment)
            except (LookupError, ValueError):
                continue  # genai-prices cannot price it either
            price = MAINTAINED(provider_name(provider.id), info.id, moment.date())
            price = price.at(moment) if hasattr(price, "at") else price
            got = compute_cost(price, 300_000, 5000, 1200, 300)
            assert (got.input, got.output, got.total) == (want.input_price, want.output_price, want.total_price), (
                provider.id,
                info.id,
            )
            compared += 1
    assert compared > 1000


def _row(attributes: dict) -> dict:
    out = convert_traces(trace_request([span(attributes=attributes)], "svc"), ConvertOptions(price_book=BOOK))
    return dict(zip(TRACES_COLUMNS, out.rows[0], strict=True))


def test_a_zero_span_cost_on_a_call_with_tokens_falls_back_to_the_price_table():
    attributes = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
        "gen_ai.usage.cost": 0,  # OpenLIT, for a model it has no price for
    }
    row = _row(attributes)
    assert row["cost_source"] == "pricing"
    assert row["total_cost"] == Decimal("0.0015")  # 1000 x 1 + 100 x 5 per million


@pytest.mark.parametrize(
    ("attributes", "source"),
    [
        ({"gen_ai.provider.name": "ollama", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5}, "unpriced"),
        ({"gen_ai.request.model": "x", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.cost": 0}, "unpriced"),
        ({"gen_ai.request.model": "x", "gen_ai.usage.cost": 0}, "span"),  # no tokens: a real zero
    ],
)
def test_unpriced_is_not_free(attributes, source):
    row = _row(attributes)
    assert row["cost_source"] == source
    assert row["total_cost"] == (Decimal(0) if source == "span" else None)


def test_a_local_price_wins_over_genai_prices():
    row = _row({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000})
    assert row["total_cost"] == Decimal("0.002")
