"""OTLP/gRPC front end on libnghttp2 (`_h2grpc.c`): the same service as `grpc_server.py`, at a third of
its CPU per request.

grpcio spends ~190 µs of CPU on every call even when the handler does nothing (its C core, the Cython
layer, the completion-queue thread hand-off): most of the cost of a 1-span export. Here an asyncio
protocol feeds each connection's bytes to an nghttp2 session, which does HTTP/2 (HPACK, flow control,
PING, SETTINGS, GOAWAY) and returns finished unary calls; the answer goes back through the same session.
Export calls take the same path as grpcio's (`Ingest.handle`, `status.grpc_error`); only the wire differs.

Scope (otlp.grpc_engine = auto picks grpcio where this does not fit): cleartext only (with otlp.tls
the grpcio engine serves), unary calls only — the three OTLP Export methods and grpc.health.v1.Health/
Check; Health/Watch (streaming) answers UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections import deque
from collections.abc import Iterable
from typing import Any

from grpc_health.v1 import health_pb2

from receiver.endpoints import StartupError, listen_tcp
from receiver.frontends import eager
from receiver.frontends.ingest import Ingest
from receiver.frontends.outcomes import Accepted, Refusal, Refused
from receiver.frontends.reading import ReadGatedProtocol
from receiver.frontends.signals import SignalSpec
from receiver.frontends.status import grpc_error, response_message
from receiver.telemetry.logging import RateLimitedLog, get_logger

try:
    from receiver.frontends import _h2grpc
except ImportError:  # the extension is optional: otlp.grpc_engine = auto then serves with grpcio
    _h2grpc = None  # type: ignore[assignment]

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
MAX_STREAMS = 100  # concurrent calls per connection (SETTINGS_MAX_CONCURRENT_STREAMS)
# Calls of one connection answered per event-loop callback; the rest on the loop's next turns, with the
# connection's reading paused meanwhile: one read can finish MAX_STREAMS calls, and answering them all at
# once would hold the loop (~100 µs each) for every other connection.
MAX_CALLS_PER_TURN = 32
WINDOW_BYTES = 4 * 1024 * 1024  # per-stream flow-control window (the connection's is 4x)
# Unfinished request bodies one connection may hold at once: two of the largest request, at least 16 MiB.
MIN_BUFFERED_BYTES = 16 * 1024 * 1024
# gRPC status codes this module answers itself (the rest come from status.grpc_error)
CODE_NOT_FOUND = 5
CODE_UNIMPLEMENTED = 12
CODE_INTERNAL = 13


def available() -> bool:
    return _h2grpc is not None


def percent_encode(text: str) -> str:
    """grpc-message is percent-encoded UTF-8: bytes outside printable ASCII, and '%' itself."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode())


def error_trailers(message: str, metadata: Iterable[tuple[str, bytes | str]] = ()) -> list[tuple[str, str]]:
    """grpc-message and the call's trailing metadata on the wire (binary "-bin" values in base64)."""
    trailers = [("grpc-message", percent_encode(message))]
    for name, value in metadata:
        if name.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            trailers.append((name, base64.b64encode(raw).decode().rstrip("=")))
        else:
            trailers.append((name, value.decode() if isinstance(value, bytes) else value))
    return trailers


