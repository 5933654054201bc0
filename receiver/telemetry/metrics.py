"""Prometheus metrics: the OpenTelemetry Collector's names (so existing Collector dashboards and alerts
work) plus the seeds' `storage_*` names (used by the shipped alert rules and dashboards).

Everything lives on one private registry per receiver so tests can run several in one process.
Counters are declared without `_total`; the client library appends it on exposition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

# signal -> the Collector's item noun in metric names
ITEM_NOUNS = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000)
_QUERY_ROW_BUCKETS = (0, 1, 10, 100, 1000, 10000, 100000)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Children:
    """The labelled children of one metric, looked up once per label values: `.labels(...)` costs a
    lock, a tuple and a dict lookup in the client library (~5 µs), a request pays it several times."""

    __slots__ = ("_adders", "_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}
        self._adders: dict[tuple[str, ...], Callable[[float], None]] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            if len(self._children) > 4096:  # label values come from fixed sets; stay bounded anyway
                self._children.clear()
            child = self._children[labels] = self._metric.labels(*labels)
        return child

    def adder(self, *labels: str) -> Callable[[float], None]:
        """A Counter child's increment, straight to its value: `Counter.inc` checks that the child is
        observable (every labelled child is) and the amount not negative (counts are not), then calls
        this; the request path counts twice per request, and those checks were 4 of its Python calls."""
        add = self._adders.get(labels)
        if add is None:
            if len(self._adders) > 4096:
                self._adders.clear()
            add = self._adders[labels] = self(*labels)._value.inc
        return add


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.accepted: dict[str, Counter] = {}
        self.refused: dict[str, Counter] = {}
        self.enqueue_failed: dict[str, Counter] = {}
        self.sent: dict[str, Counter] = {}
        self.send_failed: dict[str, Counter] = {}
        for signal, noun in ITEM_NOUNS.items():
            self.accepted[signal] = Counter(
                f"otelcol_receiver_accepted_{noun}",
                f"{noun} accepted into the pipeline (acknowledged to the client)",
                ["transport"],
                registry=r,
            )
            self.refused[signal] = Counter(
                f"otelcol_receiver_refused_{noun}",
                f"{noun} refused: invalid (partial success) or not admitted (backpressure, limits)",
                ["transport", "reason"],
                registry=r,
            )
            self.enqueue_failed[signal] = Counter(
                f"otelcol_exporter_enqueue_failed_{noun}",
                f"{noun} that did not fit the queue (refused with a retryable status, never dropped)",
                registry=r,
            )
            self.sent[signal] = Counter(f"otelcol_exporter_sent_{noun}", f"{noun} committed to PostgreSQL", registry=r)
            self.send_failed[signal] = Counter(
                f"otelcol_exporter_send_failed_{noun}",
                f"{noun} that could not be stored (quarantined to the dead-letter store or lost)",
                ["reason"],
                registry=r,
            )
        self.requests = Counter(
            "otelcol_receiver_requests",
            "export requests by outcome (success, partial, refused, failure)",
            ["transport", "signal", "outcome"],
            registry=r,
        )
        # Every refusal with its reason, including those made before the body was decoded (their
        # items were never counted, so the refused_<items> counters cannot show them).
        self.refused_requests = Counter(
            "observatory_refused_requests",
            "export requests refused, by reason (full, memory, shutting_down, too_large, malformed, ...)",
            ["transport", "signal", "reason"],
            registry=r,
        )
        self.auth_refused = Counter(
            "observatory_auth_refused_requests",
            "requests refused by auth.mode = api_key (missing, invalid, expired key; missing scope; keys not loaded)",
            ["reason"],
            registry=r,
        )
        self.key_refreshes = Counter(
            "observatory_api_key_refreshes",
            "re-reads of the active API keys (auth.refresh_interval_s) by outcome; a key revoked before a "
            "successful one started is refused from its end on",
            ["outcome"],
            registry=r,
        )
        self.keys_active = Gauge("observatory_api_keys_active", "API keys usable now (loaded)", registry=r)
        self.key_refused = Counter(
            "observatory_key_refused_requests",
            "requests of a known API key refused, by the key's prefix (keys list) and reason "
            "(rate_limited, auth_forbidden)",
            ["key_prefix", "reason"],
            registry=r,
        )
        self.queue_size = Gauge(
            "otelcol_exporter_queue_size", "rows held in the queue (waiting or being written)", registry=r
        )
        self.queue_capacity = Gauge("otelcol_exporter_queue_capacity", "queue capacity in rows", registry=r)
        self.queue_bytes = Gauge(
            "observatory_queue_bytes", "estimated memory of the rows held in the queue", registry=r
        )
        self.queue_bytes_capacity = Gauge("observatory_queue_bytes_capacity", "queue capacity in bytes", registry=r)
        self.values_altered = Counter(
            "observatory_conversion_altered_values",
            "attribute values altered to be storable: truncated, NUL replaced, NaN/Infinity as text",
            ["signal", "kind"],
            registry=r,
        )
        # The seeds' storage_* family (alert rules and dashboards in config/ use these names).
        self.storage_writes = Counter("storage_writes", "COPY transactions by outcome", ["table", "status"], registry=r)
        self.storage_write_duration = Histogram(
            "storage_write_duration_seconds",
            "duration of one COPY transaction",
            ["table"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.storage_items_written = Counter("storage_items_written", "rows committed", ["table"], registry=r)
        self.storage_duplicates = Counter(
            "storage_duplicate_rows_skipped",
            "rows already stored (client retries, spool replays) skipped by the idempotent insert",
            ["table"],
            registry=r,
        )
        self.storage_batch_size = Histogram(
            "storage_batch_size", "rows per COPY transaction", ["table"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.storage_pool_connections = Gauge(
            "storage_pool_connections", "writer connections by state", ["state"], registry=r
        )
        self.storage_retries = Counter(
            "storage_retries", "COPY attempts retried after a transient error", ["table"], registry=r
        )
        self.storage_errors = Counter("storage_errors", "database errors by kind", ["table", "kind"], registry=r)
        self.storage_rows_encoded = Counter(
            "storage_copy_rows_encoded",
            "rows of successful COPYs by encoder: native (receiver/storage/_pgcopy.c) or asyncpg (the fallback)",
            ["table", "encoder"],
            registry=r,
        )
        self.storage_buffer_size = Gauge(
            "storage_buffer_size", "rows waiting for a writer, per table", ["table"], registry=r
        )
        # The maintenance task (receiver.storage.maintenance): partitions, rollups, retention.
        self.maintenance_passes = Counter(
            "observatory_maintenance_passes",
            "maintenance passes by outcome (ok, failed, skipped)",
            ["outcome"],
            registry=r,
        )
        self.maintenance_pass_duration = Histogram(
            "observatory_maintenance_pass_duration_seconds",
            "duration of one maintenance pass",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.maintenance_failures = Counter(
            "observatory_maintenance_failures", "failed maintenance steps (retried next pass)", ["step"], registry=r
        )
        self.maintenance_failing_passes = Gauge(
            "observatory_maintenance_consecutive_failed_passes",
            "maintenance passes failed in a row (3 or more: /health says degraded)",
            registry=r,
        )
        self.maintenance_last_success = Gauge(
            "observatory_maintenance_last_success_timestamp_seconds",
            "when the last fully successful pass started",
            registry=r,
        )
        self.partitions_created = Counter(
            "observatory_partitions_created",
            "daily partitions created (ahead, or for late rows)",
            ["table"],
            registry=r,
        )
        self.partitions_dropped = Counter(
            "observatory_partitions_dropped", "daily partitions dropped for retention", ["table"], registry=r
        )
        self.partition_rows_moved = Counter(
            "observatory_partition_default_rows_moved",
            "rows moved from the DEFAULT partition into their day's new partition",
            ["table"],
            registry=r,
        )
        self.partition_rows_expired = Counter(
            "observatory_partition_default_rows_expired",
            "rows of expired days deleted from the DEFAULT partition",
            ["table"],
            registry=r,
        )
        self.partitions_days_ahead = Gauge(
            "observatory_partitions_days_ahead",
            "future days that already have their partition",
            ["table"],
            registry=r,
        )
        self.rollup_refresh_duration = Histogram(
            "observatory_rollup_refresh_duration_seconds",
            "time to bring the four rollups up to date",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.rollup_spans = Counter("observatory_rollup_spans", "LLM spans added to the rollups", registry=r)
        self.rollup_rows_written = Counter(
            "observatory_rollup_rows_written", "rollup rows inserted or updated", ["rollup"], registry=r
        )
        self.rollup_rows_expired = Counter(
            "observatory_rollup_rows_expired", "rollup rows deleted for retention", ["rollup"], registry=r
        )
        self.rollup_lag = Gauge(
            "observatory_rollup_lag_seconds",
            "age of the newest ingestion time fully in the rollups",
            registry=r,
        )
        self.timescale_jobs_failing = Gauge(
            "observatory_timescaledb_jobs_failing", "TimescaleDB policy jobs whose last run failed", registry=r
        )

        self.breaker_state = Gauge(
            "observatory_breaker_state",
            "circuit breaker in front of the writers: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "observatory_breaker_transitions", "circuit breaker state changes", ["to_state"], registry=r
        )
        self.spool_bytes = Gauge("observatory_spool_bytes", "bytes in the write-ahead spool", registry=r)
        self.spool_capacity = Gauge("observatory_spool_capacity_bytes", "spool.max_bytes", registry=r)
        self.spool_backlog = Gauge(
            "observatory_spool_backlog_bytes", "spooled bytes waiting to be replayed into the queue", registry=r
        )
        self.spool_segments = Gauge("observatory_spool_segments", "segment files in the spool", registry=r)
        self.spool_replayed = Counter(
            "observatory_spool_replayed_records", "spool records read back and handed to the writers", registry=r
        )
        self.spool_write_errors = Counter(
            "observatory_spool_write_errors",
            "spool appends refused, by reason: disk_full (no space), min_free_bytes (the write would leave "
            "less than spool.min_free_bytes free), io_error",
            ["reason"],
            registry=r,
        )
        self.spool_free_bytes = Gauge(
            "observatory_spool_free_bytes", "free bytes of the spool's file system (statvfs)", registry=r
        )
        self.spool_disk_full = Gauge(
            "observatory_spool_disk_full",
            "1 while the spool refuses for its disk (full, or below spool.min_free_bytes), else 0",
            registry=r,
        )
        self.spool_quarantined = Counter(
            "observatory_spool_quarantined_bytes", "corrupt or torn spool bytes moved to quarantine/", registry=r
        )
        # Decoding (receiver.frontends.decode_pool, receiver.convert.budget) and the event loop it must not hold.
        self.decode_in_flight = Gauge(
            "observatory_decode_requests", "requests waiting for or being decoded in the decode pool", registry=r
        )
        self.decode_reserved = Gauge(
            "observatory_decode_memory_reserved_bytes",
            "decode memory reserved by the requests being decoded (counts toward limits.memory_limit_mib)",
            registry=r,
        )
        self.loop_lag = Histogram(
            "observatory_event_loop_lag_seconds",
            "how late the event loop woke a task that asked to wake every 50 ms (a stall shows here)",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "observatory_event_loop_lag_max_seconds", "largest event-loop lag of the last 60 s", registry=r
        )
        self.memory_limit = Gauge(
            "observatory_memory_limit_bytes",
            "limits.memory_limit_mib in bytes (with otlp.workers = N: this worker's share, 1/N)",
            registry=r,
        )
        self.memory_rss = Gauge("observatory_memory_rss_bytes", "resident memory as last sampled", registry=r)
        self.memory_peak = Gauge("observatory_memory_peak_rss_bytes", "highest resident memory sampled", registry=r)
        self.memory_trims = Counter(
            "observatory_memory_trims_total", "malloc_trim calls after a backlog drained (pipeline/trim.py)", registry=r
        )
        self.memory_trimmed = Counter(
            "observatory_memory_trimmed_bytes_total", "resident memory those calls handed back", registry=r
        )
        # The read API (query.endpoint), per endpoint: trace, spans, session, usage, metrics, models.
        self.query_duration = Histogram(
            "observatory_query_duration_seconds",
            "time a read API request spent in the database and shaping its answer",
            ["endpoint"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.query_rows = Histogram(
            "observatory_query_rows",
            "rows a read API request read from the database",
            ["endpoint"],
            buckets=_QUERY_ROW_BUCKETS,
            registry=r,
        )
        self.query_requests = Counter(
            "observatory_query_requests",
            "read API requests by HTTP status (400 bad parameter, 401/403 key, 404, 503 timeout or busy, ...)",
            ["endpoint", "status"],
            registry=r,
        )

        self._initialize_rare_series()

    def _initialize_rare_series(self) -> None:
        """Export the series of rare events at 0 from the start. A series born at its first event has no
        earlier sample, so `increase()` and `rate()` miss that event: alerts on dead letters, spool
        errors, internal errors and failed maintenance passes would stay silent the first time."""
        for signal in ITEM_NOUNS:
            for reason in ("quarantined", "dead_letter_full", "shutdown"):
                self.send_failed[signal].labels(reason)
            for transport in ("grpc", "http"):
                for reason in ("internal", "spool_error", "spool_disk_full"):
                    self.refused_requests.labels(transport, signal, reason)
        for outcome in ("ok", "failed", "skipped"):
            self.maintenance_passes.labels(outcome)
        for state in ("open", "half_open", "closed"):
            self.breaker_transitions.labels(state)

    def render(self) -> bytes:
        return generate_latest(self.registry)
