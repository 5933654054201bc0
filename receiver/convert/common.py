"""What every signal's conversion takes (options) and gives back (rows, rejections, alterations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from receiver.convert.attributes import ConversionStats
from receiver.convert.budget import DecodeBudget
from receiver.convert.pricing import PriceBook

MAX_ERROR_MESSAGES = 5


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """What conversion needs from configuration; passed in, never read from globals."""

    max_attribute_bytes: int = 128 * 1024
    price_book: PriceBook = field(default_factory=PriceBook)
    # When the front end received the request (Unix ns). Log records carrying neither a time nor an
    # observed time are stamped with it; conversion never reads the clock itself. 0 = not known.
    received_unix_nanos: int = 0
    # Convert protobuf trace requests with the C extension when it is built (config `convert.native`);
    # False = the pure-Python converter, the reference the native one is tested against.
    native: bool = True
    # This request's budget (receiver.convert.budget): converters charge the text they make to it, and
    # stop with LimitExceeded / MemoryBusy past its bounds. None = unbounded (tests, benchmarks).
    budget: DecodeBudget | None = None


class WireFormatError(ValueError):
    """Request bytes that are not a valid protobuf message of their type (the front end answers 400).

    Raised by converters that decode bytes themselves (receiver.convert.traces_bytes)."""


@dataclass(slots=True)
class Converted:
    """Rows for one table plus what was refused and why."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    stats: ConversionStats = field(default_factory=ConversionStats)

    def reject(self, message: str, count: int = 1) -> None:
        """Count `count` refused items (a nameless metric refuses all its points) under one message."""
        self.rejected += count
        if len(self.errors) < MAX_ERROR_MESSAGES:
            self.errors.append(message)
