"""Configuration: TOML file, then `OBSERVATORY__SECTION__KEY` environment overrides, then the
operations manual's variables (`DATABASE_URL`, `DB_HOST`, …, `LOG_LEVEL`).

Every key is declared once below with its type, default, bounds and one line of documentation;
`config/receiver.toml` documents the same keys for operators and a test keeps the two in step.
Problems are collected, not raised one at a time, so `config check` names every bad key at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

ENV_PREFIX = "OBSERVATORY__"


def _setting(
    default: Any,
    doc: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    endpoint: bool = False,
    optional_endpoint: bool = False,
    auto: bool = False,
    path: bool = False,
) -> Any:
    return field(
        default=default,
        metadata={
            "doc": doc,
            "min": min,
            "max": max,
            "choices": choices,
            "endpoint": endpoint or optional_endpoint,
            "optional": optional_endpoint,
            "auto": auto,
            "path": path,
        },
    )


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str = _setting("", "PEM certificate chain of both OTLP front ends; empty = plain text", path=True)
    key_file: str = _setting("", "PEM private key of cert_file", path=True)
    client_ca_file: str = _setting("", "PEM CA bundle; set = clients must present a certificate it signed", path=True)


@dataclass(frozen=True)
class OtlpConfig:
    grpc_endpoint: str = _setting("localhost:4317", "OTLP/gRPC listen address", endpoint=True)
    http_endpoint: str = _setting("localhost:4318", "OTLP/HTTP listen address", endpoint=True)
    max_request_bytes: int = _setting(
        64 * 1024 * 1024,
        "largest request body accepted, after decompression (413 / RESOURCE_EXHAUSTED)",
        min=1024,
        max=1024 * 1024 * 1024,
    )
    workers: int | str = _setting(
        1,
        "processes sharing the OTLP ports (SO_REUSEPORT); auto = one per CPU core; `run --workers N` overrides",
        min=1,
        max=256,
        auto=True,
    )
    grpc_engine: str = _setting(
        "auto",
        "what serves OTLP/gRPC: nghttp2 (the C front end, ~3x less CPU per call; cleartext only), grpcio, or "
        "auto = nghttp2 when it is built and otlp.tls is off, else grpcio",
        choices=("auto", "nghttp2", "grpcio"),
    )
    http_engine: str = _setting(
        "auto",
        "what serves OTLP/HTTP: httptools (the receiver's lean HTTP/1.1 protocol on llhttp, ~half the CPU per "
        "request), aiohttp, or auto = httptools when it is installed",
        choices=("auto", "httptools", "aiohttp"),
    )
    decode_threads: int = _setting(
        2, "threads (per worker process) that decode and convert request bodies, off the event loop", min=1, max=256
    )
    tls: TlsConfig = field(default_factory=TlsConfig)


def worker_count(value: int | str) -> int:
    """otlp.workers as a number: `auto` is the number of CPU cores this process may run on."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return int(value)


@dataclass(frozen=True)
class AdminConfig:
    endpoint: str = _setting("127.0.0.1:9090", "listen address of /metrics and /health", endpoint=True)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = _setting("", "PostgreSQL URL; empty = start the embedded cluster under embedded_dir")
    embedded_dir: str = _setting("var/pgdata", "data directory of the embedded PostgreSQL cluster")
    auto_migrate: bool = _setting(True, "apply pending migrations when `run` starts")
    flavor: str = _setting("auto", "schema flavor at migrate time", choices=("auto", "native", "timescale"))
    max_connections: int = _setting(8, "connections the receiver may open (writers + 1 for admin)", min=2, max=1000)
    connect_timeout_s: float = _setting(10.0, "timeout of one connection attempt", min=0.1, max=600)
    retry_initial_ms: int = _setting(100, "first backoff after a failed write", min=1, max=60_000)
    retry_max_ms: int = _setting(5000, "longest backoff between write attempts", min=1, max=600_000)
    copy_encoder: str = _setting(
        "native",
        "who encodes COPY rows: native (the C encoder; asyncpg for what it does not take) or asyncpg",
        choices=("native", "asyncpg"),
    )


