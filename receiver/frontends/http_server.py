"""OTLP/HTTP front end: POST /v1/traces, /v1/metrics, /v1/logs (protobuf or JSON, optionally gzip).

aiohttp reads the body (Content-Length or chunked); we inflate gzip ourselves so the size limit holds
after decompression. The response uses the request's content type, as the OTLP spec requires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from receiver.endpoints import serve_http
from receiver.frontends.http_media import JSON, PROTOBUF, negotiate, too_large_message
from receiver.frontends.ingest import Ingest
from receiver.frontends.outcomes import Accepted, Refusal, Refused
from receiver.frontends.signals import SignalSpec
from receiver.frontends.status import HttpReply, http_error, http_success, response_message
from receiver.frontends.tls import TlsCredentials


def _reply(reply: HttpReply, json: bool) -> web.Response:
    return web.Response(
        status=reply.status,
        body=reply.body,
        headers=reply.headers,
        content_type=JSON if json else PROTOBUF,
    )


def _export_route(
    spec: SignalSpec, ingest: Ingest, max_request_bytes: int
) -> Callable[[web.Request], Awaitable[web.Response]]:
    # The answer to almost every request (nothing rejected), per encoding: encoded once, not per request.
    success = {
        json: http_success(response_message(spec.response_type, spec.rejected_field, Accepted(0)), json)
        for json in (False, True)
    }

    async def export(request: web.Request) -> web.Response:
        json, gzip, refused = negotiate(request.headers.get("Content-Type"), request.headers.get("Content-Encoding"))
        if refused is not None:
            return _reply(http_error(refused, json), json)
        key = None
        if ingest.authenticating:  # the headers are copied only when a key is to be checked
            key = ingest.authenticate(spec, {k.lower(): v for k, v in request.headers.items()}, "http")
            if isinstance(key, Refused):
                return _reply(http_error(key, json), json)
        declared = request.content_length
        if declared is not None and declared > max_request_bytes:
            refused = Refused(Refusal.TOO_LARGE, too_large_message(max_request_bytes, declared))
            return _reply(http_error(refused, json), json)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            refused = Refused(Refusal.TOO_LARGE, too_large_message(max_request_bytes))
            return _reply(http_error(refused, json), json)
        outcome = await ingest.handle(spec, body, json=json, gzip=gzip, transport="http", key=key)
        if isinstance(outcome, Accepted):
            if not outcome.rejected and not outcome.message:
                return _reply(success[json], json)
            response = response_message(spec.response_type, spec.rejected_field, outcome)
            return _reply(http_success(response, json), json)
        return _reply(http_error(outcome, json), json)

    return export


class HttpFrontend:
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
        self.endpoint = endpoint
        self._tls = tls
        self._reuse_port = reuse_port  # SO_REUSEPORT: worker processes share the port
        self._ingest = ingest
        self._signals = tuple(signals)
        self._max_request_bytes = max_request_bytes
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_request_bytes)
        for spec in self._signals:
            app.router.add_post(spec.http_path, _export_route(spec, self._ingest, self._max_request_bytes))
        return app

    async def start(self) -> None:
        self._runner, self.port = await serve_http(
            self._app(),
            self.endpoint,
            "OTLP/HTTP",
            "otlp.http_endpoint",
            ssl_context=self._tls.ssl_context() if self._tls is not None else None,
            reuse_port=self._reuse_port,
            auto_decompress=False,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
