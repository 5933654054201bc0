"""OTLP/HTTP front end on httptools (llhttp, the parser of Node.js): the same service as `http_server.py`
at about half its CPU per request.

aiohttp's request and response objects, router and stream writer cost ~60-90 µs per request before the
receiver does anything, most of a 1-span export. Here an asyncio protocol feeds each connection's bytes
to llhttp and answers from pre-built bytes: POST /v1/traces, /v1/metrics, /v1/logs, protobuf or JSON,
optionally gzip, keep-alive, pipelining (answered in order), chunked bodies, `Expect: 100-continue`.
Export requests take the same path as aiohttp's (`Ingest.handle`, `status.py`); only the wire differs.

Bounds: request line + headers at most MAX_HEADER_BYTES (431), the body at most otlp.max_request_bytes
(413, checked on Content-Length before the body is read, and again as it arrives), one request handled
at a time per connection (reading pauses while a request waits), a request must arrive whole within
REQUEST_TIMEOUT_S and an idle keep-alive connection is closed after IDLE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from receiver.endpoints import StartupError, listen_tcp
from receiver.frontends import eager
from receiver.frontends.http_media import JSON, PROTOBUF, negotiate, too_large_message
from receiver.frontends.ingest import Ingest
from receiver.frontends.outcomes import Accepted, Refusal, Refused
from receiver.frontends.reading import ReadGatedProtocol
from receiver.frontends.signals import SignalSpec
from receiver.frontends.status import HttpReply, http_error, http_success, response_message
from receiver.frontends.tls import TlsCredentials

try:
    import httptools
except ImportError:  # a dependency; absent only in odd installs: otlp.http_engine = auto then uses aiohttp
    httptools = None  # type: ignore[assignment]

MAX_HEADER_BYTES = 16 * 1024  # request line + headers (aiohttp: 8 KiB per line, 32 KiB in all)
IDLE_TIMEOUT_S = 75.0  # a keep-alive connection with no request in progress (aiohttp's default)
REQUEST_TIMEOUT_S = 60.0  # from a request's first byte to its last
SWEEP_INTERVAL_S = 5.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Pipelined requests answered in one callback; the rest wait for the loop's next turn (~3 ms of 1-span
# requests: a burst on one connection must not hold the event loop for the others).
MAX_REQUESTS_PER_TURN = 32
# The headers read here (the rest are kept raw, turned into a dict only when an API key is checked).
_WANTED = frozenset({b"content-type", b"content-encoding", b"content-length", b"expect"})
# Metric reasons of requests answered before they were read whole, by status.
_UNREADABLE = {400: "malformed", 408: "timeout", 413: "too_large", 431: "too_large"}


def available() -> bool:
    return httptools is not None


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self.value = formatdate(second, usegmt=True).encode()
        return self.value


_DATE = _Date()


def response_bytes(status: int, body: bytes, content_type: str, headers: dict[str, str], close: bool) -> bytes:
    """One HTTP/1.1 response, head and body."""
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n").encode("latin-1") + b"Date: " + _DATE.now() + b"\r\n\r\n" + body


class _Request:
    __slots__ = ("body", "body_bytes", "close", "head_bytes", "method", "path", "raw_headers", "wanted")

    def __init__(self) -> None:
        self.path = b""
        self.method = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []  # as received; a dict only when a key is checked
        self.wanted: dict[bytes, bytes] = {}  # the headers this module reads itself (_WANTED), lower-case names
        self.body: list[bytes] = []
        self.head_bytes = 0  # request line, headers (and chunked trailers)
        self.body_bytes = 0
        self.close = False  # answer, then close the connection

    def header(self, name: bytes) -> str | None:
        value = self.wanted.get(name)
        return None if value is None else value.decode("latin-1")

    def headers(self) -> dict[str, str]:
        """Every header, names in lower case, a repeated header's values joined by ", "."""
        out: dict[str, str] = {}
        for name, value in self.raw_headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            previous = out.get(key)
            out[key] = text if previous is None else f"{previous}, {text}"
        return out