@dataclass(frozen=True)
class MaintenanceConfig:
    enabled: bool = _setting(True, "run the maintenance task (native: partitions, rollups, retention)")
    database_url: str = _setting(
        "", "PostgreSQL URL of the maintenance connection (native: the tables' owner); empty = database.url"
    )
    interval_s: float = _setting(30.0, "seconds between maintenance passes", min=1, max=3600)
    partition_days_ahead: int = _setting(3, "native: days covered by partitions ahead of today", min=1, max=60)
    partition_hours: int = _setting(
        6,
        "hours of data per partition (native) / chunk (timescale) of the signal tables; size it by ingest rate",
        choices=(1, 2, 3, 4, 6, 8, 12, 24),
    )
    traces_retention_days: int = _setting(
        90, "native: days of llm_traces kept; older spans are rejected at the door", min=1, max=36500
    )
    metrics_retention_days: int = _setting(
        37, "native: days of llm_metrics kept; older points are rejected at the door", min=1, max=36500
    )
    logs_retention_days: int = _setting(
        37, "native: days of llm_logs kept; older records are rejected at the door", min=1, max=36500
    )
    rollup_1min_retention_days: int = _setting(37, "native: days of llm_metrics_1min kept", min=1, max=36500)
    rollup_1hour_retention_days: int = _setting(210, "native: days of llm_metrics_1hour kept", min=1, max=36500)
    rollup_1day_retention_days: int = _setting(1095, "native: days of llm_metrics_1day kept", min=1, max=36500)
    cost_hourly_retention_days: int = _setting(
        210, "native: days of cost_analysis_hourly and usage_environment_hourly kept", min=1, max=36500
    )
    max_default_days_per_pass: int = _setting(
        7, "native: days of rows moved out of a DEFAULT partition per pass", min=1, max=366
    )
    lock_timeout_ms: int = _setting(
        2000, "native: longest wait for a lock before a step is retried", min=10, max=600_000
    )
    rollup_delay_s: float = _setting(
        2.0, "native: spans are rolled up once this many seconds old (commit visibility margin)", min=0, max=3600
    )


@dataclass(frozen=True)
class PipelineConfig:
    durability: str = _setting(
        "memory", "acknowledge once queued (memory) or once fsynced to the spool (spool)", choices=("memory", "spool")
    )
    queue_max_rows: int = _setting(
        100_000, "rows held in memory at most (queued + being written)", min=1, max=100_000_000
    )
    queue_max_bytes: int = _setting(
        128 * 1024 * 1024, "estimated bytes held in memory at most", min=1024 * 1024, max=64 * 1024 * 1024 * 1024
    )
    max_share: float = _setting(
        0.7, "largest share of the queue and of the writers one signal may hold", min=0.1, max=1.0
    )
    batch_max_rows: int = _setting(5000, "rows per COPY transaction at most", min=1, max=1_000_000)
    flush_interval_ms: int = _setting(200, "longest wait before a partial batch is written", min=1, max=60_000)
    writers: int = _setting(4, "COPY writer connections", min=1, max=256)
    shutdown_timeout_s: float = _setting(30.0, "time allowed to drain on SIGTERM", min=0, max=3600)
    retry_after_s: float = _setting(1.0, "delay clients are asked to wait when the queue is full", min=0, max=300)
    row_overhead_bytes: int = _setting(
        1024, "memory charged per row beyond its share of the request body", min=0, max=1024 * 1024
    )


@dataclass(frozen=True)
class SpoolConfig:
    dir: str = _setting("var/spool", "directory of the write-ahead spool (durability = spool)")
    max_bytes: int = _setting(
        1024 * 1024 * 1024, "spool size at most; beyond it requests are refused", min=1024 * 1024, max=1 << 50
    )
    segment_bytes: int = _setting(
        64 * 1024 * 1024,
        "spool segment file size; a segment is deleted once all its rows are stored",
        min=64 * 1024,
        max=1 << 34,
    )
    min_free_bytes: int = _setting(
        128 * 1024 * 1024,
        "free space the spool leaves on its file system; below it requests are refused (retryable); 0 = off",
        min=0,
        max=1 << 50,
    )


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = _setting(5, "consecutive failed writes that open the circuit breaker", min=1, max=1000)
    failure_rate: float = _setting(0.5, "failure share over the last `window` writes that opens it", min=0.01, max=1.0)
    window: int = _setting(20, "writes the failure rate is measured over", min=1, max=10_000)
    cooldown_s: float = _setting(2.0, "time the breaker stays open before one probe write", min=0.01, max=600)
    max_cooldown_s: float = _setting(30.0, "cool-down doubles after each failed probe, up to this", min=0.01, max=3600)


