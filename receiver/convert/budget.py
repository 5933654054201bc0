"""What one request may cost to decode, charged as decoding proceeds: the budget every decoder uses.

Why: a request's decoded size depends on what it holds, not on its byte count. 16 KB of gzip inflate to
16 MiB of `0a 00`, eight million empty ResourceSpans, which cost the converters 2.2 GB. So every
request gets a `DecodeBudget` and every decoder charges it, in this order:

1. before anything is decoded, what a scan of the bytes found (`receiver.convert.scan`): the items
   (spans, data points, log records), the containers (resource and scope entries, events, links,
   metrics, exemplars) and an estimate of the memory the messages will take (`CostModel`);
2. while converting, the memory of the text it makes (JSON columns, names), which depends on what the
   strings hold (escapes, non-ASCII) and so cannot be known from the scan.

Past a limit the charge raises at once: `LimitExceeded` when the request itself is over one of its
limits (not retryable: HTTP 413 / gRPC RESOURCE_EXHAUSTED, the message names the config key), or
`MemoryBusy` when the memory of every request being decoded would pass `limits.memory_limit_mib`
(retryable: 503 / UNAVAILABLE). Nothing of a refused request is kept.

A new decoder (e.g. OTLP/JSON straight to rows, native logs and metrics) takes the budget its caller
made and calls `budget.charge(items=..., containers=..., nbytes=...)` as it meets things, before it
allocates for them; `budget.remaining_bytes()` is what a native decoder may still make.

Pure: no I/O. The memory pool shared by concurrent requests is handed in (`MemoryPool`).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Protocol

MIB = 1024 * 1024


# Decode memory a request may take whatever its size: a small request is never refused for its memory.
BASE_BYTES = 16 * MIB
# Memory is taken from the shared pool this much at a time (charges below what is held cost no lock).
RESERVE_STEP = MIB


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """The per-request bounds (config section [limits]). A request of B bytes (decompressed) may take
    at most min(max_memory_bytes, amplification x B + BASE_BYTES) to decode: "k·B + C", capped."""

    max_items: int = 100_000  # limits.max_items_per_request
    max_containers: int = 200_000  # limits.max_containers_per_request
    max_memory_bytes: int = 256 * MIB  # limits.max_request_memory_mib
    amplification: int = 128  # limits.max_decode_amplification

    def memory_bound(self, body_bytes: int) -> int:
        return min(self.max_memory_bytes, self.amplification * body_bytes + BASE_BYTES)


class LimitExceeded(Exception):
    """The request is over one of its own limits: not retryable (413 / RESOURCE_EXHAUSTED)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # the metrics label: too_many_items, too_many_containers, request_memory


class MemoryBusy(Exception):
    """The requests being decoded hold the memory limits.memory_limit_mib leaves: retry later."""


class MemoryPool(Protocol):
    """Memory shared by every request being decoded (the receiver's MemoryGuard). Thread-safe."""

    def reserve(self, nbytes: int, held: int) -> bool:
        """Take `nbytes` more for a request already holding `held`; False when there is no room."""
        ...

    def release(self, nbytes: int) -> None: ...


