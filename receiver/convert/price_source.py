"""The maintained price source: genai-prices (Pydantic; PyPI), read from the data bundled in the installed
package — never fetched at run time, so upgrading the package is how prices are updated.

It plugs into a PriceBook as its resolver: (provider, model, day) -> our ModelPrice, using genai-prices'
own provider and model matching (patterns per model, Azure / Bedrock / Vertex falling back to the
vendor's models) and its price history (start-date and time-of-day prices). The PriceBook caches what
each (provider, model, day) resolves to, because matching and genai-prices' own `calc_price` cost
tens of µs to ms per call. `rows()` lists every price in the package for the `model_pricing` table.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from receiver.convert.pricing import EPOCH, ModelPrice, TimeOfDayPrices

SOURCE = "genai-prices"

# Provider names as the OpenTelemetry GenAI conventions spell them (what `provider` columns hold) ->
# genai-prices provider ids. Names not listed are passed as they are (genai-prices matches most ids,
# e.g. groq, deepseek, cohere, perplexity, together, fireworks).
GENAI_PRICES_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
}
# genai-prices provider id -> the conventions' name, for spans that named no provider.
GENAI_PROVIDER_NAME = {
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "google": "gcp.gemini",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
}

# genai-prices price keys -> the parts of a ModelPrice (USD per million tokens). Other keys (audio,
# images, web searches, …) price counts spans do not carry: they are recorded in model_pricing
# (other_prices) but add nothing to a span's cost — as in genai-prices for a call that reports none.
_PART_OF_KEY = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}
_REQUESTS_KEY = "requests_kcount"


@dataclass(frozen=True, slots=True)
class RecordedPrice:
    """One row of model_pricing from the maintained source."""

    price: ModelPrice
    match: str  # genai-prices' matching rule for the model, as text
    other_prices: dict[str, Any]  # price keys with no column, JSON-ready (tiers, audio, searches, …)


def provider_id(provider: str | None) -> str | None:
    """The genai-prices provider id for a provider name of the conventions."""
    if provider is None:
        return None
    return GENAI_PRICES_PROVIDER.get(provider, provider)


def provider_name(genai_prices_id: str) -> str:
    return GENAI_PROVIDER_NAME.get(genai_prices_id, genai_prices_id)


def _decimal_text(value: Any) -> Any:
    """A genai-prices price value (Decimal or tiered) as JSON-ready text."""
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is not None:
        return {"base": str(value.base), "tiers": [[t.start, str(t.price)] for t in tiers]}
    return str(value)


def convert_price(provider: str, model: str, raw: Any, effective: date, version: str) -> tuple[ModelPrice, dict]:
    """A genai-prices ModelPrice -> ours (and the keys it has no part for)."""
    parts: dict[str, Decimal | None] = dict.fromkeys(("input", "output", "cache_read", "cache_write", "reasoning"))
    tiers: list[tuple[int, str, Decimal]] = []
    other: dict[str, Any] = {}
    per_thousand_requests = None
    for key, value in vars(raw).items():
        if key.startswith("_") or value is None:
            continue
        part = _PART_OF_KEY.get(key)
        if part is None:
            if key == _REQUESTS_KEY and isinstance(value, Decimal):
                per_thousand_requests = value
            else:
                other[key] = _decimal_text(value)
            continue
        if isinstance(value, Decimal):
            parts[part] = value
        else:  # TieredPrices: the base price, and a tier per threshold
            parts[part] = value.base
            tiers.extend((tier.start, part, tier.price) for tier in value.tiers)
            other[key] = _decimal_text(value)
    if per_thousand_requests is not None:
        other[_REQUESTS_KEY] = str(per_thousand_requests)
    price = ModelPrice(
        provider=provider,
        model=model,
        input_per_million=parts["input"] or Decimal(0),
        output_per_million=parts["output"] or Decimal(0),
        cache_read_per_million=parts["cache_read"],
        cache_write_per_million=parts["cache_write"],
        effective_date=effective,
        reasoning_per_million=parts["reasoning"],
        per_thousand_requests=per_thousand_requests,
        tiers=tuple(sorted(tiers)),
        source=f"{SOURCE} {version}",
    )
    return price, other


def _describe_match(clause: Any) -> str:
    for attr, label in (
        ("equals", "="),
        ("starts_with", "starts with "),
        ("ends_with", "ends with "),
        ("contains", "contains "),
        ("regex", "matches "),
    ):
        value = getattr(clause, attr, None)
        if isinstance(value, str):
            return f"{label}{value}"
    if getattr(clause, "or_", None) is not None:
        return " | ".join(_describe_match(c) for c in clause.or_)
    if getattr(clause, "and_", None) is not None:
        return " & ".join(f"({_describe_match(c)})" for c in clause.and_)
    return repr(clause)


class GenaiPrices:
    """The genai-prices data of the installed package, as a PriceBook resolver. Loading it imports
    ~2 MB of Python data (about a second): do it off the event loop, once per (re)load."""

    def __init__(self, fresh: bool = False) -> None:
        if fresh:  # SIGHUP after a package upgrade: import the installed version anew
            for name in [m for m in sys.modules if m == "genai_prices" or m.startswith("genai_prices.")]:
                del sys.modules[name]
        import genai_prices
        from genai_prices import types
        from genai_prices.data_snapshot import get_snapshot

        self.version: str = genai_prices.__version__
        self.name = f"{SOURCE} {self.version}"
        self._types = types
        self._snapshot = get_snapshot()
        self._lock = threading.Lock()  # the snapshot's own lookup caches are plain dicts

    def __call__(self, provider: str | None, model: str, on: date) -> ModelPrice | TimeOfDayPrices | None:
        try:
            with self._lock:
                found, info = self._snapshot.find_provider_model(model, None, provider_id(provider), None)
        except LookupError:
            return None
        return self._price_on(found.id, info, on)

    def match_rule(self, provider: str | None, model: str) -> str | None:
        """genai-prices' matching rule of the model `model` resolves to, as text."""
        try:
            with self._lock:
                _, info = self._snapshot.find_provider_model(model, None, provider_id(provider), None)
        except LookupError:
            return None
        return _describe_match(info.match)

    def in_effect(self, on: date) -> Iterator[ModelPrice]:
        """Every model's price on day `on` (time-of-day prices: the price outside their windows)."""
        for provider in self._snapshot.providers:
            for info in provider.models:
                price = self._price_on(provider.id, info, on)
                if isinstance(price, TimeOfDayPrices):
                    price = price.default
                if price is not None:
                    yield price

    def _price_on(self, provider_id_: str, info: Any, on: date) -> ModelPrice | TimeOfDayPrices | None:
        """What genai-prices' ModelInfo.get_prices gives on day `on`: the last active conditional price,
        else the first. Time-of-day prices depend on the moment, so they stay a TimeOfDayPrices."""
        name = provider_name(provider_id_)
        types = self._types
        prices = info.prices
        if not isinstance(prices, list):
            return self._ours(name, info, prices, EPOCH)
        noon = datetime.combine(on, time(12), UTC)
        windows: list[tuple[time, time, ModelPrice]] = []
        chosen = None
        for conditional in reversed(prices):
            constraint = conditional.constraint
            if isinstance(constraint, types.TimeOfDateConstraint):
                start = datetime.combine(on, constraint.start_time, constraint.start_time.tzinfo or UTC)
                end = datetime.combine(on, constraint.end_time, constraint.end_time.tzinfo or UTC)
                windows.append(
                    (
                        start.astimezone(UTC).time(),
                        end.astimezone(UTC).time(),
                        self._ours(name, info, conditional.prices, EPOCH),
                    )
                )
            elif constraint is None or constraint.active(noon):
                chosen = conditional
                break
        if chosen is None:
            chosen = prices[0]
        effective = getattr(chosen.constraint, "start_date", EPOCH)
        default = self._ours(name, info, chosen.prices, effective)
        if not windows:
            return default
        return TimeOfDayPrices(tuple(windows), default)

    def _ours(self, provider: str, info: Any, raw: Any, effective: date) -> ModelPrice:
        return convert_price(provider, info.id, raw, effective, self.version)[0]

    def rows(self) -> Iterator[RecordedPrice]:
        """Every price in the package, one per (provider, model, start date); time-of-day prices are
        recorded in other_prices of the row they modify."""
        types = self._types
        for provider in self._snapshot.providers:
            name = provider_name(provider.id)
            for info in provider.models:
                match = _describe_match(info.match)
                prices = info.prices if isinstance(info.prices, list) else [types.ConditionalPrice(prices=info.prices)]
                by_date: dict[date, RecordedPrice] = {}
                time_of_day: list[dict[str, Any]] = []
                for conditional in prices:
                    constraint = conditional.constraint
                    if isinstance(constraint, types.TimeOfDateConstraint):
                        price, other = convert_price(name, info.id, conditional.prices, EPOCH, self.version)
                        time_of_day.append(
                            {
                                "utc_start": constraint.start_time.isoformat(),
                                "utc_end": constraint.end_time.isoformat(),
                                "input": str(price.input_per_million),
                                "output": str(price.output_per_million),
                                "cache_read": _decimal_text(price.cache_read_per_million),
                                **other,
                            }
                        )
                        continue
                    effective = getattr(constraint, "start_date", EPOCH)
                    price, other = convert_price(name, info.id, conditional.prices, effective, self.version)
                    by_date[effective] = RecordedPrice(price, match, other)
                for recorded in by_date.values():
                    if time_of_day:
                        recorded.other_prices["time_of_day"] = time_of_day
                    yield recorded