@dataclass(frozen=True)
class DeadLetterConfig:
    dir: str = _setting("var/dead-letter", "file fallback for refused rows when the database cannot take them")
    max_file_bytes: int = _setting(256 * 1024 * 1024, "size cap of the dead-letter file", min=1024, max=1 << 50)


@dataclass(frozen=True)
class LimitsConfig:
    memory_limit_mib: int = _setting(
        1024, "refuse new data (retryable) while the process RSS is above this; 0 = off", min=0, max=1 << 20
    )
    max_attribute_value_bytes: int = _setting(
        128 * 1024, "longer string/bytes attribute values are truncated (with a marker)", min=64, max=64 * 1024 * 1024
    )
    max_items_per_request: int = _setting(
        100_000, "spans + data points + log records per request; more: 413 / RESOURCE_EXHAUSTED", min=1, max=1 << 40
    )
    max_containers_per_request: int = _setting(
        200_000,
        "resource/scope entries, events, links, metrics, exemplars per request; more: 413 / RESOURCE_EXHAUSTED",
        min=1,
        max=1 << 40,
    )
    max_request_memory_mib: int = _setting(
        256, "memory one request may take while decoded (estimated, then charged); more: 413", min=1, max=1 << 20
    )
    max_decode_amplification: int = _setting(
        128,
        "decode memory a request may take per byte of its body, beyond 16 MiB; more: 413",
        min=1,
        max=1 << 20,
    )
    max_future_skew_s: int = _setting(
        600,
        "items dated further ahead of the receive time than this are rejected (partial success)",
        min=1,
        max=366 * 86400,
    )


@dataclass(frozen=True)
class ConvertConfig:
    native: bool = _setting(
        True, "convert OTLP/protobuf spans, log records and metric points with the C extension if built; false = Python"
    )
    native_rules: bool = _setting(
        True, "on the native trace path, the GenAI rules in C (genai.py's tables); false = genai.py for every span"
    )


@dataclass(frozen=True)
class AuthConfig:
    mode: str = _setting("none", "none, or api_key (Authorization: Bearer / x-api-key)", choices=("none", "api_key"))
    refresh_interval_s: float = _setting(
        10.0, "how often active API keys are re-read (a revoked key stops working within this)", min=0.5, max=3600
    )
    rate_burst_s: float = _setting(
        2.0,
        "a key with a rate may send this many seconds' worth of items at once (token bucket size)",
        min=0.1,
        max=3600,
    )


@dataclass(frozen=True)
class QueryConfig:
    endpoint: str = _setting(
        "127.0.0.1:8080", "listen address of the read API (/api/v1/...); empty = off", optional_endpoint=True
    )
    max_connections: int = _setting(
        2, "database connections of the read API (counted in database.max_connections)", min=1, max=100
    )
    statement_timeout_ms: int = _setting(
        5000, "longest a read API query may run; beyond it the answer is 503 + Retry-After", min=10, max=600_000
    )
    retry_after_s: float = _setting(
        2.0, "Retry-After of the read API's 503s (query timeout, busy, database down)", min=0, max=3600
    )
    max_response_bytes: int = _setting(
        16 * 1024 * 1024,
        "largest read API answer; a trace beyond it is cut short (truncated: true)",
        min=64 * 1024,
        max=1 << 31,
    )
    max_trace_spans: int = _setting(
        10_000, "spans of one trace returned at most (truncated: true)", min=1, max=1_000_000
    )
    max_usage_rows: int = _setting(10_000, "rows of one usage answer at most (truncated: true)", min=1, max=1_000_000)
    cursor_secret: str = _setting(
        "", "key that signs page cursors; empty = random per process (set one when several receivers serve reads)"
    )


@dataclass(frozen=True)
class PricingConfig:
    source: str = _setting(
        "genai-prices",
        "maintained prices behind the local ones: genai-prices (the installed package), or file (local only)",
        choices=("genai-prices", "file"),
    )
    file: str = _setting("", "local prices (TOML) that override or add to the source; empty = config/pricing.toml")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _setting("info", "log level", choices=("debug", "info", "warning", "error"))
    format: str = _setting("json", "json lines, or console for humans", choices=("json", "console"))


