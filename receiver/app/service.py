"""The receiver as a set of components started in data-flow order and stopped in reverse.

start:    embedded database (if no URL) -> admin endpoint -> writers -> front ends (OTLP, read API), then in the
          background: connect, migrate, seed prices; ready once that is done; then the maintenance
          task (partitions, rollups, retention) starts, since it needs the migrated schema.
shutdown: readiness 503 -> front ends (OTLP, read API) stop accepting -> maintenance stops (its pass finishes) -> queue
          drained to the database within pipeline.shutdown_timeout_s -> connections closed -> embedded
          database stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from receiver import __version__, schema
from receiver.app.config import Config, ConfigError
from receiver.convert.budget import MIB, DecodeLimits
from receiver.convert.common import ConvertOptions
from receiver.convert.logs_metrics_bytes import logs_metrics_converter
from receiver.convert.price_source import GenaiPrices
from receiver.convert.pricing import PriceBook
from receiver.convert.traces_bytes import trace_converter
from receiver.convert.window import TimeWindow
from receiver.endpoints import is_loopback
from receiver.frontends import grpc_native, http_lean
from receiver.frontends.auth import ApiKeyAuthenticator
from receiver.frontends.decode_pool import DecodePool
from receiver.frontends.grpc_native import GrpcNativeFrontend
from receiver.frontends.grpc_server import GrpcFrontend
from receiver.frontends.http_lean import HttpLeanFrontend
from receiver.frontends.http_server import HttpFrontend
from receiver.frontends.ingest import Ingest, IngestLimits
from receiver.frontends.ratelimit import KeyRateLimiter
from receiver.frontends.signals import SIGNALS, SignalSpec
from receiver.frontends.tls import TlsCredentials, TlsError
from receiver.pipeline.breaker import BreakerSettings, BreakerState, CircuitBreaker
from receiver.pipeline.memory import MemoryGuard
from receiver.pipeline.pipeline import Pipeline
from receiver.pipeline.queue import BoundedQueue
from receiver.pipeline.sink import CopySink, DeadLetterFile, RetryPolicy
from receiver.pipeline.spool import Spool
from receiver.pipeline.trim import AllocatorTrimmer
from receiver.query.server import QueryServer
from receiver.storage.api_keys import ActiveKey, load_active_keys, mark_used
from receiver.storage.database import Database, probe, redact
from receiver.storage.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from receiver.storage.errors import describe
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import MigrationError, applied_flavor, migrate, pending
from receiver.storage.pricing_store import (
    PricingFileError,
    PricingSchemaError,
    default_pricing_file,
    load_price_book,
    may_seed_prices,
    read_pricing_file,
    seed_prices,
)
from receiver.storage.retention import configured_retention_s, timescale_retention_s
from receiver.storage.writer import DatabaseWriter
from receiver.telemetry.admin import AdminServer
from receiver.telemetry.logging import configure_logging, get_logger
from receiver.telemetry.looplag import LoopLagMonitor
from receiver.telemetry.metrics import Metrics
from receiver.telemetry.systemd import SystemdHeartbeat, SystemdNotifier

# New containers between two passes of the garbage collector's youngest generation (CPython: 700).
GC_FIRST_GENERATION_THRESHOLD = 10_000


def retention_days(config: Config) -> dict[str, int]:
    """[maintenance] *_retention_days of the three signal tables, by signal."""
    m = config.maintenance
    return {"traces": m.traces_retention_days, "metrics": m.metrics_retention_days, "logs": m.logs_retention_days}


def maintenance_settings(config: Config) -> MaintenanceSettings:
    m = config.maintenance
    return MaintenanceSettings(
        interval_s=m.interval_s,
        partition_days_ahead=m.partition_days_ahead,
        partition_hours=m.partition_hours,
        retention_days={
            "llm_traces": m.traces_retention_days,
            "llm_metrics": m.metrics_retention_days,
            "llm_logs": m.logs_retention_days,
            "llm_metrics_1min": m.rollup_1min_retention_days,
            "llm_metrics_1hour": m.rollup_1hour_retention_days,
            "llm_metrics_1day": m.rollup_1day_retention_days,
            "cost_analysis_hourly": m.cost_hourly_retention_days,
            "usage_environment_hourly": m.cost_hourly_retention_days,
        },
        max_default_days_per_pass=m.max_default_days_per_pass,
        lock_timeout_ms=m.lock_timeout_ms,
        rollup_delay_s=m.rollup_delay_s,
    )


class FatalError(Exception):
    """The receiver cannot do its job until an operator acts; the message says what to do."""


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """This receiver is worker `index` of a supervisor (otlp.workers > 1): it shares the OTLP ports with
    the other workers and serves its admin endpoint privately, for the supervisor to aggregate."""

    index: int
    admin_endpoint: str  # unix:PATH


class Receiver:
    def __init__(
        self, config: Config, notifier: SystemdNotifier | None = None, *, worker: WorkerRole | None = None
    ) -> None:
        self.config = config
        self.worker = worker
        # systemd (Type=notify): READY=1 once serving, STOPPING=1 on drain, STATUS=, watchdog pings. A worker
        # gets none: systemd talks to its supervisor, which says READY=1 once every worker serves.
        self.notifier = notifier if notifier is not None and worker is None else SystemdNotifier()
        self.heartbeat = SystemdHeartbeat(self.notifier, self.status_line, lambda: not self.ready and not self.draining)
        self.metrics = Metrics()
        self.log = get_logger("receiver")
        self.embedded: EmbeddedPostgres | None = None
        self.database: Database | None = None
        self._admin_conn: asyncpg.Connection | None = None
        self._admin_lock = asyncio.Lock()
        self.flavor: str | None = None
        self.ready = False
        self.draining = False
        self.not_ready_reason = "connecting to the database"
        self.fatal: FatalError | None = None
        self._stopped = asyncio.Event()
        self._bootstrap_task: asyncio.Task[None] | None = None
        self.authenticator = (
            ApiKeyAuthenticator(config.pipeline.retry_after_s) if config.auth.mode == "api_key" else None
        )
        self._keys_task: asyncio.Task[None] | None = None
        self._told_prices_read_only = False
        try:  # checked before anything starts: a bad certificate is a configuration error (exit 2)
            self.tls = TlsCredentials.load(config.otlp.tls) if config.otlp.tls.cert_file else None
        except TlsError as exc:
            raise ConfigError(exc.problems) from None
        # Retention per signal (seconds): the configured days until the database says otherwise (the
        # timescale flavor's policies are read at bootstrap). Spans, points and records older, or further
        # ahead than limits.max_future_skew_s, are rejected at the door.
        self.retention_s = configured_retention_s(retention_days(config))
        self._convert_options = self._make_options(PriceBook())
        p = config.pipeline
        self.queue = BoundedQueue(
            schema.SIGNAL_TABLES.values(), p.queue_max_rows, p.queue_max_bytes, p.max_share, writers=p.writers
        )
        self.metrics.queue_capacity.set(p.queue_max_rows)
        self.metrics.queue_bytes_capacity.set(p.queue_max_bytes)
        # Read at scrape time, so the gauges are never stale.
        self.metrics.queue_size.set_function(lambda: self.queue.rows)
        self.metrics.queue_bytes.set_function(lambda: self.queue.nbytes)
        for table in schema.SIGNAL_TABLES.values():
            self.metrics.storage_buffer_size.labels(table).set_function(
                lambda table=table: self.queue.pending_rows(table)
            )
        b = config.breaker
        self.breaker = CircuitBreaker(
            BreakerSettings(b.failure_threshold, b.failure_rate, b.window, b.cooldown_s, b.max_cooldown_s),
            on_transition=self._breaker_moved,
        )
        self.metrics.breaker_state.set(0)
        self.memory = MemoryGuard(config.limits.memory_limit_mib * 1024 * 1024)
        self.metrics.memory_limit.set(self.memory.limit_bytes)
        self.metrics.memory_rss.set_function(lambda: self.memory.rss_bytes)
        self.metrics.memory_peak.set_function(lambda: self.memory.peak_rss_bytes)
        # After a backlog drains, hand the freed memory back (receiver.pipeline.trim): the queue counts as
        # drained below a tenth of its byte bound.
        self.trimmer = AllocatorTrimmer(
            lambda: self.queue.nbytes, p.queue_max_bytes // 10, lambda: self.memory.rss_bytes, self._trimmed
        )
        self.decode_pool = DecodePool(config.otlp.decode_threads)
        self.metrics.decode_in_flight.set_function(lambda: self.decode_pool.waiting)
        self.metrics.decode_reserved.set_function(lambda: self.memory.reserved_bytes)
        self.loop_lag = LoopLagMonitor(self.metrics.loop_lag, self.metrics.loop_lag_max)
        self.spool: Spool | None = None
        self.pipeline: Pipeline | None = None
        self.ingest: Ingest | None = None
        self.grpc: GrpcFrontend | GrpcNativeFrontend | None = None
        self.grpc_engine = ""  # otlp.grpc_engine as resolved at start (nghttp2 or grpcio)
        self.http_engine = ""  # otlp.http_engine as resolved at start (httptools or aiohttp)
        self.http: HttpFrontend | HttpLeanFrontend | None = None
        self.admin: AdminServer | None = None
        self.query: QueryServer | None = None
        self.maintenance: Maintenance | None = None

    # -- start -----------------------------------------------------------------------------------

    def _grpc_frontend(
        self, ingest: Ingest, signals: list[SignalSpec], *, reuse_port: bool
    ) -> GrpcFrontend | GrpcNativeFrontend:
        """otlp.grpc_engine: nghttp2 (the C front end) where it is built and fits (cleartext), else grpcio."""
        otlp = self.config.otlp
        engine = otlp.grpc_engine
        if engine == "auto":
            engine = "nghttp2" if grpc_native.available() and self.tls is None else "grpcio"
        self.grpc_engine = engine
        if engine == "nghttp2":
            return GrpcNativeFrontend(
                otlp.grpc_endpoint, ingest, signals, otlp.max_request_bytes, reuse_port=reuse_port
            )
        return GrpcFrontend(
            otlp.grpc_endpoint, ingest, signals, otlp.max_request_bytes, self.tls, reuse_port=reuse_port
        )

    def _http_frontend(
        self, ingest: Ingest, signals: list[SignalSpec], *, reuse_port: bool
    ) -> HttpFrontend | HttpLeanFrontend:
        """otlp.http_engine: httptools (the lean HTTP/1.1 protocol) where it is installed, else aiohttp."""
        otlp = self.config.otlp
        engine = otlp.http_engine
        if engine == "auto":
            engine = "httptools" if http_lean.available() else "aiohttp"
        self.http_engine = engine
        frontend = HttpLeanFrontend if engine == "httptools" else HttpFrontend
        return frontend(otlp.http_endpoint, ingest, signals, otlp.max_request_bytes, self.tls, reuse_port=reuse_port)

    def _assemble_pipeline(self) -> Ingest:
        """The writers, the sink, the pipeline and the Ingest in front of them (nothing started, nothing
        connected: benchmarks.request_path builds the request path this way without a database)."""
        cfg = self.config
        db = self.database
        native_copy = cfg.database.copy_encoder == "native"
        writers = [DatabaseWriter(db.connect, native_copy) for _ in range(cfg.pipeline.writers)]
        sink = CopySink(
            self.queue,
            writers,
            schema.TABLE_COLUMNS,
            {table: signal for signal, table in schema.SIGNAL_TABLES.items()},
            self.metrics,
            cfg.pipeline.batch_max_rows,
            cfg.pipeline.flush_interval_ms / 1000,
            DeadLetterFile(Path(cfg.dead_letter.dir), cfg.dead_letter.max_file_bytes),
            self.breaker,
            RetryPolicy(cfg.database.retry_initial_ms / 1000, cfg.database.retry_max_ms / 1000),
        )
        self.pipeline = Pipeline(self.queue, sink, self.breaker, cfg.pipeline.batch_max_rows, self.memory)
        limits = IngestLimits(
            cfg.otlp.max_request_bytes,
            cfg.pipeline.row_overhead_bytes,
            cfg.pipeline.retry_after_s,
            DecodeLimits(
                cfg.limits.max_items_per_request,
                cfg.limits.max_containers_per_request,
                cfg.limits.max_request_memory_mib * MIB,
                cfg.limits.max_decode_amplification,
            ),
        )
        ingest = Ingest(
            self.pipeline,
            self.metrics,
            limits,
            lambda: self._convert_options,
            self.authenticator,
            KeyRateLimiter(cfg.auth.rate_burst_s),
            self.decode_pool,
            self.memory,
        )
        self.ingest = ingest
        return ingest

    async def start(self) -> None:
        cfg = self.config
        self.heartbeat.start()
        dsn = cfg.database.url
        if not dsn:
            self.embedded = EmbeddedPostgres(cfg.database.embedded_dir)
            dsn = await asyncio.to_thread(self.embedded.start)
            self.log.info("embedded database running", data_dir=str(self.embedded.root), dsn=dsn, psql=f"psql '{dsn}'")
        self.database = Database(dsn, cfg.database.connect_timeout_s)
        self.loop_lag.start()
        self.trimmer.start()

        admin_endpoint = self.worker.admin_endpoint if self.worker is not None else cfg.admin.endpoint
        self.admin = AdminServer(admin_endpoint, self.metrics, self.health_report, self.readiness)
        await self.admin.start()

        ingest = self._assemble_pipeline()
        if cfg.pipeline.durability == "spool":
            await self._open_spool(ingest)
        await self.pipeline.start()

        signals = list(SIGNALS.values())
        shared = self.worker is not None  # workers share the OTLP ports (SO_REUSEPORT)
        self.grpc = self._grpc_frontend(ingest, signals, reuse_port=shared)
        self.http = self._http_frontend(ingest, signals, reuse_port=shared)
        await self.grpc.start()
        await self.http.start()
        if cfg.query.endpoint:
            self.query = QueryServer(
                cfg.query, self.metrics, self.authenticator, self.readiness, cfg.database.connect_timeout_s
            )
            await self.query.start(dsn, reuse_port=shared)  # workers share the read API's port too
        self.log.info(
            "receiver listening",
            version=__version__,
            grpc=f"{cfg.otlp.grpc_endpoint} (port {self.grpc.port}, {self.grpc_engine})",
            http=f"{cfg.otlp.http_endpoint} (port {self.http.port}, {self.http_engine})",
            admin=admin_endpoint if shared else f"{cfg.admin.endpoint} (port {self.admin.port})",
            query=f"{cfg.query.endpoint} (port {self.query.port})" if self.query else "off",
            tls=self.tls.describe() if self.tls is not None else "off",
            tls_certificate_sha256=self.tls.material.fingerprint if self.tls is not None else None,
            auth=cfg.auth.mode,
            database=redact(dsn),
            durability=cfg.pipeline.durability,
            trace_converter=trace_converter(cfg.convert.native, cfg.convert.native_rules),
            logs_metrics_converter=logs_metrics_converter(cfg.convert.native),
        )
        self._warn_if_open()
        self._bootstrap_task = asyncio.create_task(self._bootstrap(), name="database-bootstrap")
        # What exists now (modules, descriptors, the components) lives as long as the process: keep it
        # out of the garbage collector's full passes, each of which would walk it again (tens of ms,
        # holding the GIL) while large requests are being decoded.
        gc.freeze()
        # The collector's first generation runs every 700 new containers by default: ~1,000 passes in 20 s
        # at full load, 5 % of the receiver's CPU, to find no cycles (rows are untracked atoms; what lives
        # a request long dies by reference count). Every 10,000 keeps cyclic garbage bounded (a few MB).
        gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])

    def _warn_if_open(self) -> None:
        """One warning when other hosts can send data that nothing authenticates, one when they can read
        every project's data."""
        if self.config.auth.mode != "none":
            return  # API keys authenticate every sender and reader
        if self.worker is not None and self.worker.index > 0:
            return  # workers share the ports and the configuration: worker 0 warns for all of them
        query = self.config.query.endpoint
        if query and not is_loopback(query):
            self.log.warning(
                "read API served to other hosts without authentication",
                endpoint=query,
                detail="auth.mode = none: anyone who can reach this port can read every project's data. Set "
                "auth.mode = api_key (keys with the read scope), or keep query.endpoint on localhost",
            )
        if self.tls is not None and self.tls.mutual:
            return  # client certificates authenticate every sender
        otlp = self.config.otlp
        exposed = [e for e in (otlp.grpc_endpoint, otlp.http_endpoint) if not is_loopback(e)]
        if exposed:
            self.log.warning(
                "OTLP served to other hosts without authentication",
                endpoints=exposed,
                detail="auth.mode = none: anyone who can reach these ports can write telemetry. Set "
                "auth.mode = api_key (and otlp.tls.* for TLS), or listen on localhost only",
            )

    async def _open_spool(self, ingest: Ingest) -> None:
        assert self.pipeline is not None
        cfg = self.config.spool
        spool = Spool(
            Path(cfg.dir),
            cfg.max_bytes,
            cfg.segment_bytes,
            self.pipeline.hand_over,
            ingest.materialize,
            self.pipeline.can_hand_over,
            self.metrics,
            cfg.min_free_bytes,
        )
        self.pipeline.attach_spool(spool)
        self.spool = spool
        self.breaker.urgent = spool.near_full  # probe the database sooner when clients are about to be refused
        self.metrics.spool_capacity.set(cfg.max_bytes)
        self.metrics.spool_free_bytes.set_function(lambda: spool.free_bytes() or 0)
        self.metrics.spool_disk_full.set_function(lambda: int(spool.disk_full))
        self.metrics.spool_bytes.set_function(lambda: spool.used_bytes)
        self.metrics.spool_backlog.set_function(spool.backlog_bytes)
        self.metrics.spool_segments.set_function(lambda: spool.segment_count)
        report = await spool.open()
        self.log.info(
            "spool open",
            dir=str(Path(cfg.dir).resolve()),
            recovered_records=report.records,
            quarantined_bytes=report.quarantined_bytes,
        )

    def _breaker_moved(self, previous: BreakerState, state: BreakerState) -> None:
        self.metrics.breaker_state.set(state.value)
        self.metrics.breaker_transitions.labels(state.name.lower()).inc()
        log = self.log.warning if state is BreakerState.OPEN else self.log.info
        log(
            "circuit breaker " + state.name.lower().replace("_", "-"),
            previous=previous.name.lower(),
            consecutive_failures=self.breaker.consecutive_failures,
            cooldown_s=round(self.breaker.cooldown_remaining(), 2),
            spooling=self.spool is not None,
        )

    async def _admin_connection(self) -> asyncpg.Connection:
        assert self.database is not None
        if self._admin_conn is None or self._admin_conn.is_closed():
            self._admin_conn = await self.database.connect("admin")
        return self._admin_conn

    async def _bootstrap(self) -> None:
        """Connect, migrate, seed prices. Retries while the database is unreachable; a problem only an
        operator can fix (edited migration, bad price file) stops the receiver with that message."""
        attempt = 0
        while True:
            try:
                async with self._admin_lock:
                    conn = await self._admin_connection()
                    if self.config.database.auto_migrate:
                        report = await migrate(conn, self.config.database.flavor)
                        if report.applied:
                            self.log.info("migrations applied", flavor=report.flavor, applied=report.applied)
                        if report.distributed:
                            self.log.info("citus: tables distributed", tables=report.distributed)
                    missing = await pending(conn)
                    if missing:
                        self.not_ready_reason = f"migrations not applied: {', '.join(missing)} (run `migrate`)"
                        raise ConnectionError(self.not_ready_reason)
                    self.flavor = await applied_flavor(conn)
                    await self._load_retention(conn)
                    await self._load_prices(conn)
                    if self.authenticator is not None:
                        self._use_keys(await load_active_keys(conn))
                await self._start_maintenance()  # its first pass creates today's partitions
                if self.pipeline is not None:
                    self.pipeline.sink.storage_ready.set()  # writers start once the schema is complete
                self.ready = True
                self.not_ready_reason = ""
                if self.grpc is not None:
                    await self.grpc.set_serving(True)
                self.notifier.ready(self.status_line())  # the front ends listen since start(): serving now
                self.log.info("ready", flavor=self.flavor, prices=self._convert_options.price_book.describe())
                if self.authenticator is not None:
                    self._keys_task = asyncio.create_task(self._refresh_keys(), name="api-key-refresh")
                return
            except (MigrationError, PricingFileError, PricingSchemaError) as exc:
                self.fatal = FatalError(str(exc))
                self.log.error("cannot continue", error=str(exc))
                self._stopped.set()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, TimeoutError) as exc:
                attempt += 1
                if not self.not_ready_reason.startswith("migrations"):
                    self.not_ready_reason = f"database unreachable: {describe(exc)}"
                delay = min(10.0, 0.2 * 2 ** min(attempt, 6))
                self.log.warning("database not ready; retrying", error=describe(exc), retry_in_s=delay, attempt=attempt)
                await asyncio.sleep(delay)

    async def _refresh_keys(self) -> None:
        """Re-read active API keys and record which were used, every auth.refresh_interval_s."""
        assert self.authenticator is not None
        while True:
            await asyncio.sleep(self.config.auth.refresh_interval_s)
            used = list(self.authenticator.used)
            try:
                async with self._admin_lock:
                    conn = await self._admin_connection()
                    await mark_used(conn, used)
                    self._use_keys(await load_active_keys(conn))
                self.authenticator.used.difference_update(used)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.metrics.key_refreshes.labels("failed").inc()
                self.log.warning("could not refresh API keys; keeping the last known set", error=describe(exc))

    def _use_keys(self, keys: dict[bytes, ActiveKey]) -> None:
        assert self.authenticator is not None
        self.authenticator.replace_keys(keys)
        if self.ingest is not None:  # forget the rate-limit state of keys gone
            self.ingest.rate_limiter.retain(self.authenticator.active_ids())
        self.metrics.keys_active.set(len(keys))
        self.metrics.key_refreshes.labels("ok").inc()

    async def _start_maintenance(self) -> None:
        """Start the maintenance task once the schema is migrated (it needs the partitioned tables and
        rollup stores), on a connection of its own so a long pass never delays /health."""
        if not self.config.maintenance.enabled or self.draining or self.database is None:
            return
        database = self.database
        if self.config.maintenance.database_url:  # native partitions need the tables' owner (README)
            database = Database(self.config.maintenance.database_url, self.config.database.connect_timeout_s)
        self.maintenance = Maintenance(
            lambda: database.connect("maintenance"),
            self.flavor or "native",
            maintenance_settings(self.config),
            self.metrics,
        )
        await self.maintenance.start()

    def _make_options(self, price_book: PriceBook) -> ConvertOptions:
        skew = self.config.limits.max_future_skew_s
        return ConvertOptions(
            self.config.limits.max_attribute_value_bytes,
            price_book,
            native=self.config.convert.native,
            native_rules=self.config.convert.native_rules,
            windows={signal: TimeWindow(seconds, skew) for signal, seconds in self.retention_s.items()},
        )

    async def _load_retention(self, conn: asyncpg.Connection) -> None:
        """The lower edge of each signal's accepted window: the retention the database enforces."""
        retention = configured_retention_s(retention_days(self.config))
        if self.flavor == "timescale":
            policies = await timescale_retention_s(conn)
            for signal, table in schema.SIGNAL_TABLES.items():
                if signal not in policies:
                    self.log.warning(
                        "no TimescaleDB retention policy on the table; items older than the configured "
                        "retention are rejected",
                        table=table,
                        key=f"maintenance.{signal}_retention_days",
                        days=retention[signal] // 86400,
                    )
            retention.update(policies)
        self.log.info(
            "accepted time window: items older than their table's retention or further ahead than "
            "limits.max_future_skew_s are rejected",
            retention_days={signal: round(seconds / 86400, 2) for signal, seconds in retention.items()},
            max_future_skew_s=self.config.limits.max_future_skew_s,
        )
        self.retention_s = retention
        self._convert_options = self._make_options(self._convert_options.price_book)

    async def _load_prices(self, conn: asyncpg.Connection, fresh: bool = False) -> None:
        """Read the maintained source (off the event loop: importing genai-prices' data takes about a
        second); when this role may write model_pricing, record the price file and that source in it;
        then swap in the new PriceBook."""
        maintained = None
        if self.config.pricing.source == "genai-prices":
            maintained = await asyncio.to_thread(GenaiPrices, fresh)
        if await may_seed_prices(conn):
            path = Path(self.config.pricing.file) if self.config.pricing.file else default_pricing_file()
            prices = await asyncio.to_thread(read_pricing_file, path)
            await seed_prices(conn, prices, maintained)
        elif not self._told_prices_read_only:
            self._told_prices_read_only = True
            self.log.info(
                "model prices are read, not seeded: this role may not write model_pricing "
                "(a writer role; `llm-observatory-receiver migrate`, run as the owner, seeds them)"
            )
        self._convert_options = self._make_options(await load_price_book(conn, maintained))

    def _reload_tls(self, config: Config) -> None:
        if self.tls is None:
            if config.otlp.tls.cert_file:
                self.log.error("TLS not reloaded: turning TLS on needs a restart", key="otlp.tls.cert_file")
            return
        try:
            changed = self.tls.reload(config.otlp.tls)
        except TlsError as exc:
            self.log.error("TLS certificates not reloaded; keeping the previous ones", problems=exc.problems)
            return
        self.log.info(
            "TLS certificates reloaded",
            changed=changed,
            tls=self.tls.describe(),
            tls_certificate_sha256=self.tls.material.fingerprint,
        )

    async def reload(self, config: Config) -> None:
        """SIGHUP: log level, prices, TLS certificates and (timescale) the retention policies; other settings
        need a restart."""
        serving = self.ready and not self.draining  # READY=1 again only if it was sent before
        if serving:
            self.notifier.reloading()
        configure_logging(config.logging.level, config.logging.format)
        self.config = config
        self._reload_tls(config)
        try:
            async with self._admin_lock:
                conn = await self._admin_connection()
                if self.flavor is not None:
                    await self._load_retention(conn)
                await self._load_prices(conn, fresh=True)
            self.log.info(
                "reloaded", prices=self._convert_options.price_book.describe(), log_level=config.logging.level
            )
        except Exception as exc:
            self.log.error("reload failed; keeping the previous prices", error=describe(exc))
        if serving:
            self.notifier.ready(self.status_line())

    # -- health ----------------------------------------------------------------------------------

    def status_line(self) -> str:
        """One line for systemd's STATUS= (`systemctl status`): what the receiver is doing, queue, breaker, spool."""
        if self.draining:
            phase = "draining"
        elif self.ready:
            phase = "ready"
        else:
            phase = f"starting: {self.not_ready_reason}" if self.not_ready_reason else "starting"
        mib = 1024 * 1024
        parts = [
            phase,
            f"queue {self.queue.rows}/{self.queue.max_rows} rows, {self.queue.nbytes / mib:.0f}/"
            f"{self.queue.max_bytes / mib:.0f} MiB",
            f"breaker {self.breaker.state.name.lower().replace('_', '-')}",
        ]
        if self.spool is not None:
            parts.append(
                f"spool {self.spool.used_bytes / mib:.0f}/{self.config.spool.max_bytes / mib:.0f} MiB, "
                f"backlog {self.spool.backlog_bytes() / mib:.0f} MiB"
            )
        if self.maintenance is not None and self.maintenance.consecutive_failures:
            parts.append(f"maintenance failed {self.maintenance.consecutive_failures}x in a row")
        return "; ".join(parts)

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: shutting down"
        return self.ready, self.not_ready_reason

    async def health_report(self) -> dict[str, Any]:
        postgres: dict[str, Any] = {"status": "unknown", "latency_ms": None}
        try:
            async with self._admin_lock:
                latency = await probe(await self._admin_connection())
            postgres = {"status": "healthy", "latency_ms": round(latency, 2)}
        except Exception as exc:
            postgres = {"status": "unhealthy", "latency_ms": None, "error": describe(exc)}
            if self._admin_conn is not None:
                self._admin_conn.terminate()
                self._admin_conn = None
        postgres["flavor"] = self.flavor
        postgres["embedded"] = self.embedded is not None
        cfg = self.config
        sink = self.pipeline.sink if self.pipeline else None
        active = sink.connected_writers() if sink else 0
        size = sink.writer_count if sink else 0
        maintenance = (
            self.maintenance.health()
            if self.maintenance is not None
            else {"enabled": cfg.maintenance.enabled, "started": False}
        )
        status = "healthy"
        if postgres["status"] != "healthy" or not self.ready:
            status = "unhealthy" if not self.ready and self.fatal else "degraded"
        if self.maintenance is not None and self.maintenance.consecutive_failures >= 3:
            status = "degraded"  # data keeps landing, but partitions / rollups / retention are falling behind
        if self.spool is not None and self.spool.disk_full:
            status = "degraded"  # clients are refused until the spool's disk has room again
        if self.fatal:
            status = "unhealthy"
        return {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "version": __version__,
            "pid": os.getpid(),
            "ready": self.readiness()[0],
            "reason": self.readiness()[1] or None,
            "database": {"postgres": postgres},
            "pool_stats": {
                "size": size,
                "active": active,
                "idle": 0,
                "max_connections": cfg.database.max_connections,
                "utilization_percent": round(100 * (active + 1) / cfg.database.max_connections, 1),
                "near_capacity": active + 1 >= cfg.database.max_connections,
            },
            "queue": {
                "depth_rows": self.queue.rows,
                "capacity_rows": self.queue.max_rows,
                "depth_bytes": self.queue.nbytes,
                "capacity_bytes": self.queue.max_bytes,
            },
            "breaker": {
                "state": self.breaker.state.name.lower(),
                "consecutive_failures": self.breaker.consecutive_failures,
                "cooldown_remaining_s": round(self.breaker.cooldown_remaining(), 2),
                "opened_total": self.breaker.opened_total,
            },
            "spool": {
                "enabled": self.spool is not None,
                "bytes": self.spool.used_bytes if self.spool else 0,
                "max_bytes": cfg.spool.max_bytes,
                "segments": self.spool.segment_count if self.spool else 0,
                "backlog_bytes": self.spool.backlog_bytes() if self.spool else 0,
                "quarantined_bytes": self.spool.quarantined_bytes if self.spool else 0,
                # As of the last write attempt: refusing for the disk (full, or below min_free_bytes).
                "disk_full": self.spool.disk_full if self.spool else False,
                "disk_full_reason": self.spool.disk_full_reason if self.spool else None,
                "free_bytes": self.spool.free_bytes() if self.spool else None,
                "min_free_bytes": cfg.spool.min_free_bytes,
                "write_errors": self.spool.write_errors if self.spool else 0,
                "near_full": self.spool.near_full() if self.spool else False,
            },
            # Items outside it are rejected (partial_success): older than their table's retention, or
            # further ahead of the receive time than limits.max_future_skew_s.
            "time_window": {
                "retention_days": {signal: round(seconds / 86400, 2) for signal, seconds in self.retention_s.items()},
                "max_future_skew_s": cfg.limits.max_future_skew_s,
            },
            "memory": {
                "rss_bytes": self.memory.rss_bytes,
                "peak_rss_bytes": self.memory.peak_rss_bytes,
                "limit_bytes": self.memory.limit_bytes,
                "over_limit": self.memory.over_limit,
            },
            "writes": {
                "consecutive_failures": sink.consecutive_failures if sink else 0,
                "last_error": sink.last_error if sink else None,
                "rows_lost": sink.lost_rows if sink else 0,
            },
            "maintenance": maintenance,
        }

    # -- stop ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _trimmed(self, freed_bytes: int) -> None:
        self.metrics.memory_trims.inc()
        self.metrics.memory_trimmed.inc(freed_bytes)
        self.log.debug("returned freed memory to the system", freed_mib=round(freed_bytes / MIB, 1))

    async def shutdown(self) -> None:
        started = time.monotonic()
        self.draining = True
        self.notifier.stopping(self.status_line())
        self.log.info("shutting down: refusing new data, draining the queue", queued_rows=self.queue.rows)
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        if self.pipeline is not None:
            self.pipeline.close()
        if self.http is not None:
            await self.http.stop()
        if self.grpc is not None:
            await self.grpc.stop(grace_s=2.0)
        if self.query is not None:
            await self.query.stop()
        if self._keys_task is not None:
            self._keys_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keys_task
        if self._bootstrap_task is not None:
            self._bootstrap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bootstrap_task
        if self.maintenance is not None:
            await self.maintenance.shutdown()
        if self.pipeline is not None:
            await self.pipeline.stop(self.config.pipeline.shutdown_timeout_s)
        await asyncio.to_thread(self.decode_pool.shutdown)  # front ends and spool replay are done with it
        if self._admin_conn is not None:
            with contextlib.suppress(Exception):
                await self._admin_conn.close(timeout=2)
        if self.admin is not None:
            await self.admin.stop()
        await self.loop_lag.stop()
        await self.trimmer.stop()
        if self.embedded is not None and self.embedded.started_here:
            try:
                await asyncio.to_thread(self.embedded.stop)
            except EmbeddedDatabaseError as exc:
                self.log.error("embedded database did not stop cleanly", error=str(exc))
        lost = self.pipeline.sink.lost_rows if self.pipeline else 0
        await self.heartbeat.stop()
        self.notifier.notify(STATUS=f"stopped: {lost} rows lost")
        self.notifier.close()
        self.log.info("stopped", seconds=round(time.monotonic() - started, 2), rows_lost=lost)
