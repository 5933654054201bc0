"""What every signal's conversion takes (options) and gives back (rows, rejections, alterations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from receiver.convert.attributes import ConversionStats
from receiver.convert.budget import DecodeBudget
from receiver.convert.pricing import PriceBook
from receiver.convert.window import NO_WINDOW, TimeWindow

MAX_ERROR_MESSAGES = 5


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """What conversion needs from configuration; passed in, never read from globals."""

    max_attribute_bytes: int = 128 * 1024
    price_book: PriceBook = field(default_factory=PriceBook)
    # When the front end received the request (Unix ns). Log records carrying neither a time nor an
    # observed time are stamped with it; conversion never reads the clock itself. 0 = not known.
    received_unix_nanos: int = 0
    # Convert protobuf requests (traces, logs, metrics) with the C extension when it is built (config
    # `convert.native`); False = the pure-Python converters, the references the native ones are tested against.
    native: bool = True
    # On the native trace path, the GenAI rules executed in C (traces_bytes, LlmRules) for the spans they
    # are certain of (config `convert.native_rules`); False = genai.py's extract_llm_fields for every span.
    native_rules: bool = True
    # This request's budget (receiver.convert.budget): converters charge the text they make to it, and
    # stop with LimitExceeded / MemoryBusy past its bounds. None = unbounded (tests, benchmarks).
    budget: DecodeBudget | None = None
    # The tenant: the project of the API key that sent the request, stamped on every row (project_id);
    # None with auth.mode = none. Per request, like received_unix_nanos.
    project_id: UUID | None = None
    # The accepted time window of each signal's items ("traces", "metrics", "logs"; see
    # receiver.convert.window), relative to received_unix_nanos. A signal without one accepts any time.
    windows: Mapping[str, TimeWindow] = field(default_factory=dict)

    def window(self, signal: str) -> TimeWindow:
        return self.windows.get(signal, NO_WINDOW)

    def for_request(
        self, received_unix_nanos: int, project_id: UUID | None, budget: DecodeBudget | None
    ) -> ConvertOptions:
        """These options with one request's receive time, tenant and budget (what dataclasses.replace
        does, at a third of its cost: it runs for every request)."""
        return ConvertOptions(
            self.max_attribute_bytes,
            self.price_book,
            received_unix_nanos,
            self.native,
            self.native_rules,
            budget,
            project_id,
            self.windows,
        )


class WireFormatError(ValueError):
    """Request bytes that are not a valid protobuf message of their type (the front end answers 400).

    Raised by converters that decode bytes themselves (receiver.convert.traces_bytes)."""


@dataclass(slots=True)
class Converted:
    """Rows for one table plus what was refused and why."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0  # every refused item, including the two counts below
    too_old: int = 0  # refused: time older than the signal's retention (see receiver.convert.window)
    too_new: int = 0  # refused: time further ahead of the receive time than limits.max_future_skew_s
    errors: list[str] = field(default_factory=list)
    stats: ConversionStats = field(default_factory=ConversionStats)

    def reject(self, message: str, count: int = 1) -> None:
        """Count `count` refused items (a nameless metric refuses all its points) under one message."""
        self.rejected += count
        if len(self.errors) < MAX_ERROR_MESSAGES:
            self.errors.append(message)

    def reject_time(self, describe: str, what: str, window: TimeWindow, time_ns: int, received_ns: int) -> None:
        """Refuse one item whose time is outside `window`; `describe` names the item, `what` its time."""
        if time_ns < window.bounds(received_ns)[0]:
            self.too_old += 1
        else:
            self.too_new += 1
        self.rejected += 1
        if len(self.errors) < MAX_ERROR_MESSAGES:
            self.errors.append(f"{describe}: {window.problem(what, time_ns, received_ns)}")