@dataclass(frozen=True)
class Config:
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def effective(self) -> dict[str, dict[str, Any]]:
        """Values by dotted section name ("otlp", "otlp.tls", ...), settings only."""
        out: dict[str, dict[str, Any]] = {}
        for name in sections():
            section: Any = self
            for part in name.split("."):
                section = getattr(section, part)
            out[name] = {f.name: getattr(section, f.name) for f in _settings(type(section))}
        return out


class ConfigError(Exception):
    """One or more invalid settings; `problems` has one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _is_section(f: dataclasses.Field[Any]) -> bool:
    factory = f.default_factory
    return factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory)


def _settings(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a section that are settings (not nested sections such as otlp.tls)."""
    return [f for f in fields(cls) if not _is_section(f)]


def sections() -> dict[str, type]:
    """Section classes by dotted name, parents before their nested sections ([otlp], [otlp.tls])."""
    out: dict[str, type] = {}

    def walk(prefix: str, cls: type) -> None:
        for f in fields(cls):
            if _is_section(f):
                name = f"{prefix}.{f.name}" if prefix else f.name
                out[name] = f.default_factory  # type: ignore[assignment]
                walk(name, f.default_factory)  # type: ignore[arg-type]

    walk("", Config)
    return out


def _coerce(key: str, raw: Any, kind: type, meta: Mapping[str, Any], from_env: bool) -> tuple[Any, str | None]:
    value = raw
    if meta.get("auto"):  # an integer, or the word auto
        if isinstance(raw, str) and raw.strip().lower() == "auto":
            return "auto", None
        if isinstance(raw, str) and not (from_env and raw.strip().isdigit()):
            return None, f'{key}: expected an integer or "auto", got {raw!r}'
        kind = int
    if kind is bool:
        if from_env and isinstance(raw, str):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                value = True
            elif lowered in ("0", "false", "no", "off"):
                value = False
        if not isinstance(value, bool):
            return None, f"{key}: expected true or false, got {raw!r}"
    elif kind is int:
        if from_env and isinstance(raw, str):
            try:
                value = int(raw.strip().replace("_", ""))
            except ValueError:
                return None, f"{key}: expected an integer, got {raw!r}"
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{key}: expected an integer, got {raw!r}"
    elif kind is float:
        if from_env and isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                return None, f"{key}: expected a number, got {raw!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{key}: expected a number, got {raw!r}"
        value = float(value)
    elif kind is str and not isinstance(value, str):
        return None, f"{key}: expected a string, got {raw!r}"
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and value < lo:
        return None, f"{key}: {value!r} is below the minimum {lo}"
    if hi is not None and value > hi:
        return None, f"{key}: {value!r} is above the maximum {hi}"
    if choices and value not in choices:
        return None, f"{key}: {value!r} is not one of {', '.join(map(str, choices))}"
    if meta.get("endpoint") and not (meta.get("optional") and value == ""):
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            return None, f"{key}: {value!r} is not host:port (e.g. 0.0.0.0:4317)"
    return value, None


def _kind(cls: type, name: str) -> type:
    annotation = {f.name: f.type for f in fields(cls)}[name]
    return {"str": str, "int": int, "float": float, "bool": bool, "int | str": int}[str(annotation)]


