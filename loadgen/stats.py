"""What happened during a run: counters per signal, latencies, the per-second timeline.

Latencies are kept per request (not per span), so a 60 s run at 10K spans/s keeps about 1,200 floats
per list; percentiles are exact (nearest rank over the sorted list), not estimated.

Two latencies, because open-loop load must not hide a slow receiver ("coordinated omission"):
  rpc  one attempt's round trip, from handing the body to the transport to its answer;
  ack  from the moment the request was *due* on the timetable to its acknowledgement, including
       any lateness of the generator and every refusal and retry on the way.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | int]:
    """p50/p95/p99/max (nearest rank) of `values` in seconds, reported ×`scale` (ms by default)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))] * scale

    return {
        "count": n,
        "p50": round(rank(50), 3),
        "p95": round(rank(95), 3),
        "p99": round(rank(99), 3),
        "max": round(ordered[-1] * scale, 3),
    }


@dataclass(slots=True)
class SignalStats:
    """Counters of one signal. Items are spans, data points or log records."""

    name: str
    noun: str
    offered_requests: int = 0
    offered_items: int = 0  # every request the timetable (or closed loop) produced
    acked_requests: int = 0
    acked_items: int = 0  # answered OK, minus partial_success rejections
    rejected_items: int = 0  # partial_success rejections
    dropped_requests: int = 0  # never sent: the in-flight bound was reached (an SDK queue drops so)
    dropped_items: int = 0
    failed_requests: int = 0  # sent, then given up: final error or retry budget spent
    failed_items: int = 0
    unanswered_requests: int = 0  # of the failed: the last attempt got no answer (may have landed)
    attempts: int = 0
    retries: int = 0
    refusals: Counter[str] = field(default_factory=Counter)  # non-OK attempts by status
    rpc_latencies: list[float] = field(default_factory=list)
    ack_latencies: list[float] = field(default_factory=list)
    acked_by_second: list[int] = field(default_factory=list)

    def ack(self, items: int, rejected: int, second: int, rpc_s: float, ack_s: float) -> None:
        self.acked_requests += 1
        self.acked_items += items - rejected
        self.rejected_items += rejected
        self.rpc_latencies.append(rpc_s)
        self.ack_latencies.append(ack_s)
        timeline = self.acked_by_second
        while len(timeline) <= second:
            timeline.append(0)
        timeline[second] += items - rejected

    def summary(self, window_s: float, elapsed_s: float) -> dict[str, object]:
        return {
            "offered": self.offered_items,
            "acknowledged": self.acked_items,
            "rejected": self.rejected_items,
            "dropped": self.dropped_items,
            "failed": self.failed_items,
            "offered_per_s": round(self.offered_items / window_s, 1) if window_s > 0 else None,
            "acknowledged_per_s": round(self.acked_items / elapsed_s, 1) if elapsed_s > 0 else None,
            "requests": {
                "offered": self.offered_requests,
                "acknowledged": self.acked_requests,
                "dropped": self.dropped_requests,
                "failed": self.failed_requests,
                "unanswered": self.unanswered_requests,
                "attempts": self.attempts,
                "retries": self.retries,
            },
            "refusals": dict(sorted(self.refusals.items())),
            "latency_ms": {"rpc": percentiles(self.rpc_latencies), "ack": percentiles(self.ack_latencies)},
            "acknowledged_by_second": list(self.acked_by_second),
        }


@dataclass(slots=True)
class RunStats:
    signals: dict[str, SignalStats]
    dispatch_lags: list[float] = field(default_factory=list)  # open loop: how late requests left
    in_flight: int = 0
    peak_in_flight: int = 0

    def total_refusals(self) -> int:
        return sum(sum(s.refusals.values()) for s in self.signals.values())