class _Connection(ReadGatedProtocol):
    """One client connection: llhttp's callbacks build requests, handled one at a time, answered in order.
    Reading pauses while one waits to be handled, while some are left for the next turn
    (MAX_REQUESTS_PER_TURN), and while the client does not read its answers."""

    def __init__(self, frontend: HttpLeanFrontend) -> None:
        super().__init__()
        self._frontend = frontend
        self._transport: asyncio.Transport | None = None
        self._parser: Any = httptools.HttpRequestParser(self)
        self._request: _Request | None = None  # being read
        self._ready: deque[_Request] = deque()  # read, waiting their turn (pipelining)
        self.busy: asyncio.Task[None] | None = None  # the request being handled, when it waits
        self._closing = False  # answered with Connection: close
        self.last_activity = 0.0
        self.request_started = 0.0  # 0 = no request being read

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_activity = self._frontend.loop_time()
        self._frontend.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._frontend.loop_time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not served here; send HTTP/1.1 requests")
            return
        except httptools.HttpParserCallbackError:  # a bound, raised from our callback (_fail already sent)
            return
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")
            return
        self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self._frontend.connections.discard(self)
        if self.busy is not None:
            self.busy.cancel()  # its answer has nowhere to go; rows already admitted stay admitted
        self._transport = None
        self._ready.clear()

    def _reading_held(self) -> bool:
        return self.busy is not None or super()._reading_held()

    # -- llhttp callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._request = _Request()
        self.request_started = self.last_activity

    def on_url(self, url: bytes) -> None:
        request = self._request
        assert request is not None
        request.path += url
        self._count_head(request, len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._request
        assert request is not None
        request.head_bytes += len(name) + len(value) + 4  # _count_head, inline: called for every header
        if request.head_bytes > MAX_HEADER_BYTES:
            self._count_head(request, 0)
        request.raw_headers.append((name, value))
        key = name.lower()
        if key in _WANTED:
            previous = request.wanted.get(key)
            request.wanted[key] = value if previous is None else previous + b", " + value

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None
        request.method = self._parser.get_method()
        declared = request.header(b"content-length")
        limit = self._frontend.max_request_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self._fail(413, too_large_message(limit, declared))
            raise _Stop
        if (request.header(b"expect") or "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self._request
        assert request is not None
        request.body_bytes += len(body)
        if request.body_bytes > self._frontend.max_request_bytes:
            limit = self._frontend.max_request_bytes
            self._fail(413, too_large_message(limit))
            raise _Stop
        request.body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        assert request is not None
        request.close = not self._parser.should_keep_alive()
        self._ready.append(request)
        self._request = None
        self.request_started = 0.0

    def _count_head(self, request: _Request, n: int) -> None:
        request.head_bytes += n
        if request.head_bytes > MAX_HEADER_BYTES:
            self._fail(431, f"request line and headers exceed {MAX_HEADER_BYTES // 1024} KiB")
            raise _Stop

    # -- handling -----------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Handle the requests read so far, in order; stop at one that waits (its task continues), and after
        MAX_REQUESTS_PER_TURN (the rest on the loop's next turn: a burst of pipelined requests must not hold
        the event loop for the other connections)."""
        served = 0
        while self._ready and self.busy is None and self._transport is not None and not self._closing:
            if served == MAX_REQUESTS_PER_TURN:
                self._deferred = True
                asyncio.get_running_loop().call_soon(self._serve_deferred)
                break
            request = self._ready.popleft()
            served += 1
            task = eager.start(self._handle(request))
            if task is not None:  # one request at a time: the next ones wait in the socket
                self.busy = task
                task.add_done_callback(self._resumed)
        self._sync_reading()

    def _serve_deferred(self) -> None:
        self._deferred = False
        self._serve()

    def _resumed(self, task: asyncio.Task[None]) -> None:
        self.busy = None
        self._serve()

    async def _handle(self, request: _Request) -> None:
        frontend = self._frontend
        path = request.path.split(b"?", 1)[0]
        spec = frontend.routes.get(path)
        if spec is None:
            self._answer(404, b"404: Not Found", "text/plain; charset=utf-8", {}, request.close)
            return
        if request.method != b"POST":
            self._answer(405, b"405: Method Not Allowed", "text/plain; charset=utf-8", {"Allow": "POST"}, request.close)
            return
        json, gzip, refused = negotiate(request.header(b"content-type"), request.header(b"content-encoding"))
        if refused is not None:
            self._reply(http_error(refused, json), json, request.close)
            return
        ingest = frontend.ingest
        key = None
        if ingest.authenticating:
            key = ingest.authenticate(spec, request.headers(), "http")
            if isinstance(key, Refused):
                self._reply(http_error(key, json), json, request.close)
                return
        parts = request.body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        request.body = []
        outcome = await ingest.handle(spec, body, json=json, gzip=gzip, transport="http", key=key)
        if isinstance(outcome, Accepted):
            if not outcome.rejected and not outcome.message:
                self._send(frontend.success(spec.name, json, request.close), request.close)
                return
            reply = http_success(response_message(spec.response_type, spec.rejected_field, outcome), json)
            self._reply(reply, json, request.close)
            return
        self._reply(http_error(outcome, json), json, request.close)

    # -- answers ------------------------------------------------------------------------------------

    def _reply(self, reply: HttpReply, json: bool, close: bool) -> None:
        self._answer(reply.status, reply.body, JSON if json else PROTOBUF, reply.headers, close)

    def _answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str], close: bool) -> None:
        self._send(response_bytes(status, body, content_type, headers, close), close)

    def _send(self, data: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        transport.write(data)
        if close:
            self._closing = True
            self._ready.clear()
            transport.close()

    def _fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be read on (bad syntax, over a bound) and close the connection."""
        request = self._request
        spec = self._frontend.routes.get(request.path.split(b"?", 1)[0]) if request is not None else None
        self._frontend.count_unreadable(spec.name if spec is not None else None, status, message, self._transport)
        if status == 413:
            reply = http_error(Refused(Refusal.TOO_LARGE, message), False)
            self._answer(413, reply.body, PROTOBUF, reply.headers, True)
        else:
            self._answer(status, message.encode(), "text/plain; charset=utf-8", {}, True)

    def close_if_stale(self, now: float) -> None:
        if self.busy is not None or self._transport is None or self._closing:
            return
        if self.request_started and now - self.request_started > REQUEST_TIMEOUT_S:
            self._fail(408, f"request not received whole within {REQUEST_TIMEOUT_S:g} s")
        elif not self.request_started and now - self.last_activity > IDLE_TIMEOUT_S:
            self._transport.close()


class _Stop(Exception):
    """Raised from an llhttp callback to stop parsing: the connection has been answered and is closing."""


class HttpLeanFrontend:
    """Listens on otlp.http_endpoint; start/stop as HttpFrontend."""

    def __init__(
        self,
        endpoint: str,
        ingest: Ingest,
        signals: Iterable[SignalSpec],
        max_request_bytes: int,
        tls: TlsCredentials | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        if httptools is None:
            raise StartupError(
                "otlp.http_engine = httptools needs the httptools package (pip install httptools); "
                "or set otlp.http_engine = auto"
            )
        self.endpoint = endpoint
        self.ingest = ingest
        self.max_request_bytes = max_request_bytes
        self._tls = tls
        self._reuse_port = reuse_port
        signals = tuple(signals)
        self.routes: dict[bytes, SignalSpec] = {spec.http_path.encode(): spec for spec in signals}
        # The answer to almost every request (nothing rejected), per signal and encoding: built once.
        self._success_bodies = {
            (spec.name, json): http_success(
                response_message(spec.response_type, spec.rejected_field, Accepted(0)), json
            ).body
            for spec in signals
            for json in (False, True)
        }
        self._success_cache: dict[tuple[str, bool, bool], tuple[bytes, bytes]] = {}
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def success(self, signal: str, json: bool, close: bool) -> bytes:
        """The whole success response, rebuilt only when the Date header's second changes."""
        date = _DATE.now()
        cached = self._success_cache.get((signal, json, close))
        if cached is not None and cached[0] is date:
            return cached[1]
        data = response_bytes(200, self._success_bodies[(signal, json)], JSON if json else PROTOBUF, {}, close)
        self._success_cache[(signal, json, close)] = (_DATE.value, data)
        return data

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server, self.port = await listen_tcp(
            self.endpoint,
            lambda: _Connection(self),
            "OTLP/HTTP",
            "otlp.http_endpoint",
            self._tls.ssl_context() if self._tls is not None else None,
            reuse_port=self._reuse_port,
        )
        self._sweeper = self._loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections idle past IDLE_TIMEOUT_S and those whose request is not read whole in time."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self.loop_time()
            for connection in list(self.connections):
                connection.close_if_stale(now)

    def count_unreadable(
        self, signal: str | None, status: int, message: str, transport: asyncio.BaseTransport | None
    ) -> None:
        """A request answered before it was read whole: counted (observatory_refused_requests_total) and
        logged, rate-limited, with the peer."""
        reason = _UNREADABLE.get(status, "malformed")
        peer = transport.get_extra_info("peername") if transport is not None else None
        if self.ingest is not None:
            self.ingest.count_unreadable("http", signal, reason, f"{message} (HTTP {status}, peer {peer})")

    async def stop(self) -> None:
        """Stop accepting, let the requests in progress answer, close every connection."""
        if self._server is None:
            return
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        busy = [c.busy for c in self.connections if c.busy is not None]
        if busy:
            await asyncio.wait(busy, timeout=2.0)
        for connection in list(self.connections):
            if connection._transport is not None:
                connection._transport.close()
        await self._server.wait_closed()
        self._server = None