def _legacy_env(env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """The operations manual's variable names, mapped onto keys."""
    out: dict[tuple[str, str], str] = {}
    if env.get("DATABASE_URL"):
        out[("database", "url")] = env["DATABASE_URL"]
    elif env.get("DB_HOST"):
        user = quote(env.get("DB_USER", "postgres"), safe="")
        password = env.get("DB_PASSWORD")
        auth = f"{user}:{quote(password, safe='')}" if password else user
        port = env.get("DB_PORT", "5432")
        name = env.get("DB_NAME", "llm_observatory")
        out[("database", "url")] = f"postgresql://{auth}@{env['DB_HOST']}:{port}/{name}"
    if env.get("DB_POOL_MAX_CONNECTIONS"):
        out[("database", "max_connections")] = env["DB_POOL_MAX_CONNECTIONS"]
    if env.get("LOG_LEVEL"):
        out[("logging", "level")] = env["LOG_LEVEL"].lower()
    return out


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the effective configuration, or raise ConfigError naming every bad key."""
    env = os.environ if env is None else env
    problems: list[str] = []
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"config file {path} does not exist"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from None

    known = sections()
    values: dict[str, dict[str, Any]] = {name: {} for name in known}

    def read_table(section: str, body: Any) -> None:
        if not isinstance(body, dict):
            problems.append(f"{section}: expected a table [{section}]")
            return
        names = [f.name for f in _settings(known[section])]
        for key, raw in body.items():
            if f"{section}.{key}" in known:
                read_table(f"{section}.{key}", raw)
                continue
            if key not in names:
                hint = difflib.get_close_matches(key, names, 1)
                problems.append(
                    f"{section}.{key}: unknown key" + (f" (did you mean {section}.{hint[0]}?)" if hint else "")
                )
                continue
            values[section][key] = (raw, False)

    for section, body in document.items():
        if section not in known:
            hint = difflib.get_close_matches(section, [k for k in known if "." not in k], 1)
            problems.append(f"[{section}]: unknown section" + (f" (did you mean [{hint[0]}]?)" if hint else ""))
            continue
        read_table(section, body)

    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        section, key = ".".join(parts[:-1]), parts[-1]
        if section not in known or key not in [f.name for f in _settings(known[section])]:
            problems.append(f"{name}: does not name a setting (expected {ENV_PREFIX}<SECTION>__<KEY>)")
            continue
        values[section][key] = (raw, True)
    for (section, key), raw in _legacy_env(env).items():
        values[section][key] = (raw, True)

    built: dict[str, Any] = {}
    for section in reversed(list(known)):  # nested sections first: their parent takes them
        cls = known[section]
        kwargs: dict[str, Any] = {}
        meta_by_name = {f.name: f.metadata for f in _settings(cls)}
        for key, (raw, from_env) in values[section].items():
            value, problem = _coerce(f"{section}.{key}", raw, _kind(cls, key), meta_by_name[key], from_env)
            if problem:
                problems.append(problem)
            else:
                kwargs[key] = value
        for child in [name for name in built if name.rpartition(".")[0] == section]:
            kwargs[child.rpartition(".")[2]] = built.pop(child)
        built[section] = cls(**kwargs)
    config = Config(**built)
    if config.database.retry_max_ms < config.database.retry_initial_ms:
        problems.append("database.retry_max_ms: must be at least database.retry_initial_ms")
    if config.breaker.max_cooldown_s < config.breaker.cooldown_s:
        problems.append("breaker.max_cooldown_s: must be at least breaker.cooldown_s")
    if config.spool.segment_bytes > config.spool.max_bytes:
        problems.append("spool.segment_bytes: must not exceed spool.max_bytes")
    extra = 2 if config.maintenance.enabled else 1
    reads = config.query.max_connections if config.query.endpoint else 0
    if config.pipeline.writers + extra + reads > config.database.max_connections:
        problems.append(
            f"pipeline.writers: {config.pipeline.writers} writers need database.max_connections >= "
            f"{config.pipeline.writers + extra + reads} (one more for health checks"
            + (", one for maintenance" if config.maintenance.enabled else "")
            + (f", query.max_connections = {reads} for the read API)" if reads else ")")
        )
    problems += _tls_problems(config.otlp.tls)
    if config.otlp.grpc_engine == "nghttp2" and config.otlp.tls.cert_file:
        problems.append(
            "otlp.grpc_engine: the nghttp2 engine serves cleartext only; with otlp.tls set use grpc_engine = "
            "grpcio (or auto, which picks it)"
        )
    if problems:
        raise ConfigError(problems)
    return config


def _tls_problems(tls: TlsConfig) -> list[str]:
    """Both halves of the server certificate or neither; mTLS needs TLS; every file readable."""
    problems = []
    if bool(tls.cert_file) != bool(tls.key_file):
        missing = "otlp.tls.key_file" if tls.cert_file else "otlp.tls.cert_file"
        present = "otlp.tls.cert_file" if tls.cert_file else "otlp.tls.key_file"
        problems.append(f"{missing}: must be set when {present} is (TLS needs a certificate and its private key)")
    if tls.client_ca_file and not tls.cert_file:
        problems.append("otlp.tls.client_ca_file: client certificates need TLS: set otlp.tls.cert_file and key_file")
    for key in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, key)
        if path and not os.access(path, os.R_OK):
            reason = "does not exist" if not os.path.exists(path) else "is not readable by this user"
            problems.append(f"otlp.tls.{key}: {path} {reason}")
    return problems


def documented_keys() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every setting, in declaration order."""
    out = []
    for section, cls in sections().items():
        for f in _settings(cls):
            out.append((section, f.name, f.default, f.metadata["doc"]))
    return out
