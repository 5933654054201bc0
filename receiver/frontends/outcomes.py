"""What became of one export request, independent of the transport that carried it.

`status.py` is the only place these turn into gRPC codes and HTTP statuses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Accepted:
    """Stored or queued. `rejected` > 0 (or a message) makes it an OTLP partial success."""

    accepted: int
    rejected: int = 0
    message: str = ""


class Refusal(enum.Enum):
    OVERLOADED = "overloaded"  # retryable: queue full
    SHUTTING_DOWN = "shutting_down"  # retryable: draining
    TOO_LARGE = "too_large"  # not retryable: body over otlp.max_request_bytes
    MALFORMED = "malformed"  # not retryable: not an OTLP message
    UNSUPPORTED_MEDIA = "unsupported_media"  # not retryable: content type / encoding
    UNAUTHENTICATED = "unauthenticated"  # not retryable without a valid key
    FORBIDDEN = "forbidden"  # not retryable: the key lacks the scope (ingest, read)
    RATE_LIMITED = "rate_limited"  # retryable: the key is over its rate (items per second)
    INTERNAL = "internal"  # a defect in the receiver; logged with its traceback


RETRYABLE = frozenset({Refusal.OVERLOADED, Refusal.SHUTTING_DOWN, Refusal.RATE_LIMITED})


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    message: str
    items: int = 0  # how many items the refusal covered, when known
    retry_after_s: float | None = None
    cause: str = ""  # finer reason for metrics and logs (queue_full, memory, spool_full, …)

    @property
    def label(self) -> str:
        return self.cause or self.reason.value


Outcome = Accepted | Refused
