"""Model prices, the rule that matches a span's model to one of them, and the cost of one call.

Two kinds of price, consulted in this order:
1. Local prices (`model_pricing` rows whose source is not the maintained one: the price file
   `pricing.file`, or rows an operator inserted): negotiated prices and models the maintained source
   lacks. Matching (documented in the README): model names are compared case-insensitively, after
   removing a leading `provider/` or `models/` path. An exact model name wins; otherwise the longest
   priced name that is a prefix of the span's model followed by one of `- : @ .` (so
   `gpt-4o-mini-2024-07-18` takes the price of `gpt-4o-mini`, not of `gpt-4o`). Prices of the span's
   provider are preferred; a model no price of that provider matches falls back to any provider's
   price only if that is unambiguous. Among prices of one model, the newest `effective_date` on or
   before the span's date applies.
2. The maintained source (`receiver.convert.price_source`, genai-prices): its own provider and model
   matching, price history and cache rates.

The hot path is one dict lookup per span: what a (provider, model, day) resolves to is cached, so
matching (tens of µs to ms in genai-prices) runs once per model and day. Costs are exact Decimals,
fixed at ingestion time.

Token meaning (the same as the OpenTelemetry GenAI conventions and genai-prices): `input_tokens`
counts every input token, cache reads and cache writes included; `cache_read_tokens` and
`cache_creation_tokens` are parts of it. `output_tokens` counts every output token, reasoning
included; `reasoning_tokens` is part of it. Each part is priced at its own rate when the price has
one, the rest at the plain input / output rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1000)
_SEPARATORS = "-:@."
_CACHE_LIMIT = 8192
EPOCH = date(1970, 1, 1)

# The parts of a call a price can name, in the order they are listed and stored.
PRICE_PARTS = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens of one model from one date on, and where the figures came from.

    `tiers` are threshold prices: (first input-token count above which the price applies, part, USD per
    million); once a call's input tokens exceed a tier's start, that part's whole count takes the tier's
    price (the providers' "cliff" pricing, as genai-prices models it)."""

    provider: str
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    cache_read_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    effective_date: date = EPOCH
    reasoning_per_million: Decimal | None = None
    per_thousand_requests: Decimal | None = None
    tiers: tuple[tuple[int, str, Decimal], ...] = ()
    source: str = "file"

    def rate(self, part: str, input_tokens: int) -> Decimal | None:
        """USD per million tokens of `part` for a call with `input_tokens` input tokens."""
        base: Decimal | None = getattr(self, f"{part}_per_million")
        if not self.tiers:
            return base
        for start, tier_part, price in reversed(self.tiers):
            if tier_part == part and input_tokens > start:
                return price
        return base


@dataclass(frozen=True, slots=True)
class TimeOfDayPrices:
    """Prices that depend on the UTC time of day (off-peak discounts): (start, end, price) windows,
    tried in order, else `default`."""

    windows: tuple[tuple[time, time, ModelPrice], ...]
    default: ModelPrice

    def at(self, moment: datetime) -> ModelPrice:
        now = moment.time()
        for start, end, price in self.windows:
            if (start <= now < end) if start <= end else (now >= start or now < end):
                return price
        return self.default


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


# provider, model, day -> the price in effect, or None. What the maintained source plugs into a PriceBook.
Resolver = Callable[[str | None, str, date], "ModelPrice | TimeOfDayPrices | None"]


@dataclass
class LocalPrices:
    """Local prices by normalized model name, newest first, with the matching rule above."""

    prices: Iterable[ModelPrice] = ()
    by_model: dict[str, list[ModelPrice]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for price in self.prices:
            self.by_model.setdefault(normalize_model(price.model), []).append(price)
        for versions in self.by_model.values():
            versions.sort(key=lambda p: p.effective_date, reverse=True)
        self.prices = ()

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_model.values())

    def match(self, provider: str | None, model: str) -> list[ModelPrice] | None:
        name = normalize_model(model)
        if not name:
            return None
        candidates = self.by_model.get(name)
        if candidates is None:
            best = ""
            for priced in self.by_model:
                if (
                    len(priced) > len(best)
                    and name.startswith(priced)
                    and len(name) > len(priced)
                    and name[len(priced)] in _SEPARATORS
                ):
                    best = priced
            candidates = self.by_model.get(best) if best else None
        if not candidates:
            return None
        if provider:
            own = [p for p in candidates if p.provider == provider]
            if own:
                return own
        providers = {p.provider for p in candidates}
        return candidates if len(providers) == 1 else None

    def resolve(self, provider: str | None, model: str, on: date) -> ModelPrice | None:
        for price in self.match(provider, model) or ():
            if price.effective_date <= on:
                return price
        return None


