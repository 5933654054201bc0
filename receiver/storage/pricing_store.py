"""Model prices: read the price file, record the prices in effect in `model_pricing`, build the PriceBook."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from receiver.convert.price_source import SOURCE, GenaiPrices
from receiver.convert.pricing import ModelPrice, PriceBook
from receiver.resources import defaults_dir

FILE_SOURCE = "file"


class PricingSchemaError(Exception):
    """`model_pricing` lacks the columns this receiver writes (the database is older than it)."""


# What migration 012_pricing_sources adds to model_pricing and this module reads and writes.
_MIGRATION_012_COLUMNS = (
    "source_version",
    "match_rule",
    "reasoning_price_per_million",
    "price_per_thousand_requests",
    "other_prices",
)


async def check_pricing_schema(conn: asyncpg.Connection) -> None:
    """Refuse, naming the fix, a model_pricing table without migration 012's columns (a database at
    011 or older, e.g. with database.auto_migrate = false) — rather than an SQL error mid-load."""
    have = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'model_pricing'"
        )
    }
    if not have:
        raise PricingSchemaError("table model_pricing does not exist: run `llm-observatory-receiver migrate`")
    missing = [c for c in _MIGRATION_012_COLUMNS if c not in have]
    if missing:
        raise PricingSchemaError(
            f"model_pricing has no column {', '.join(missing)}: the database predates migration "
            "012_pricing_sources. Run `llm-observatory-receiver migrate` (or set database.auto_migrate = true)"
        )


class PricingFileError(Exception):
    """The price file is unreadable or has bad entries; the message names each one."""


def default_pricing_file() -> Path:
    return defaults_dir() / "pricing.toml"


def _price(entry: dict[str, Any], key: str, index: int, required: bool) -> Decimal | None:
    raw = entry.get(key)
    if raw is None:
        if required:
            raise PricingFileError(f"model[{index}]: '{key}' is required")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise PricingFileError(f"model[{index}].{key}: {raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise PricingFileError(f"model[{index}].{key}: {raw!r} must be a non-negative number")
    return value


def read_pricing_file(path: Path) -> list[ModelPrice]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PricingFileError(f"price file {path} does not exist (pricing.file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise PricingFileError(f"price file {path} is not valid TOML: {exc}") from None
    prices: list[ModelPrice] = []
    for index, entry in enumerate(document.get("model", [])):
        provider, model = entry.get("provider"), entry.get("model")
        if not isinstance(provider, str) or not isinstance(model, str) or not provider or not model:
            raise PricingFileError(f"model[{index}]: 'provider' and 'model' must be non-empty strings")
        effective = entry.get("effective_date", date(1970, 1, 1))
        if not isinstance(effective, date):
            raise PricingFileError(f"model[{index}].effective_date: use a TOML date such as 2025-01-31")
        prices.append(
            ModelPrice(
                provider=provider.lower(),
                model=model,
                input_per_million=_price(entry, "input", index, True),  # type: ignore[arg-type]
                output_per_million=_price(entry, "output", index, True),  # type: ignore[arg-type]
                cache_read_per_million=_price(entry, "cache_read", index, False),
                cache_write_per_million=_price(entry, "cache_write", index, False),
                effective_date=effective,
                reasoning_per_million=_price(entry, "reasoning", index, False),
                source=FILE_SOURCE,
            )
        )
    return prices


async def may_seed_prices(conn: asyncpg.Connection) -> bool:
    """Whether this role may write model_pricing: a writer role (migration 011) may not; prices are then
    seeded by `migrate`, run as the owner, and the receiver only reads them."""
    return bool(await conn.fetchval("SELECT has_table_privilege('model_pricing', 'INSERT, UPDATE, DELETE')"))


_INSERT = """
    INSERT INTO model_pricing (provider, model, effective_date, input_price_per_million, output_price_per_million,
        cache_read_price_per_million, cache_write_price_per_million, reasoning_price_per_million,
        price_per_thousand_requests, source, source_version, match_rule, other_prices)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (provider, model, effective_date, source) DO UPDATE SET
        input_price_per_million = EXCLUDED.input_price_per_million,
        output_price_per_million = EXCLUDED.output_price_per_million,
        cache_read_price_per_million = EXCLUDED.cache_read_price_per_million,
        cache_write_price_per_million = EXCLUDED.cache_write_price_per_million,
        reasoning_price_per_million = EXCLUDED.reasoning_price_per_million,
        price_per_thousand_requests = EXCLUDED.price_per_thousand_requests,
        source_version = EXCLUDED.source_version,
        match_rule = EXCLUDED.match_rule,
        other_prices = EXCLUDED.other_prices,
        updated_at = EXCLUDED.updated_at  -- its default, now(); Citus refuses functions here (reference table)
    WHERE (model_pricing.input_price_per_million, model_pricing.output_price_per_million,
           model_pricing.cache_read_price_per_million, model_pricing.cache_write_price_per_million,
           model_pricing.reasoning_price_per_million, model_pricing.price_per_thousand_requests,
           model_pricing.match_rule, model_pricing.other_prices)
          IS DISTINCT FROM
          (EXCLUDED.input_price_per_million, EXCLUDED.output_price_per_million,
           EXCLUDED.cache_read_price_per_million, EXCLUDED.cache_write_price_per_million,
           EXCLUDED.reasoning_price_per_million, EXCLUDED.price_per_thousand_requests,
           EXCLUDED.match_rule, EXCLUDED.other_prices)
