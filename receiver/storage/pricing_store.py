"""Model prices: read the price file, seed `model_pricing`, load the table into a PriceBook."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import asyncpg

from receiver.convert.pricing import ModelPrice, PriceBook
from receiver.resources import defaults_dir


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
            )
        )
    return prices


async def may_seed_prices(conn: asyncpg.Connection) -> bool:
    """Whether this role may write model_pricing: a writer role (migration 011) may not; prices are then
    seeded by `migrate`, run as the owner, and the receiver only reads them."""
    return bool(await conn.fetchval("SELECT has_table_privilege('model_pricing', 'INSERT, UPDATE')"))


async def seed_prices(conn: asyncpg.Connection, prices: list[ModelPrice]) -> None:
    await conn.executemany(
        """
        INSERT INTO model_pricing (provider, model, effective_date, input_price_per_million,
            output_price_per_million, cache_read_price_per_million, cache_write_price_per_million, source)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'file')
        ON CONFLICT (provider, model, effective_date) DO UPDATE SET
            input_price_per_million = EXCLUDED.input_price_per_million,
            output_price_per_million = EXCLUDED.output_price_per_million,
            cache_read_price_per_million = EXCLUDED.cache_read_price_per_million,
            cache_write_price_per_million = EXCLUDED.cache_write_price_per_million,
            updated_at = EXCLUDED.updated_at  -- its default, now(); Citus refuses functions here (reference table)
        """,
        [
            (
                p.provider,
                p.model,
                p.effective_date,
                p.input_per_million,
                p.output_per_million,
                p.cache_read_per_million,
                p.cache_write_per_million,
            )
            for p in prices
        ],
    )


async def load_price_book(conn: asyncpg.Connection) -> PriceBook:
    rows = await conn.fetch(
        """SELECT provider, model, effective_date, input_price_per_million, output_price_per_million,
                  cache_read_price_per_million, cache_write_price_per_million FROM model_pricing"""
    )
    return PriceBook(
        ModelPrice(
            provider=r["provider"],
            model=r["model"],
            input_per_million=r["input_price_per_million"],
            output_per_million=r["output_price_per_million"],
            cache_read_per_million=r["cache_read_price_per_million"],
            cache_write_per_million=r["cache_write_price_per_million"],
            effective_date=r["effective_date"],
        )
        for r in rows
    )
