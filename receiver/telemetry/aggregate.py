"""The metrics and health of worker processes as one receiver's (otlp.workers > 1).

Each worker keeps its own registry and serves it on a private admin socket; the supervisor scrapes them
and answers /metrics and /health for all of them together. Why not prometheus-client's multiprocess
mode: it drops callback gauges (queue depth, spool bytes, RSS are read at scrape time here) and custom
collectors, and it keeps files per pid to clean up; parsing a few KB of text per worker is cheap.

How series combine, per metric type:
- counters and histograms: summed over workers. A worker that is replaced leaves its last scraped
  values behind as an offset (`Retired`), so totals do not fall when its successor starts from zero;
  a series never goes below what was last exposed (increments a killed worker made after the last
  scrape are the only ones that can be missing).
- gauges: by what they mean. Sizes and capacities add up (`SUM_GAUGES`: queue rows and bytes, buffers,
  connections, spool bytes, requests being decoded and their decode memory: each worker has its own
  decode pool); states, limits, lags and per-process memory take the worst or largest value (breaker
  state 2 = open anywhere, event-loop lag of the slowest worker, RSS and peak RSS of the largest worker;
  the memory limit is each worker's share of limits.memory_limit_mib, so the alert on RSS over the limit
  compares the largest worker with its own share); start times take the earliest. A gauge not listed
  takes the maximum: the safe reading for a state or a level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

SUM_GAUGES = frozenset(
    {
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "observatory_queue_bytes",
        "observatory_queue_bytes_capacity",
        "storage_buffer_size",
        "storage_pool_connections",
        "observatory_spool_bytes",
        "observatory_spool_capacity_bytes",
        "observatory_spool_backlog_bytes",
        "observatory_spool_segments",
        "observatory_decode_requests",
        "observatory_decode_memory_reserved_bytes",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
    }
)
MIN_GAUGES = frozenset({"process_start_time_seconds"})
ADDITIVE_TYPES = frozenset({"counter", "histogram", "summary"})

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


@dataclass
class Family:
    name: str
    type: str
    documentation: str
    samples: dict[SeriesKey, float] = field(default_factory=dict)


Scrape = dict[str, Family]


def parse(text: str) -> Scrape:
    out: Scrape = {}
    for metric in text_string_to_metric_families(text):
        family = Family(metric.name, metric.type, metric.documentation)
        for sample in metric.samples:
            family.samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        out[metric.name] = family
    return out


def _gauge_mode(name: str) -> str:
    if name.endswith("_created") or name in MIN_GAUGES:
        return "min"
    return "sum" if name in SUM_GAUGES else "max"


def merge(scrapes: Iterable[Scrape]) -> Scrape:
    """One view of several workers' scrapes (see the module docstring for how series combine)."""
    merged: Scrape = {}
    for scrape in scrapes:
        for name, family in scrape.items():
            into = merged.get(name)
            if into is None:
                into = merged[name] = Family(family.name, family.type, family.documentation)
            mode = "sum" if family.type in ADDITIVE_TYPES else _gauge_mode(name)
            for key, value in family.samples.items():
                have = into.samples.get(key)
                if have is None:
                    into.samples[key] = value
                elif mode == "sum":
                    into.samples[key] = have + value
                elif mode == "min":
                    into.samples[key] = min(have, value)
                else:
                    into.samples[key] = max(have, value)
    return merged


def additive_part(scrape: Scrape) -> Scrape:
    """The counters and histograms of a scrape: what a replaced worker leaves behind."""
    return {name: f for name, f in scrape.items() if f.type in ADDITIVE_TYPES}


class Retired:
    """Totals of workers that were replaced, and the last values exposed, so sums never go down."""

    def __init__(self) -> None:
        self._left: Scrape = {}
        self._exposed: dict[tuple[str, SeriesKey], float] = {}

    def add(self, last_scrape: Scrape) -> None:
        self._left = merge([self._left, additive_part(last_scrape)])

    def combine(self, live: Iterable[Scrape]) -> Scrape:
        merged = merge([self._left, *live])
        for name, family in merged.items():
            if family.type not in ADDITIVE_TYPES:
                continue
            for key, value in family.samples.items():
                floor = self._exposed.get((name, key), 0.0)
                if value < floor:
                    family.samples[key] = value = floor
                self._exposed[(name, key)] = value
        return merged


