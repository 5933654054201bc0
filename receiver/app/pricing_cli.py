"""`pricing lookup` and `pricing list`: which price applies to a model, and where it comes from.

Both read what the receiver reads — the price file (`pricing.file`) in front of the maintained source
(`pricing.source`) — without a database; `--database` adds the local rows of `model_pricing` (prices an
operator inserted by hand), as the running receiver does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from receiver.app.config import Config
from receiver.convert.genai import normalize_provider
from receiver.convert.price_source import GenaiPrices, provider_id
from receiver.convert.pricing import ModelPrice, PriceBook, TimeOfDayPrices, compute_cost
from receiver.storage.pricing_store import (
    PricingFileError,
    PricingSchemaError,
    default_pricing_file,
    read_pricing_file,
)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_PARTS = ("input", "output", "cache_read", "cache_write", "reasoning")


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def _book(config: Config, with_database: bool) -> tuple[PriceBook, GenaiPrices | None]:
    path = Path(config.pricing.file) if config.pricing.file else default_pricing_file()
    local = read_pricing_file(path)
    maintained = GenaiPrices() if config.pricing.source == "genai-prices" else None
    if with_database:
        local = local + [p for p in asyncio.run(_database_local_prices(config)) if p.source != "file"]
    if maintained is None:
        return PriceBook(local), None
    return PriceBook(local, maintained, maintained.name), maintained


async def _database_local_prices(config: Config) -> list[ModelPrice]:
    from receiver.app.cli import _with_database
    from receiver.storage.pricing_store import load_price_book

    found: list[ModelPrice] = []

    async def action(conn: Any) -> int:
        book = await load_price_book(conn)
        for versions in book.local.by_model.values():
            found.extend(versions)
        return EXIT_OK

    await _with_database(config, action)
    return found


def _parse_day(text: str | None) -> date:
    if not text:
        return datetime.now(UTC).date()
    return date.fromisoformat(text)


def cmd_lookup(args: argparse.Namespace, config: Config) -> int:
    try:
        day = _parse_day(args.date)
    except ValueError:
        print(f"error: --date {args.date!r} is not a date such as 2026-01-31", file=sys.stderr)
        return EXIT_CONFIG
    provider = normalize_provider(args.provider) if args.provider else None
    try:
        book, maintained = _book(config, args.database)
    except (PricingFileError, PricingSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    resolved = book.resolve(provider, args.model, day)
    shown_provider = provider or "(none given)"
    if args.provider and provider != args.provider:
        shown_provider += f" (from {args.provider!r})"
    if resolved is None:
        print(
            f"no price for model {args.model!r} from provider {shown_provider} on {day}: its spans are stored "
            f"with cost_source = 'unpriced' unless they carry a cost of their own. Prices come from "
            f"{book.describe()}; add the model to the price file (pricing.file) to price it.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    price = resolved.default if isinstance(resolved, TimeOfDayPrices) else resolved
    origin = price.source
    if maintained is not None and price.source == maintained.name:
        origin += f" (provider {provider_id(provider) or 'inferred from the model'} in genai-prices"
        rule = maintained.match_rule(provider, args.model)
        origin += f"; model {price.model!r}: {rule})" if rule else ")"
    else:
        origin += " (local price: pricing.file or a model_pricing row; it wins over the maintained source)"
    lines: list[tuple[str, str]] = [
        ("provider", f"{shown_provider} -> priced as {price.provider}"),
        ("model", f"{args.model} -> priced as {price.model}"),
        ("source", origin),
        ("effective", f"{price.effective_date} (price in effect on {day})"),
    ]
    for part in _PARTS:
        lines.append((part, f"{_money(getattr(price, f'{part}_per_million'))} USD per million tokens"))
    for start, part, value in price.tiers:
        lines.append(("tier", f"{part}: {_money(value)} USD per million tokens when input tokens > {start:,}"))
    if price.per_thousand_requests:
        lines.append(("requests", f"{_money(price.per_thousand_requests)} USD per thousand requests"))
    if isinstance(resolved, TimeOfDayPrices):
        for start, end, window in resolved.windows:
            prices = f"input {_money(window.input_per_million)}, output {_money(window.output_per_million)}"
            lines.append(("time of day", f"{start}-{end} UTC: {prices} (other times: the prices above)"))
    example = compute_cost(price, 1000, 100, 400 if price.cache_read_per_million is not None else None)
    if example is not None:
        cached = " (400 of them cache reads)" if price.cache_read_per_million is not None else ""
        lines.append(("example", f"1,000 input tokens{cached} + 100 output tokens = {_money(example.total)} USD"))
    width = max(len(label) for label, _ in lines)
    for label, text in lines:
        print(f"{label:<{width}}  {text}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    try:
        day = _parse_day(args.date)
    except ValueError:
        print(f"error: --date {args.date!r} is not a date such as 2026-01-31", file=sys.stderr)
        return EXIT_CONFIG
    try:
        book, maintained = _book(config, args.database)
    except (PricingFileError, PricingSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    wanted_provider = normalize_provider(args.provider) if args.provider else None
    needle = (args.model or "").lower()
    rows: list[ModelPrice] = []
    for versions in book.local.by_model.values():
        current = next((p for p in versions if p.effective_date <= day), None)
        if current is not None:
            rows.append(current)
    if maintained is not None:
        rows.extend(maintained.in_effect(day))
    print("provider\tmodel\tinput\toutput\tcache_read\tcache_write\teffective\tsource")
    shown = 0
    for price in rows:
        if wanted_provider and price.provider != wanted_provider:
            continue
        if needle and needle not in price.model.lower():
            continue
        shown += 1
        print(
            "\t".join(
                [
                    price.provider,
                    price.model,
                    _money(price.input_per_million),
                    _money(price.output_per_million),
                    _money(price.cache_read_per_million),
                    _money(price.cache_write_per_million),
                    str(price.effective_date),
                    price.source + (" (+tiers)" if price.tiers else ""),
                ]
            )
        )
    print(f"{shown} prices in effect on {day} ({book.describe()}; local prices win)", file=sys.stderr)
    return EXIT_OK


def add_parser(sub: Any, with_config: Any, load: Any) -> None:
    """The `pricing` command group of the CLI."""
    pricing = sub.add_parser("pricing", help="model prices: which applies, and where it comes from")
    pricing_sub = pricing.add_subparsers(dest="pricing_command", required=True)
    lookup = with_config(pricing_sub.add_parser("lookup", help="the price that applies to one model"))
    lookup.add_argument("--provider", help="provider name (e.g. openai, anthropic, aws.bedrock)")
    lookup.add_argument("--model", required=True, help="model name as spans report it")
    list_cmd = with_config(pricing_sub.add_parser("list", help="the prices in effect"))
    list_cmd.add_argument("--provider", help="only this provider")
    list_cmd.add_argument("--model", help="only models whose name contains this")
    for p in (lookup, list_cmd):
        p.add_argument("--date", help="the day to price (default: today, UTC)")
        p.add_argument("--database", action="store_true", help="include prices inserted into model_pricing by hand")
    lookup.set_defaults(func=lambda args: cmd_lookup(args, load(args.config)))
    list_cmd.set_defaults(func=lambda args: cmd_list(args, load(args.config)))
