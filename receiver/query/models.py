"""GET /api/v1/models: the price of each (provider, model) in effect on a day, from model_pricing.

In effect = the newest price whose effective_date is on or before the day; a local price (any source
other than the maintained `genai-prices` package: the price file, rows an operator inserted) wins over
the maintained source's, as when the receiver prices a span. Prices are USD per million tokens, as
decimal strings. Prices are global: every read key sees them. Pure.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from receiver.query.params import Param, SqlArgs

ENDPOINT = "models"
MAX_ROWS = 10_000
MAINTAINED_SOURCE = "genai-prices"

PARAMS = (
    Param("provider", "string", "only this provider"),
    Param("model", "string", "only this model (exact name as listed)"),
    Param("at", "date", "the day whose prices to show (default: today, UTC)"),
)

PRICE_COLUMNS = (
    "input_price_per_million",
    "output_price_per_million",
    "cache_read_price_per_million",
    "cache_write_price_per_million",
)


def build(values: dict[str, Any], today: date) -> tuple[str, list[Any]]:
    """Prices come back as numeric's own text (plain notation at the stored scale, as `shape.money`
    writes a Decimal): decoding ~9,000 numerics into Decimals and formatting them again was most of this
    endpoint's CPU with the full genai-prices table."""
    args = SqlArgs()
    where = [f"effective_date <= {args.add(values.get('at') or today)}::date"]
    for name in ("provider", "model"):
        if values.get(name) is not None:
            where.append(f"{name} = {args.add(values[name])}")
    sql = f"""
    SELECT DISTINCT ON (provider, model) provider, model, effective_date, source,
           {", ".join(f"{column}::text AS {column}" for column in PRICE_COLUMNS)}
    FROM model_pricing
    WHERE {" AND ".join(where)}
    ORDER BY provider, model, source = {args.add(MAINTAINED_SOURCE)}, effective_date DESC, source
    LIMIT {args.add(MAX_ROWS + 1)}
    """
    return sql, args.values


def assemble(values: dict[str, Any], today: date, rows: list[Any]) -> dict[str, Any]:
    models = [
        {
            "provider": row["provider"],
            "model": row["model"],
            "effective_date": row["effective_date"],
            "source": row["source"],
            **{column: row[column] for column in PRICE_COLUMNS},
        }
        for row in rows[:MAX_ROWS]
    ]
    return {
        "at": values.get("at") or today,
        "currency": "USD",
        "unit": "per million tokens",
        "models": models,
        "truncated": len(rows) > MAX_ROWS,
    }
