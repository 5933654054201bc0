"""Which export results are retried, and after how long: the OTLP exporter rules.

Retryable (OTLP specification): gRPC CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only when the server sent RetryInfo; HTTP 429, 502,
503, 504; plus connection errors and timeouts (the receiver may be restarting). Everything else
(INVALID_ARGUMENT, 400, 413, UNIMPLEMENTED, 404, …) is final. A partial success is never retried.

Delay: the server's RetryInfo / Retry-After when it gave one (honoured as given), else
exponential backoff from `initial_s`, doubling up to `max_delay_s`, with ±20% jitter so exporters do
not retry in lockstep. Budget: a request is abandoned when the next attempt would start later than
`max_elapsed_s` after its first one (the OTel exporters' `max_elapsed_time`; the Python SDK gives up
after about 63 s, the Collector after 300 s; we default to 30 s so a run ends in reasonable time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .transport import ExportResult

GRPC_RETRYABLE = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"})
HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
TRANSPORT_RETRYABLE = frozenset({"CONNECTION_ERROR", "TIMEOUT"})


def retryable(result: ExportResult) -> bool:
    code = result.code
    if code in GRPC_RETRYABLE or code in HTTP_RETRYABLE or code in TRANSPORT_RETRYABLE:
        return True
    return code == "RESOURCE_EXHAUSTED" and result.has_retry_info


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    enabled: bool = True
    initial_s: float = 1.0
    max_delay_s: float = 5.0
    max_elapsed_s: float = 30.0

    def delay(self, result: ExportResult, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if result.retry_after is not None:
            return result.retry_after
        backoff = min(self.initial_s * (2 ** (attempt - 1)), self.max_delay_s)
        return backoff * rng.uniform(0.8, 1.2)

    def next_delay(self, result: ExportResult, attempt: int, elapsed_s: float, rng: random.Random) -> float | None:
        """The wait before retrying, or None when this result is final or the budget is spent."""
        if not self.enabled or result.ok or not retryable(result):
            return None
        wait = self.delay(result, attempt, rng)
        if elapsed_s + wait > self.max_elapsed_s:
            return None
        return wait
