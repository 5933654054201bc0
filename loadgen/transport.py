"""OTLP exporters: one serialized request in, one classified result out.

An exporter is one connection, as one application's OTLP exporter would hold: a gRPC channel (HTTP/2,
requests multiplexed) or an aiohttp session (HTTP/1.1, one connection per request in flight). Bodies
arrive serialized; nothing here parses or builds telemetry except the small response message.

Results carry what the retry policy and the report need: the status as a label an operator knows
("OK", "UNAVAILABLE", "HTTP 503", "CONNECTION_ERROR", "TIMEOUT"), the numeric code, the server's
retry delay (gRPC RetryInfo / HTTP Retry-After) and partial_success rejections.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from dataclasses import dataclass

import aiohttp
import grpc
import orjson
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PROTOCOLS = ("grpc", "http")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_PORTS = {"grpc": 4317, "http": 4318}


@dataclass(frozen=True, slots=True)
class SignalWire:
    """Where one signal goes on the wire and how its response reports rejected items."""

    name: str
    item_noun: str
    grpc_method: str
    http_path: str
    response_type: type[Message]
    rejected_field: str  # in partial_success (protobuf field name)
    rejected_json: str  # the same, OTLP/JSON (lowerCamelCase)


SIGNALS: dict[str, SignalWire] = {
    "traces": SignalWire(
        "traces",
        "spans",
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "/v1/traces",
        trace_service_pb2.ExportTraceServiceResponse,
        "rejected_spans",
        "rejectedSpans",
    ),
    "metrics": SignalWire(
        "metrics",
        "data points",
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        "/v1/metrics",
        metrics_service_pb2.ExportMetricsServiceResponse,
        "rejected_data_points",
        "rejectedDataPoints",
    ),
    "logs": SignalWire(
        "logs",
        "log records",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        "/v1/logs",
        logs_service_pb2.ExportLogsServiceResponse,
        "rejected_log_records",
        "rejectedLogRecords",
    ),
}


@dataclass(frozen=True, slots=True)
class ExportResult:
    ok: bool  # the receiver answered success (full or partial)
    status: str  # "OK", a gRPC code name, "HTTP 503", "CONNECTION_ERROR", "TIMEOUT"
    code: int | str | None = None  # grpc.StatusCode name or HTTP status, for the retry rules
    rejected: int = 0  # partial_success rejected items (never retried: OTLP says so)
    retry_after: float | None = None  # seconds the server asked us to wait, if it said
    message: str = ""
    has_retry_info: bool = False


def split_target(target: str, protocol: str) -> tuple[str, int]:
    """'host:port', 'http://host:port/', 'host' -> (host, port)."""
    text = target.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise ValueError(f"--target {target!r}: expected HOST:PORT")
    if not port_text:
        return host, DEFAULT_PORTS[protocol]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--target {target!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"--target {target!r}: port {port} is out of range")
    return host, port


def _partial(response: Message, rejected_field: str) -> tuple[int, str]:
    if not response.HasField("partial_success"):
        return 0, ""
    partial = response.partial_success  # type: ignore[attr-defined]
    return int(getattr(partial, rejected_field)), partial.error_message


def _retry_info(metadata: object) -> float | None:
    """The retry delay of a gRPC error's google.rpc.Status details, if any."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def _retry_after_header(value: str | None) -> float | None:
    """HTTP Retry-After: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class GrpcExporter:
    """OTLP/gRPC over its own channel (its own TCP connection: no subchannel sharing)."""

    def __init__(self, host: str, port: int, gzip: bool, timeout_s: float) -> None:
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.enable_retries", 0),  # retries are ours, counted and reported
            ],
        )
        # No serializers: bodies are already bytes, responses are parsed only when they matter.
        self._calls = {name: self._channel.unary_unary(wire.grpc_method) for name, wire in SIGNALS.items()}
        self._compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        self._timeout = timeout_s

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Open the connection before the clock starts (the TCP and HTTP/2 handshakes are not load)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    async def export(self, signal: str, body: bytes) -> ExportResult:
        try:
            raw = await self._calls[signal](body, timeout=self._timeout, compression=self._compression)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            delay = _retry_info(exc.trailing_metadata())
            return ExportResult(
                False,
                code.name,
                code.name,
                retry_after=delay,
                message=exc.details() or "",
                has_retry_info=delay is not None,
            )
        if not raw:
            return ExportResult(True, "OK", "OK")
        wire = SIGNALS[signal]
        try:
            rejected, message = _partial(wire.response_type.FromString(raw), wire.rejected_field)
        except DecodeError:
            return ExportResult(True, "OK", "OK", message="unparseable response")
        return ExportResult(True, "OK", "OK", rejected=rejected, message=message)

    async def close(self) -> None:
        await self._channel.close()


class HttpExporter:
    """OTLP/HTTP (protobuf or JSON, optionally gzip) through its own aiohttp session."""

    def __init__(self, host: str, port: int, encoding: str, gzip: bool, timeout_s: float, connections: int) -> None:
        host_part = f"[{host}]" if ":" in host else host
        self.target = f"{host_part}:{port}"
        self._base = f"http://{host_part}:{port}"
        self._json = encoding == "json"
        self._headers = {"Content-Type": "application/json" if self._json else "application/x-protobuf"}
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, force_close=False, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=True)
        return self._session

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Create the session before the clock starts (connections open with the first requests)."""
        self._open()

    async def export(self, signal: str, body: bytes) -> ExportResult:
        wire = SIGNALS[signal]
        session = self._open()
        try:
            async with session.post(self._base + wire.http_path, data=body, headers=self._headers) as response:
                payload = await response.read()
                status = response.status
                retry_after = _retry_after_header(response.headers.get("Retry-After"))
                content_type = response.headers.get("Content-Type", "")
        except TimeoutError:
            return ExportResult(False, "TIMEOUT", "TIMEOUT", message="no response within the export timeout")
        except aiohttp.ClientConnectionError as exc:
            return ExportResult(False, "CONNECTION_ERROR", "CONNECTION_ERROR", message=str(exc) or type(exc).__name__)
        except aiohttp.ClientError as exc:
            return ExportResult(False, "CLIENT_ERROR", "CLIENT_ERROR", message=str(exc) or type(exc).__name__)
        if status != 200:
            return ExportResult(
                False,
                f"HTTP {status}",
                status,
                retry_after=retry_after,
                message=_error_message(payload, content_type),
                has_retry_info=retry_after is not None,
            )
        rejected, message = 0, ""
        if payload:
            if "json" in content_type:
                try:
                    partial = orjson.loads(payload).get("partialSuccess") or {}
                    rejected, message = int(partial.get(wire.rejected_json) or 0), partial.get("errorMessage", "")
                except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
                    message = "unparseable response"
            else:
                try:
                    rejected, message = _partial(wire.response_type.FromString(payload), wire.rejected_field)
                except DecodeError:
                    message = "unparseable response"
        return ExportResult(True, "OK", 200, rejected=rejected, message=message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_message(payload: bytes, content_type: str) -> str:
    """The google.rpc.Status message of an OTLP/HTTP error body, or the start of the body."""
    if not payload:
        return ""
    if "json" in content_type:
        try:
            return str(orjson.loads(payload).get("message", ""))[:300]
        except (orjson.JSONDecodeError, AttributeError):
            pass
    elif "protobuf" in content_type:
        try:
            return status_pb2.Status.FromString(payload).message[:300]
        except DecodeError:
            pass
    return payload[:200].decode("utf-8", "replace")


Exporter = GrpcExporter | HttpExporter


def make_exporter(
    protocol: str, host: str, port: int, encoding: str, gzip: bool, timeout_s: float, connections: int
) -> Exporter:
    if protocol == "grpc":
        return GrpcExporter(host, port, gzip, timeout_s)
    return HttpExporter(host, port, encoding, gzip, timeout_s, connections)


async def probe(protocol: str, host: str, port: int, encoding: str, timeout_s: float = 5.0) -> str | None:
    """Send one empty trace export. None when an OTLP receiver answered (even 'busy'), else why not."""
    exporter = make_exporter(protocol, host, port, encoding, False, timeout_s, 1)
    empty = b"{}" if protocol == "http" and encoding == "json" else b""
    try:
        result = await asyncio.wait_for(exporter.export("traces", empty), timeout_s + 1)
    except TimeoutError:
        result = ExportResult(False, "TIMEOUT", "TIMEOUT", message=f"no answer within {timeout_s:g} s")
    finally:
        await exporter.close()
    if result.ok or result.has_retry_info:
        return None
    name = "OTLP/gRPC" if protocol == "grpc" else "OTLP/HTTP"
    other = "http" if protocol == "grpc" else "grpc"
    detail = result.message.splitlines()[0] if result.message else result.status
    if "Connection refused" in detail or "connect" in detail.lower() or result.status in ("UNAVAILABLE", "TIMEOUT"):
        detail = _short(detail)
    if result.status in ("UNIMPLEMENTED", "HTTP 404", "HTTP 405"):
        return (
            f"{exporter.target} answered but serves no {name} trace export ({result.status}); is it the receiver's "
            f"{name} port? Pass --target HOST:PORT (gRPC listens on 4317, HTTP on 4318) or --protocol {other}"
        )
    return (
        f"cannot reach an {name} receiver at {exporter.target}: {result.status}: {detail}. "
        f"Start one (`make run`) or pass --target HOST:PORT (gRPC listens on 4317, HTTP on 4318; "
        f"--protocol {other} for the other one)"
    )


def _short(detail: str) -> str:
    if "Connection refused" in detail or "Connect call failed" in detail:
        return "connection refused"
    for marker in ("Socket closed", "Connection reset", "Name or service not known", "Temporary failure in name"):
        if marker in detail:
            return marker
    return detail[:160]