class PriceBook:
    """Local prices first, then the maintained source; what each (provider, model, day) resolves to is
    cached (bounded), so a span costs one dict lookup. Immutable once built: a reload builds a new book."""

    def __init__(
        self,
        prices: Iterable[ModelPrice] = (),
        maintained: Resolver | None = None,
        maintained_name: str | None = None,
    ) -> None:
        self.local = LocalPrices(prices)
        self.maintained = maintained
        self.maintained_name = maintained_name
        self._cache: dict[tuple[str | None, str, date], ModelPrice | TimeOfDayPrices | None] = {}

    def __len__(self) -> int:
        return len(self.local)

    def describe(self) -> str:
        """For log lines: what this book prices from."""
        local = f"{len(self.local)} local prices"
        return f"{self.maintained_name} + {local}" if self.maintained_name else local

    def resolve(self, provider: str | None, model: str, on: date) -> ModelPrice | TimeOfDayPrices | None:
        """Uncached: the local price, else the maintained source's."""
        local = self.local.resolve(provider, model, on)
        if local is not None:
            return local
        if self.maintained is not None:
            return self.maintained(provider, model, on)
        return None

    def lookup(self, provider: str | None, model: str, when: date | datetime | None = None) -> ModelPrice | None:
        """The price that applies to `model` (from `provider`) at `when` (a day, or a moment for
        time-of-day prices; default: today)."""
        if when is None:
            when = date.today()
        day = when.date() if isinstance(when, datetime) else when
        found = self._resolved(provider, model, day)
        if type(found) is TimeOfDayPrices:
            return found.at(when if isinstance(when, datetime) else datetime.combine(day, time()))
        return found  # type: ignore[return-value]

    def _resolved(self, provider: str | None, model: str, day: date) -> ModelPrice | TimeOfDayPrices | None:
        """resolve, cached by (provider, model, day)."""
        key = (provider, model, day)
        cache = self._cache
        try:
            return cache[key]
        except KeyError:
            found = self.resolve(provider, model, day)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = found
            return found

    def plan(self, provider: str | None, model: str, when: datetime) -> PricePlan | bool | None:
        """How the native rules (LlmRules.span_rows) price `model` on `when`'s day without a Python call per
        span: None when nothing prices it; False when its price depends on the time of day or on the
        call's size (tiers), so `compute_cost` must price each span; else the rates, in PricePlan's
        order, from which the C code computes exactly what compute_cost computes."""
        found = self._resolved(provider, model, when.date())
        if found is None:
            return None
        if type(found) is TimeOfDayPrices or found.tiers:
            return False
        return (
            provider or found.provider,
            found.input_per_million,
            found.output_per_million,
            found.cache_read_per_million,
            found.cache_write_per_million,
            found.reasoning_per_million,
            found.per_thousand_requests,
            _ZERO,
            MILLION,
            THOUSAND,
        )


# PriceBook.plan's rates: (provider, input, output, cache_read, cache_write, reasoning, per thousand
# requests, then the constants compute_cost divides by: Decimal(0), MILLION, THOUSAND).
PricePlan = tuple[
    str, Decimal, Decimal, Decimal | None, Decimal | None, Decimal | None, Decimal | None, Decimal, Decimal, Decimal
]
_ZERO = Decimal(0)


def compute_cost(
    price: ModelPrice,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Cost | None:
    """Cost of one call, as genai-prices computes it from the same counts: every part with a price of
    its own is taken out of its total (cache reads and writes out of input, reasoning out of output)
    and priced at that rate; the rest at the plain rate. Counts that do not add up (more cached than
    input) price every input token at the input rate instead. On the hot path: plain attribute reads
    unless the price has tiers."""
    if input_tokens is None and output_tokens is None:
        return None
    if price.tiers:
        all_input = input_tokens or 0
        input_rate = price.rate("input", all_input)
        output_rate = price.rate("output", all_input)
        cache_read_rate = price.rate("cache_read", all_input) if cache_read_tokens else None
        cache_write_rate = price.rate("cache_write", all_input) if cache_write_tokens else None
        reasoning_rate = price.rate("reasoning", all_input) if reasoning_tokens else None
    else:
        input_rate = price.input_per_million
        output_rate = price.output_per_million
        cache_read_rate = price.cache_read_per_million if cache_read_tokens else None
        cache_write_rate = price.cache_write_per_million if cache_write_tokens else None
        reasoning_rate = price.reasoning_per_million if reasoning_tokens else None
    input_cost: Decimal | None = None
    if input_tokens is not None:
        uncached = input_tokens
        input_cost = Decimal(0)
        if cache_read_rate is not None or cache_write_rate is not None:
            read = cache_read_tokens if cache_read_rate is not None else 0
            write = cache_write_tokens if cache_write_rate is not None else 0
            if read + write <= uncached:  # type: ignore[operator]
                uncached -= read + write  # type: ignore[operator]
                if read:
                    input_cost += read * cache_read_rate  # type: ignore[operator]
                if write:
                    input_cost += write * cache_write_rate  # type: ignore[operator]
        input_cost = (input_cost + uncached * input_rate) / MILLION
    output_cost: Decimal | None = None
    if output_tokens is not None:
        plain = output_tokens
        output_cost = Decimal(0)
        if reasoning_rate is not None and reasoning_tokens <= plain:  # type: ignore[operator]
            plain -= reasoning_tokens  # type: ignore[operator]
            output_cost += reasoning_tokens * reasoning_rate  # type: ignore[operator]
        output_cost = (output_cost + plain * output_rate) / MILLION
    total = (input_cost or Decimal(0)) + (output_cost or Decimal(0))
    if price.per_thousand_requests:
        total += price.per_thousand_requests / THOUSAND
    return Cost(input_cost, output_cost, total)
