"""Admin endpoint: GET /metrics, /health, /health/live, /health/ready.

/health/live answers as long as the event loop does. /health/ready is 503 until the database is
reachable and migrated, and again while draining, so a load balancer stops sending first.
/health is the full report the operations manual describes (status, postgres latency, pool, queue,
breaker, spool).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from receiver.endpoints import serve_http
from receiver.telemetry.metrics import Metrics

HealthReport = Callable[[], Awaitable[dict[str, Any]]]


class Exposition(Protocol):
    """What /metrics renders: a receiver's Metrics, or the supervisor's view of all its workers (async)."""

    def render(self) -> bytes | Awaitable[bytes]: ...


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


class AdminServer:
    def __init__(
        self,
        endpoint: str,
        metrics: Metrics | Exposition,
        health_report: HealthReport,
        readiness: Callable[[], tuple[bool, str]],
    ) -> None:
        self.endpoint = endpoint
        self._metrics = metrics
        self._health_report = health_report
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        return app

    async def _metrics_handler(self, _request: web.Request) -> web.Response:
        body = self._metrics.render()
        if inspect.isawaitable(body):
            body = await body
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _health(self, _request: web.Request) -> web.Response:
        report = await self._health_report()
        return _json(report, 200 if report.get("status") != "unhealthy" else 503)

    async def _live(self, _request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def _ready(self, _request: web.Request) -> web.Response:
        ready, reason = self._readiness()
        return _json({"status": "ready" if ready else "not_ready", "reason": reason}, 200 if ready else 503)

    async def start(self) -> None:
        self._runner, self.port = await serve_http(self._app(), self.endpoint, "the admin endpoint", "admin.endpoint")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
