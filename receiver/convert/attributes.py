"""OTLP attribute values -> JSON-ready Python values, made safe for PostgreSQL.

Why this exists: PostgreSQL cannot store every value OTLP can carry. `text` and `jsonb` refuse NUL
characters, JSON has no NaN or Infinity, and LLM prompts can be megabytes. One such value must never
fail a whole batch, so every string is cleaned and capped here, once, before it reaches a row.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Inserted where a value was cut so a reader of the row sees it was truncated and by how much.
TRUNCATION_MARK = "…[truncated {} bytes]"
NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"


@dataclass(slots=True)
class ConversionStats:
    """Counts of values the conversion had to alter; the front end turns them into metrics."""

    truncated_values: int = 0
    nul_replaced: int = 0
    non_finite_numbers: int = 0


def clean_text(value: str, limit: int, stats: ConversionStats) -> str:
    """Replace NUL characters and cap the UTF-8 size of one string at `limit` bytes."""
    if NUL in value:
        stats.nul_replaced += 1
        value = value.replace(NUL, NUL_REPLACEMENT)
    # A str of n characters is at most 4n UTF-8 bytes: most values skip the encode entirely.
    if len(value) * 4 <= limit:
        return value
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return value
    stats.truncated_values += 1
    cut = encoded[:limit].decode("utf-8", "ignore")
    return cut + TRUNCATION_MARK.format(len(encoded) - len(cut.encode("utf-8")))


def finite_or_label(value: float, stats: ConversionStats) -> float | str:
    """A double for a JSON document: JSON has no NaN/Infinity, so those become their names."""
    if math.isfinite(value):
        return value
    stats.non_finite_numbers += 1
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def any_value(value: Any, limit: int, stats: ConversionStats) -> Any:
    """One OTLP AnyValue -> str | bool | int | float | list | dict | None (JSON types only)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return clean_text(value.string_value, limit, stats)
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return finite_or_label(value.double_value, stats)
    if kind == "array_value":
        return [any_value(item, limit, stats) for item in value.array_value.values]
    if kind == "kvlist_value":
        return key_values(value.kvlist_value.values, limit, stats)
    if kind == "bytes_value":
        # OTLP/JSON represents bytes as base64; keep the same convention in storage.
        raw = value.bytes_value
        if len(raw) > limit:
            stats.truncated_values += 1
            return base64.b64encode(raw[:limit]).decode("ascii") + TRUNCATION_MARK.format(len(raw) - limit)
        return base64.b64encode(raw).decode("ascii")
    return None


def key_values(pairs: Iterable[Any], limit: int, stats: ConversionStats) -> dict[str, Any]:
    """Repeated KeyValue -> flat dict keyed by the OTLP attribute key (a later duplicate key wins)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        key = kv.key
        if NUL in key:
            stats.nul_replaced += 1
            key = key.replace(NUL, NUL_REPLACEMENT)
        out[key] = any_value(kv.value, limit, stats)
    return out