class _Connection(ReadGatedProtocol):
    """One client connection: bytes in, finished calls out to tasks, answers back through the session.
    Reading pauses while calls are left for the next turn (MAX_CALLS_PER_TURN) and while the client does
    not read its answers."""

    def __init__(self, frontend: GrpcNativeFrontend) -> None:
        super().__init__()
        self._frontend = frontend
        self._session: Any = None
        self._transport: asyncio.Transport | None = None
        self.calls: set[asyncio.Task[None]] = set()
        self._finished: deque[tuple[Any, ...]] = deque()  # calls read whole, waiting to be dispatched
        # True while _dispatch_finished dispatches the calls read: their answers go out in its one flush
        # (one write for all of them) instead of one flush each.
        self._dispatching = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not a subclass)
        frontend = self._frontend
        self._session = _h2grpc.Session(
            frontend.max_request_bytes,
            max(MIN_BUFFERED_BYTES, 2 * frontend.max_request_bytes),
            MAX_STREAMS,
            WINDOW_BYTES,
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frontend.connections.add(self)
        if frontend.draining:
            self._session.shutdown_notice()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            finished = self._session.receive(data)
        except _h2grpc.ProtocolError as exc:  # nghttp2 has queued a GOAWAY naming the error
            self._frontend.log_protocol_error(str(exc), self._transport)
            self.flush()
            self.close()
            return
        self._finished.extend(finished)
        if not self._deferred:
            self._dispatch_finished()
        else:
            self.flush()

    def _dispatch_finished(self) -> None:
        """Dispatch the calls read so far, at most MAX_CALLS_PER_TURN (the rest on the loop's next turn),
        then send their answers in one flush."""
        self._deferred = False
        self._dispatching = True
        finished = self._finished
        try:
            for _ in range(min(len(finished), MAX_CALLS_PER_TURN)):
                call = finished.popleft()
                try:
                    self._dispatch(*call)
                except Exception as exc:  # a defect must cost one call, never the connection or the process
                    self._frontend.log_call_error(call[1])
                    self.answer_status(call[0], CODE_INTERNAL, f"internal error while handling the request: {exc}")
        finally:
            self._dispatching = False
        if finished and self._transport is not None:
            self._deferred = True
            asyncio.get_running_loop().call_soon(self._dispatch_finished)
        self._sync_reading()
        self.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too: a half-closed HTTP/2 connection cannot carry more calls

    def connection_lost(self, exc: Exception | None) -> None:
        self._frontend.connections.discard(self)
        for task in self.calls:  # their answers have nowhere to go; the work already admitted stays
            task.cancel()
        self._transport = None
        self._finished.clear()

    # -- calls --------------------------------------------------------------------------------------

    def _dispatch(
        self,
        stream_id: int,
        path: str | None,
        message: bytes | None,
        compressed: bool,
        headers: dict[str, str] | None,
        problem: tuple[str, str] | None,
    ) -> None:
        frontend = self._frontend
        spec = frontend.routes.get(path) if path else None
        if problem is not None:
            reason, text = problem
            if reason == "unimplemented" or spec is None:
                self.answer_status(stream_id, CODE_UNIMPLEMENTED, text)
                return
            refusal = Refusal(reason)
            refused = Refused(refusal, text, retry_after_s=1.0 if refusal is Refusal.OVERLOADED else None)
            frontend.ingest.count_refused_early(spec, "grpc", refused)
            self.answer_refused(stream_id, refused)
            return
        if spec is None:
            if path == HEALTH_CHECK:
                self._health_check(stream_id, message)
            else:
                self.answer_status(stream_id, CODE_UNIMPLEMENTED, f"method {path} is not served here")
            return
        gzip = False
        if compressed:
            encoding = (headers or {}).get("grpc-encoding", "identity")
            if encoding != "gzip":
                self.answer_status(
                    stream_id,
                    CODE_UNIMPLEMENTED,
                    f"grpc-encoding {encoding!r} is not supported; send gzip or uncompressed messages",
                )
                return
            gzip = True
        task = eager.start(self._export(spec, stream_id, message or b"", gzip, headers))
        if task is not None:  # it waits (spool, decode pool): cancelled if the connection goes
            self.calls.add(task)
            task.add_done_callback(self.calls.discard)

    async def _export(
        self, spec: SignalSpec, stream_id: int, message: bytes, gzip: bool, headers: dict[str, str] | None
    ) -> None:
        ingest = self._frontend.ingest
        key = None
        if ingest.authenticating:
            key = ingest.authenticate(spec, headers or {}, "grpc")
        if isinstance(key, Refused):
            outcome: Accepted | Refused = key
        else:
            outcome = await ingest.handle(spec, message, json=False, gzip=gzip, transport="grpc", key=key)
        if isinstance(outcome, Accepted):
            if not outcome.rejected and not outcome.message:
                answer = self._frontend.success[spec.name]
            else:
                answer = response_message(spec.response_type, spec.rejected_field, outcome).SerializeToString()
            self.answer(stream_id, answer)
        else:
            self.answer_refused(stream_id, outcome)

    def _health_check(self, stream_id: int, message: bytes | None) -> None:
        try:
            service = health_pb2.HealthCheckRequest.FromString(message or b"").service
        except Exception:  # any undecodable request is the client's error
            self.answer_status(stream_id, 3, "HealthCheckRequest does not decode")
            return
        status = self._frontend.health.get(service)
        if status is None:
            self.answer_status(stream_id, CODE_NOT_FOUND, f"unknown service {service!r}")
            return
        self.answer(stream_id, health_pb2.HealthCheckResponse(status=status).SerializeToString())

    # -- answers ------------------------------------------------------------------------------------

    def answer(self, stream_id: int, message: bytes) -> None:
        if self._transport is not None:
            self._session.respond(stream_id, message, 0, ())
            if not self._dispatching:
                self.flush()

    def answer_status(self, stream_id: int, code: int, text: str, metadata: Iterable[tuple[str, Any]] = ()) -> None:
        if self._transport is not None:
            self._session.respond(stream_id, None, code, error_trailers(text, metadata))
            if not self._dispatching:
                self.flush()

    def answer_refused(self, stream_id: int, refused: Refused) -> None:
        error = grpc_error(refused)
        self.answer_status(stream_id, error.code.value[0], error.message, error.trailing_metadata)

    def flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            out = self._session.output()
        except _h2grpc.ProtocolError as exc:
            self._frontend.log_protocol_error(str(exc), transport)
            self.close()
            return
        if out:
            transport.write(out)
        if not self._session.want_io():
            self.close()

    def goaway(self) -> None:
        if self._transport is not None:
            self._session.goaway()
            self.flush()

    def shutdown_notice(self) -> None:
        if self._transport is not None:
            self._session.shutdown_notice()
            self.flush()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class GrpcNativeFrontend:
    """Listens on otlp.grpc_endpoint; start/stop as GrpcFrontend."""

    def __init__(
        self,
        endpoint: str,
        ingest: Ingest,
        signals: Iterable[SignalSpec],
        max_request_bytes: int,
        *,
        reuse_port: bool = False,
    ) -> None:
        if _h2grpc is None:
            raise StartupError(
                "otlp.grpc_engine = nghttp2 needs the C extension receiver.frontends._h2grpc, which is not "
                "built (it needs libnghttp2-dev at install: `apt-get install libnghttp2-dev`, then `make "
                "install`); or set otlp.grpc_engine = auto"
            )
        self.endpoint = endpoint
        self.ingest = ingest
        self.max_request_bytes = max_request_bytes
        self._reuse_port = reuse_port
        signals = tuple(signals)
        self.routes: dict[str, SignalSpec] = {spec.grpc_method: spec for spec in signals}
        # The answer to almost every request (nothing rejected), serialized once per signal.
        self.success = {
            spec.name: response_message(spec.response_type, spec.rejected_field, Accepted(0)).SerializeToString()
            for spec in signals
        }
        self._services = [""] + [spec.grpc_method.lstrip("/").rsplit("/", 1)[0] for spec in signals]
        self.health: dict[str, int] = {}
        self.connections: set[_Connection] = set()
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._log = RateLimitedLog(get_logger("receiver.grpc"), interval_s=10.0)
        self.port: int | None = None

    async def start(self) -> None:
        self._server, self.port = await listen_tcp(
            self.endpoint, lambda: _Connection(self), "OTLP/gRPC", "otlp.grpc_endpoint", reuse_port=self._reuse_port
        )
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self._services:
            self.health[service] = status

    def log_protocol_error(self, detail: str, transport: asyncio.BaseTransport | None) -> None:
        """A connection closed on an HTTP/2 protocol error: counted (observatory_refused_requests_total,
        signal "unknown", reason protocol_error) and logged, rate-limited."""
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.ingest.count_unreadable("grpc", None, "protocol_error", f"{detail} (peer {peer})")

    def log_call_error(self, path: str | None) -> None:
        self._log.error("grpc-call", "OTLP/gRPC call failed inside the receiver", path=path, exc_info=True)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls (GOAWAY), let the calls in progress answer for up to grace_s, then close."""
        if self._server is None:
            return
        await self.set_serving(False)
        self.draining = True
        self._server.close()
        for connection in list(self.connections):
            connection.shutdown_notice()
        calls = [task for connection in self.connections for task in connection.calls]
        if calls:
            await asyncio.wait(calls, timeout=grace_s)
        for connection in list(self.connections):
            connection.goaway()
            connection.close()
        await self._server.wait_closed()
        self._server = None