"""


def _row(p: ModelPrice, source: str, version: str | None, match: str | None, other: dict | None) -> tuple:
    return (
        p.provider,
        p.model,
        p.effective_date,
        p.input_per_million,
        p.output_per_million,
        p.cache_read_per_million,
        p.cache_write_per_million,
        p.reasoning_per_million,
        p.per_thousand_requests,
        source,
        version,
        match,
        orjson.dumps(other).decode() if other else None,
    )


async def seed_prices(conn: asyncpg.Connection, prices: list[ModelPrice], maintained: GenaiPrices | None = None) -> int:
    """Record the prices in effect: the price file's rows (replacing the previous file's, so a line
    removed from the file stops applying) and, with a maintained source, every price it carries (a row
    changes only when its figures do, keeping the version that first recorded it). Returns the rows
    written. One transaction: a receiver pricing from the table never sees it half-seeded."""
    await check_pricing_schema(conn)
    rows = [_row(p, FILE_SOURCE, None, None, None) for p in prices]
    if maintained is not None:
        rows.extend(
            _row(r.price, SOURCE, maintained.version, r.match, r.other_prices) for r in maintained.rows()
        )
    async with conn.transaction():
        await conn.execute("DELETE FROM model_pricing WHERE source = $1", FILE_SOURCE)
        await conn.executemany(_INSERT, rows)
    return len(rows)


async def load_price_book(conn: asyncpg.Connection, maintained: GenaiPrices | None = None) -> PriceBook:
    """The local prices (every model_pricing row not from the maintained source) in front of the
    maintained source itself (which prices from the installed package, not from its table rows)."""
    await check_pricing_schema(conn)
    rows = await conn.fetch(
        """SELECT provider, model, effective_date, input_price_per_million, output_price_per_million,
                  cache_read_price_per_million, cache_write_price_per_million, reasoning_price_per_million,
                  price_per_thousand_requests, source
           FROM model_pricing WHERE source <> $1""",
        SOURCE,
    )
    local = [
        ModelPrice(
            provider=r["provider"],
            model=r["model"],
            input_per_million=r["input_price_per_million"],
            output_per_million=r["output_price_per_million"],
            cache_read_per_million=r["cache_read_price_per_million"],
            cache_write_per_million=r["cache_write_price_per_million"],
            effective_date=r["effective_date"],
            reasoning_per_million=r["reasoning_price_per_million"],
            per_thousand_requests=r["price_per_thousand_requests"],
            source=r["source"],
        )
        for r in rows
    ]
    if maintained is None:
        return PriceBook(local)
    return PriceBook(local, maintained, maintained.name)