class DecodeBudget:
    """What one request has been charged so far; raises as soon as a charge passes a bound.

    Used by one request at a time (its decode may run in a worker thread). Memory is reserved from the
    pool RESERVE_STEP at a time, ahead of the charges. `close` may come from another thread (the request
    was cancelled): the next reservation then raises MemoryBusy, so an abandoned decode stops within a
    MiB of charges."""

    __slots__ = (
        "_closed",
        "_lock",
        "_pool",
        "_reserved",
        "_unpooled",
        "body_bytes",
        "containers",
        "items",
        "limits",
        "max_bytes",
        "nbytes",
    )

    def __init__(self, limits: DecodeLimits, pool: MemoryPool | None = None, unpooled_bytes: int = 0) -> None:
        """`unpooled_bytes`: charges up to this are not reserved from the pool. For a small request (a
        few KB: the receiver gives it to uncompressed bodies it may decode on the event loop): its charges
        rarely pass it, and reserving and releasing a MiB of the pool (two locks, four calls) was a tenth
        of its cost. What the pool does not see is bounded by one allowance per request being decoded:
        one on the loop, one per decode thread. A budget closed while a thread decodes stops that decode
        at its first charge past the allowance."""
        self.limits = limits
        self._pool = pool
        self.body_bytes: int | None = None  # the decompressed body's size, once known
        self.max_bytes = limits.max_memory_bytes  # memory_bound(body_bytes) once that is known
        self.items = 0
        self.containers = 0
        self.nbytes = 0
        unpooled_bytes = min(unpooled_bytes, limits.max_memory_bytes, BASE_BYTES)  # never past max_bytes
        self._reserved = unpooled_bytes  # what charges may reach before the pool is asked for more
        self._unpooled = unpooled_bytes
        self._closed = False
        self._lock = threading.Lock()

    def charge(self, *, items: int = 0, containers: int = 0, nbytes: int = 0) -> None:
        limits = self.limits
        if items:
            self.items += items
            if self.items > limits.max_items:
                raise LimitExceeded(
                    "too_many_items",
                    f"request holds {self.items:,} or more spans, data points and log records, over "
                    f"limits.max_items_per_request = {limits.max_items:,}; send smaller batches",
                )
        if containers:
            self.containers += containers
            if self.containers > limits.max_containers:
                raise LimitExceeded(
                    "too_many_containers",
                    f"request holds {self.containers:,} or more resource and scope entries, events, links, "
                    f"metrics and exemplars, over limits.max_containers_per_request = {limits.max_containers:,}; "
                    "send smaller batches",
                )
        if nbytes:
            self.charge_bytes(nbytes)

    def charge_bytes(self, nbytes: int) -> None:
        """charge(nbytes=...), for the converters' per-row charges: below what is already reserved from
        the pool it is an addition and a comparison."""
        total = self.nbytes + nbytes
        self.nbytes = total
        if total > self._reserved:
            self._grow(total)

    def _grow(self, total: int) -> None:
        if total > self.max_bytes:
            raise LimitExceeded("request_memory", self._memory_message())
        with self._lock:
            if self._closed:
                raise MemoryBusy("the request was abandoned while it was being decoded")
            more = min(max(total - self._reserved, RESERVE_STEP), self.max_bytes - self._reserved)
            if self._pool is not None and not self._pool.reserve(more, self._reserved - self._unpooled):
                raise MemoryBusy(
                    "the requests being decoded hold the memory limits.memory_limit_mib leaves; retry later"
                )
            self._reserved += more

    def set_body(self, body_bytes: int) -> None:
        """The request's decompressed size: from now on it may take at most memory_bound(body_bytes)."""
        self.body_bytes = body_bytes
        self.max_bytes = self.limits.memory_bound(body_bytes)

    def _memory_message(self) -> str:
        limits = self.limits
        taking = f"decoding the request would take about {self.nbytes / MIB:,.1f} MiB or more"
        if self.max_bytes < limits.max_memory_bytes and self.body_bytes is not None:
            return (
                f"{taking}, over {limits.amplification} x its {self.body_bytes / MIB:,.2f} MiB body + "
                f"{BASE_BYTES // MIB} MiB (limits.max_decode_amplification); it holds unusually many small "
                "items or containers for its size"
            )
        return (
            f"{taking}, over limits.max_request_memory_mib = {limits.max_memory_bytes // MIB:,}; "
            "send smaller batches"
        )

    def remaining_bytes(self) -> int:
        """Memory the request may still be charged under its own limit."""
        return max(0, self.max_bytes - self.nbytes)

    def close(self) -> None:
        """Give the reserved memory back to the pool (idempotent; any thread)."""
        with self._lock:
            self._closed = True
            reserved, self._reserved = self._reserved - self._unpooled, self._unpooled
        if reserved and self._pool is not None:
            self._pool.release(reserved)

    def __enter__(self) -> DecodeBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_getsizeof = sys.getsizeof


def text_bytes(*texts: str | None) -> int:
    """Memory of some strs as CPython holds them (1, 2 or 4 bytes per character, plus the header)."""
    return sum(map(_getsizeof, filter(None, texts)))


def charge_texts(budget: DecodeBudget | None, *texts: str | None) -> None:
    """Charge the text a converter just made (its size depends on what the strings held)."""
    if budget is not None:
        budget.charge_bytes(sum(map(_getsizeof, filter(None, texts))))
