"""The read API's HTTP server: routes, API keys, a connection pool of its own, statement timeouts,
metrics and the mapping of every failure to a status. The only I/O of receiver/query/.

Every query runs on a pool connection opened with `statement_timeout = query.statement_timeout_ms`
and read-only transactions, so a slow query is cut off by PostgreSQL and answered 503 + Retry-After
(never a connection left hanging); asyncpg's own timeout, a little longer, covers a database that stops
answering altogether. A request that finds every connection busy waits at most as long, then gets a 503
too. Answers are bounded: row limits per endpoint, and a byte budget on a trace's spans and logs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from receiver.app.config import QueryConfig
from receiver.endpoints import serve_http
from receiver.frontends.auth import ApiKeyAuthenticator
from receiver.frontends.outcomes import Refusal, Refused
from receiver.query import models, openapi, points, sessions, spans, traces, usage
from receiver.query.cursor import CursorCodec
from receiver.query.errors import Forbidden, NotFound, QueryError, Unauthorized, Unavailable
from receiver.query.params import check_window, parse_path, parse_query
from receiver.query.shape import LOG_COLUMNS, SPAN_FULL_COLUMNS, approximate_bytes
from receiver.storage.api_keys import READ
from receiver.storage.database import APPLICATION_NAME
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Metrics

Handler = Callable[[web.Request, uuid.UUID | None], Awaitable[dict[str, Any]]]

_DISCONNECTED = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
    asyncpg.TooManyConnectionsError,
)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    payload = orjson.dumps(body, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
    return web.Response(status=status, body=payload, content_type="application/json")


class QueryServer:
    def __init__(
        self,
        config: QueryConfig,
        metrics: Metrics,
        authenticator: ApiKeyAuthenticator | None,
        readiness: Callable[[], tuple[bool, str]],
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.authenticator = authenticator
        self._readiness = readiness
        self._connect_timeout_s = connect_timeout_s
        self.cursors = CursorCodec(config.cursor_secret)
        self.log = get_logger("query")
        self._rate_limited = RateLimitedLog(self.log)
        self._dsn: str | None = None
        self._pool: asyncpg.Pool | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._openapi = orjson.dumps(openapi.document())

    # -- lifecycle -------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._not_found_as_json])
        prefix = openapi.PREFIX
        app.router.add_get(f"{prefix}/openapi.json", self._openapi_document)
        routes: dict[str, tuple[str, Handler]] = {
            "/traces/{trace_id}": (traces.ENDPOINT, self._trace),
            "/spans": (spans.ENDPOINT, self._spans),
            "/sessions/{session_id}": (sessions.ENDPOINT, self._session),
            "/usage": (usage.ENDPOINT, self._usage),
            "/metrics": (points.ENDPOINT, self._points),
            "/models": (models.ENDPOINT, self._models),
        }
        for path, (endpoint, handler) in routes.items():
            app.router.add_get(prefix + path, self._wrap(endpoint, handler))
        return app

    async def start(self, dsn: str, *, reuse_port: bool = False) -> None:
        self._dsn = dsn
        # Request lines up to 64 KiB: filters carry ids of up to 4 KiB, percent-encoded; past aiohttp's
        # default 8 KiB a long one would be refused by the HTTP parser as text, not as a 400 naming it.
        self._runner, self.port = await serve_http(
            self._app(),
            self.config.endpoint,
            "the read API",
            "query.endpoint",
            reuse_port=reuse_port,
            max_line_size=65536,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.close()
            self._pool = None

    # -- plumbing --------------------------------------------------------------------------------

    @web.middleware
    async def _not_found_as_json(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            body = {
                "error": {
                    "status": exc.status,
                    "code": "not_found" if exc.status == 404 else "http_error",
                    "message": f"{request.method} {request.path}: {exc.reason}",
                }
            }
            response = json_response(body, exc.status)
            if exc.status == 405:
                response.headers["Allow"] = "GET"
            return response

    async def _openapi_document(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    def _wrap(self, endpoint: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            started = time.perf_counter()
            request["rows"] = 0
            try:
                tenant = self._authenticate(request)
                ready, reason = self._readiness()
                if not ready:
                    raise Unavailable(f"the database is not ready: {reason}", retry_after_s=self.config.retry_after_s)
                response = json_response(await handler(request, tenant))
            except QueryError as exc:
                response = json_response(exc.body(), exc.status)
                if exc.status == 503:
                    response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s or self.config.retry_after_s)))
                    self._rate_limited.warning(
                        f"{endpoint}:503", "read query refused", endpoint=endpoint, reason=exc.message
                    )
            except Exception as exc:  # a defect: answer 500, log it with its traceback, keep serving
                self.log.exception("read request failed", endpoint=endpoint, path=request.path, error=repr(exc))
                response = json_response(
                    {
                        "error": {
                            "status": 500,
                            "code": "internal",
                            "message": "internal error (logged by the receiver)",
                        }
                    },
                    500,
                )
            self.metrics.query_requests.labels(endpoint, str(response.status)).inc()
            if response.status < 400 or response.status >= 500:
                self.metrics.query_duration.labels(endpoint).observe(time.perf_counter() - started)
                self.metrics.query_rows.labels(endpoint).observe(request["rows"])
            return response

        return handle

    def _authenticate(self, request: web.Request) -> uuid.UUID | None:
        """The project the answer is limited to (None with auth.mode = none)."""
        if self.authenticator is None:
            return None
        found = self.authenticator.identify(request.headers, READ)
        if not isinstance(found, Refused):
            return found.project_id
        self.metrics.auth_refused.labels(found.label).inc()
        if found.reason is Refusal.FORBIDDEN:
            raise Forbidden(found.message)
        if found.reason is Refusal.UNAUTHENTICATED:
            raise Unauthorized(found.message)
        raise Unavailable(found.message, retry_after_s=found.retry_after_s)

    async def _project(self, requested: uuid.UUID | str | None, tenant: uuid.UUID | None) -> uuid.UUID | str | None:
        """The one project filter every query carries: the key's project, or the `project` parameter."""
        if tenant is not None and requested is not None and requested != tenant:
            raise Forbidden(
                f"this API key reads project {tenant} only: leave out `project` or pass that id", parameter="project"
            )
        return tenant if tenant is not None else requested

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            assert self._dsn is not None
            timeout_ms = self.config.statement_timeout_ms
            self._pool = asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self.config.max_connections,
                max_inactive_connection_lifetime=60.0,
                timeout=self._connect_timeout_s,
                # A safety net behind statement_timeout: a database that stops answering altogether.
                command_timeout=timeout_ms / 1000 + 2.0,
                server_settings={
                    "application_name": f"{APPLICATION_NAME}:query",
                    "statement_timeout": str(timeout_ms),
                    "idle_in_transaction_session_timeout": str(timeout_ms * 2),
                    "default_transaction_read_only": "on",
                    "TimeZone": "UTC",
                    # One plan per statement and connection, partitions / chunks pruned when it runs: with a
                    # custom plan per request, planning over 90 days of 6-hour partitions (~370) cost a
                    # span query 75-125 ms of CPU; generic, 9-40 ms (README, "Read API").
                    "plan_cache_mode": "force_generic_plan",
                },
            )
            await self._pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        wait_s = self.config.statement_timeout_ms / 1000
        try:
            pool = await self._get_pool()
            conn = await pool.acquire(timeout=wait_s)
        except TimeoutError:
            raise Unavailable(
                f"all {self.config.max_connections} read connections stayed busy for {wait_s:g} s "
                "(query.max_connections)",
                retry_after_s=self.config.retry_after_s,
            ) from None
        except _DISCONNECTED as exc:
            raise Unavailable(
                f"the database is not reachable: {exc}", retry_after_s=self.config.retry_after_s
            ) from None
        try:
            yield conn
        except asyncpg.QueryCanceledError:
            raise Unavailable(
                f"the query ran longer than query.statement_timeout_ms = {self.config.statement_timeout_ms} ms "
                "and was cancelled; narrow the time window or the filters",
                retry_after_s=self.config.retry_after_s,
            ) from None
        except TimeoutError:
            raise Unavailable("the database did not answer in time", retry_after_s=self.config.retry_after_s) from None
        except _DISCONNECTED as exc:
            raise Unavailable(f"lost the database connection: {exc}", retry_after_s=self.config.retry_after_s) from None
        finally:
            with contextlib.suppress(Exception):
                await pool.release(conn)

    async def _fetch(self, request: web.Request, sql: str, args: list[Any]) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        request["rows"] += len(rows)
        return rows

    # -- endpoints -------------------------------------------------------------------------------

    async def _trace(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(traces.PARAMS, request.query)
        check_window(values)
        window = (values["from"], values["to"])
        trace_id = parse_path(traces.PARAMS, request.match_info)["trace_id"]
        project = await self._project(None, tenant)
        budget = self.config.max_response_bytes
        limit = self.config.max_trace_spans
        truncated = False
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            span_rows: list[asyncpg.Record] = []
            sql, args = traces.spans_sql(trace_id, project, limit, window)
            async for row in conn.cursor(sql, *args, prefetch=100):
                size = approximate_bytes(row, SPAN_FULL_COLUMNS)
                if len(span_rows) >= limit or size > budget:
                    truncated = True
                    break
                budget -= size
                span_rows.append(row)
            log_rows: list[asyncpg.Record] = []
            if not truncated:
                sql, args = traces.logs_sql(trace_id, project, limit, window)
                async for row in conn.cursor(sql, *args, prefetch=100):
                    size = approximate_bytes(row, LOG_COLUMNS)
                    if len(log_rows) >= limit or size > budget:
                        truncated = True
                        break
                    budget -= size
                    log_rows.append(row)
        request["rows"] += len(span_rows) + len(log_rows)
        if not span_rows and not log_rows and not truncated:
            raise NotFound(f"no trace {trace_id.hex}" + (" in this key's project" if tenant else ""))
        return traces.assemble(trace_id, span_rows, log_rows, truncated)

    async def _spans(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(spans.PARAMS, request.query)
        check_window(values)
        query = spans.SpanQuery(values, await self._project(values["project"], tenant))
        after = self.cursors.decode(query.digest(), values["cursor"]) if values["cursor"] else None
        lower = None
        if spans.rollup_bound_applies(query):
            bound_sql, bound_args = spans.rollup_bound_sql(query, after)
            lower = (await self._fetch(request, bound_sql, bound_args))[0]["bound"]
        sql, args = spans.build(query, after, lower)
        items, following = spans.page(query, await self._fetch(request, sql, args))
        return {
            "spans": items,
            "next_cursor": self.cursors.encode(query.digest(), following) if following else None,
        }

    async def _session(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(sessions.PARAMS, request.query)
        check_window(values)
        session_id = parse_path(sessions.PARAMS, request.match_info)["session_id"]
        window = (values["from"], values["to"])
        project = await self._project(None, tenant)
        sql, args = sessions.build(session_id, project, values["limit"], window)
        rows = await self._fetch(request, sql, args)
        if not rows:
            raise NotFound(f"no session {session_id!r}" + (" in this key's project" if tenant else ""))
        return sessions.assemble(session_id, rows, values["limit"])

    async def _usage(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(usage.PARAMS, request.query)
        query = usage.resolve(values, await self._project(values["project"], tenant), datetime.now(UTC))
        sql, args = usage.build(query, self.config.max_usage_rows)
        return usage.assemble(query, await self._fetch(request, sql, args), self.config.max_usage_rows)

    async def _points(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(points.PARAMS, request.query)
        check_window(values)
        query = points.PointQuery(values, await self._project(values["project"], tenant))
        after = self.cursors.decode(query.digest(), values["cursor"]) if values["cursor"] else None
        sql, args = points.build(query, after, datetime.now(UTC))
        items, following = points.page(query, await self._fetch(request, sql, args))
        return {
            "points": items,
            "next_cursor": self.cursors.encode(query.digest(), following) if following else None,
        }

    async def _models(self, request: web.Request, tenant: uuid.UUID | None) -> dict[str, Any]:
        values = parse_query(models.PARAMS, request.query)
        today = datetime.now(UTC).date()
        sql, args = models.build(values, today)
        return models.assemble(values, today, await self._fetch(request, sql, args))