class _Exposition:
    """A collector over merged families, so prometheus-client renders the text format itself."""

    def __init__(self, families: Scrape) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        for family in self._families.values():
            metric = Metric(family.name, family.documentation, family.type)
            for (sample, labels), value in family.samples.items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


def render(families: Scrape) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Exposition(families))  # type: ignore[arg-type]
    return generate_latest(registry)


def total(scrape: Scrape, family: str) -> float:
    """The sum of every series of one family (e.g. all requests a worker served)."""
    found = scrape.get(family)
    if found is None:
        return 0.0
    return sum(v for (sample, _), v in found.samples.items() if not sample.endswith("_created"))


# -- health ---------------------------------------------------------------------------------------

_STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}
_BREAKER_ORDER = {"closed": 0, "half_open": 1, "open": 2}


def _sum(reports: list[Mapping[str, Any]], section: str, key: str) -> Any:
    return sum((r.get(section) or {}).get(key) or 0 for r in reports)


def merge_health(reports: list[Mapping[str, Any]], workers: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """/health of the supervisor: the worst status, sizes summed, breaker and memory at their worst, the
    database and maintenance as the workers see them, and one line per worker."""
    missing = expected - len(reports)
    status = max((r.get("status", "unhealthy") for r in reports), key=lambda s: _STATUS_ORDER.get(s, 2), default="")
    if not reports:
        status = "unhealthy"
    elif missing > 0 and status == "healthy":
        status = "degraded"  # a worker is being replaced; the others serve
    ready = not missing and all(r.get("ready") for r in reports)
    first = reports[0] if reports else {}
    breaker_states = [(r.get("breaker") or {}).get("state", "closed") for r in reports]
    maintenance = [r.get("maintenance") or {} for r in reports]
    latest = max(maintenance, key=lambda m: m.get("last_pass_at") or "", default={})
    reasons = sorted({r["reason"] for r in reports if r.get("reason")})
    if missing > 0:
        reasons.append(f"{missing} of {expected} workers not running (being replaced)")
    return {
        "status": status,
        "timestamp": first.get("timestamp"),
        "version": first.get("version"),
        "ready": ready,
        "reason": "; ".join(reasons) or None,
        "workers": {"configured": expected, "running": len(reports), "processes": workers},
        "database": first.get("database"),
        "pool_stats": {
            "size": _sum(reports, "pool_stats", "size"),
            "active": _sum(reports, "pool_stats", "active"),
            "max_connections": (first.get("pool_stats") or {}).get("max_connections"),
            "per_worker": True,
        },
        "queue": {
            k: _sum(reports, "queue", k) for k in ("depth_rows", "capacity_rows", "depth_bytes", "capacity_bytes")
        },
        "breaker": {
            "state": max(breaker_states, key=lambda s: _BREAKER_ORDER.get(s, 0), default="closed"),
            "consecutive_failures": max(
                ((r.get("breaker") or {}).get("consecutive_failures", 0) for r in reports), default=0
            ),
            "opened_total": _sum(reports, "breaker", "opened_total"),
        },
        "spool": {
            "enabled": bool((first.get("spool") or {}).get("enabled")),
            **{
                k: _sum(reports, "spool", k)
                for k in ("bytes", "max_bytes", "segments", "backlog_bytes", "quarantined_bytes")
            },
        },
        "memory": {
            "rss_bytes": _sum(reports, "memory", "rss_bytes"),
            "largest_worker_peak_rss_bytes": max(
                ((r.get("memory") or {}).get("peak_rss_bytes", 0) for r in reports), default=0
            ),
            "limit_bytes": _sum(reports, "memory", "limit_bytes"),  # limits.memory_limit_mib, shared
            "limit_bytes_per_worker": (first.get("memory") or {}).get("limit_bytes"),
            "over_limit": any((r.get("memory") or {}).get("over_limit") for r in reports),
        },
        "writes": {
            "consecutive_failures": max(
                ((r.get("writes") or {}).get("consecutive_failures", 0) for r in reports), default=0
            ),
            "rows_lost": _sum(reports, "writes", "rows_lost"),
            "last_error": next(
                (
                    (r.get("writes") or {}).get("last_error")
                    for r in reports
                    if (r.get("writes") or {}).get("last_error")
                ),
                None,
            ),
        },
        "maintenance": latest,
    }
