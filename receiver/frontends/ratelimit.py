"""Per-key rate limits: a token bucket over items (spans + metric points + log records) per API key.

A key created with `--rate R` earns R tokens a second, up to a bucket of R x `auth.rate_burst_s`
(its burst). A request is admitted while the key's bucket is not empty, before its body is decoded
(so a key over its rate costs the receiver almost nothing); once converted, its items are taken from
the bucket, which may go into debt: one large request passes, and the key then waits until the debt
is repaid. While the bucket is empty or in debt, requests are refused with a retryable status whose
Retry-After / RetryInfo is the time until it holds a token again. Items of a request refused after
conversion (queue full, shutting down) are given back. Over time a key sends at most R items/s plus
its burst.

Pure bookkeeping (a clock is passed in): no I/O, no locks (the event loop is the only caller).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from uuid import UUID

MAX_RETRY_AFTER_S = 300.0  # never ask a client to wait longer than this, however deep the debt


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    capacity: float  # the burst
    tokens: float
    updated: float  # clock reading of the last refill

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self) -> float:
        """Seconds until the bucket holds a token again (0 when it does)."""
        return 0.0 if self.tokens > 0 else min(MAX_RETRY_AFTER_S, (1.0 - self.tokens) / self.rate)


class KeyRateLimiter:
    def __init__(self, burst_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: dict[UUID, TokenBucket] = {}

    def _bucket(self, key_id: UUID, rate: float) -> TokenBucket:
        now = self._clock()
        capacity = max(1.0, rate * self._burst_s)
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = TokenBucket(rate, capacity, capacity, now)
        elif bucket.rate != rate:  # the key's rate was changed in the database
            bucket.rate, bucket.capacity = rate, capacity
        bucket.refill(now)
        return bucket

    def admit(self, key_id: UUID, rate: float) -> float | None:
        """None when the key may send now; else the seconds to wait (Retry-After)."""
        wait = self._bucket(key_id, rate).wait_s()
        return wait if wait > 0 else None

    def charge(self, key_id: UUID, rate: float, items: int) -> None:
        self._bucket(key_id, rate).tokens -= items

    def refund(self, key_id: UUID, rate: float, items: int) -> None:
        bucket = self._bucket(key_id, rate)
        bucket.tokens = min(bucket.capacity, bucket.tokens + items)

    def retain(self, key_ids: Iterable[UUID]) -> None:
        """Forget the buckets of keys no longer active (revoked, expired, deleted)."""
        keep = set(key_ids)
        for key_id in [k for k in self._buckets if k not in keep]:
            del self._buckets[key_id]
