"""Model prices and the rule that matches a span's model to one of them.

Matching rule (documented in the README): model names are compared case-insensitively, after removing
a leading `provider/` or `models/` path. An exact model name wins; otherwise the longest priced name
that is a prefix of the span's model followed by one of `- : @ .` (so `gpt-4o-mini-2024-07-18` takes
the price of `gpt-4o-mini`, not of `gpt-4o`). When the span names its provider, prices of that
provider are preferred; a model no price of that provider matches falls back to any provider's price
only if that is unambiguous. Among prices of one model, the newest `effective_date` on or before the
span's date applies. Costs are exact Decimals and are fixed at ingestion time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

MILLION = Decimal(1_000_000)
_SEPARATORS = "-:@."
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens of one model from one date on."""

    provider: str
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    cache_read_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    effective_date: date = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Cost:
    input: Decimal | None
    output: Decimal | None
    total: Decimal


def normalize_model(model: str) -> str:
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    return name


class PriceBook:
    """An immutable set of prices with a bounded cache of model-name matches."""

    def __init__(self, prices: Iterable[ModelPrice] = ()) -> None:
        self._by_model: dict[str, list[ModelPrice]] = {}
        for price in prices:
            self._by_model.setdefault(normalize_model(price.model), []).append(price)
        for versions in self._by_model.values():
            versions.sort(key=lambda p: p.effective_date, reverse=True)
        self._match_cache: dict[tuple[str | None, str], list[ModelPrice] | None] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_model.values())

    def lookup(self, provider: str | None, model: str, on: date | None = None) -> ModelPrice | None:
        """The price that applies to `model` (from `provider`) on day `on` (default: the newest)."""
        key = (provider, model)
        cache = self._match_cache
        if key in cache:
            versions = cache[key]
        else:
            versions = self._match(provider, model)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = versions
        if not versions:
            return None
        if on is None:
            return versions[0]
        for price in versions:
            if price.effective_date <= on:
                return price
        return None

    def _match(self, provider: str | None, model: str) -> list[ModelPrice] | None:
        name = normalize_model(model)
        if not name:
            return None
        candidates = self._by_model.get(name)
        if candidates is None:
            best = ""
            for priced in self._by_model:
                if (
                    len(priced) > len(best)
                    and name.startswith(priced)
                    and len(name) > len(priced)
                    and name[len(priced)] in _SEPARATORS
                ):
                    best = priced
            candidates = self._by_model.get(best) if best else None
        if not candidates:
            return None
        if provider:
            wanted = provider.lower()
            own = [p for p in candidates if p.provider == wanted]
            if own:
                return own
        providers = {p.provider for p in candidates}
        return candidates if len(providers) == 1 else None


def compute_cost(
    price: ModelPrice,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
) -> Cost | None:
    """Cost of one call. Input tokens include cached ones (GenAI convention); cached tokens are priced
    at the cache rate when the price has one and the counts are consistent."""
    if input_tokens is None and output_tokens is None:
        return None
    input_cost: Decimal | None = None
    if input_tokens is not None:
        uncached = input_tokens
        input_cost = Decimal(0)
        if cache_read_tokens and price.cache_read_per_million is not None and cache_read_tokens <= uncached:
            uncached -= cache_read_tokens
            input_cost += cache_read_tokens * price.cache_read_per_million
        if cache_write_tokens and price.cache_write_per_million is not None and cache_write_tokens <= uncached:
            uncached -= cache_write_tokens
            input_cost += cache_write_tokens * price.cache_write_per_million
        input_cost = (input_cost + uncached * price.input_per_million) / MILLION
    output_cost = None if output_tokens is None else output_tokens * price.output_per_million / MILLION
    total = (input_cost or Decimal(0)) + (output_cost or Decimal(0))
    return Cost(input_cost, output_cost, total)
