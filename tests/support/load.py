"""A steady OTLP sender for fault tests that remembers exactly which spans were acknowledged.

It behaves like a well-behaved exporter: a refused request (gRPC UNAVAILABLE with RetryInfo, HTTP
503/429 with Retry-After) is retried after the delay the receiver asked for; a request whose answer
never came (the receiver was killed) is not acknowledged and not retried. Every span is unique, so
the database must end up holding every acknowledged span exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.support.otlp import TRACE_EXPORT, span, trace_request


def retry_delay_from_grpc(error: grpc.aio.AioRpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


@dataclass
class LoadResult:
    acked: set[tuple[uuid.UUID, str]] = field(default_factory=set)
    sent_requests: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    retry_delays: list[float] = field(default_factory=list)
    lost_answers: int = 0  # requests whose answer never came (receiver killed or unreachable)


class SteadyLoad:
    def __init__(
        self,
        receiver: object,
        service: str,
        *,
        transport: str = "grpc",
        spans_per_request: int = 50,
        interval_s: float = 0.05,
        senders: int = 2,
        payload_bytes: int = 200,
        timeout_s: float = 10.0,
    ) -> None:
        self.receiver = receiver
        self.service = service
        self.transport = transport
        self.spans_per_request = spans_per_request
        self.interval_s = interval_s
        self.senders = senders
        self.payload = "p" * payload_bytes
        self.timeout_s = timeout_s
        self.result = LoadResult()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _request(self) -> trace_service_pb2.ExportTraceServiceRequest:
        spans = [span(f"load-{i}", attributes={"payload": self.payload}) for i in range(self.spans_per_request)]
        return trace_request(spans, self.service)

    async def _send_grpc(self, channel: grpc.aio.Channel, body: bytes) -> tuple[bool, float | None, str]:
        try:
            await channel.unary_unary(TRACE_EXPORT)(body, timeout=self.timeout_s)
            return True, None, "ok"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                delay = retry_delay_from_grpc(exc)
                if delay is not None:
                    return False, delay, code.name
            return False, None, code.name

    async def _send_http(self, session: aiohttp.ClientSession, body: bytes) -> tuple[bool, float | None, str]:
        url = f"{self.receiver.http_url}/v1/traces"  # type: ignore[attr-defined]
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}) as r:
                await r.read()
                if r.status == 200:
                    return True, None, "ok"
                retry_after = r.headers.get("Retry-After")
                return False, float(retry_after) if retry_after else None, f"http_{r.status}"
        except (aiohttp.ClientError, TimeoutError):
            return False, None, "no_answer"

    async def _sender(self) -> None:
        channel = grpc.aio.insecure_channel(self.receiver.grpc_target)  # type: ignore[attr-defined]
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            while not self._stop.is_set():
                request = self._request()
                body = request.SerializeToString()
                ids = [
                    (uuid.UUID(bytes=s.trace_id), s.span_id.hex())
                    for s in request.resource_spans[0].scope_spans[0].spans
                ]
                while True:
                    self.result.sent_requests += 1
                    if self.transport == "grpc":
                        ok, delay, label = await self._send_grpc(channel, body)
                    else:
                        ok, delay, label = await self._send_http(session, body)
                    if ok:
                        self.result.acked.update(ids)
                        break
                    self.result.refusals[label] += 1
                    if delay is None:  # no retry hint: not acknowledged, not retried (may or may not land)
                        self.result.lost_answers += 1
                        break
                    self.result.retry_delays.append(delay)
                    if self._stop.is_set():
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    if self._stop.is_set():
                        break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval_s)
        finally:
            await channel.close()
            await session.close()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self.senders)]

    async def stop(self) -> LoadResult:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.result


async def stored_spans(database: object, service: str) -> tuple[set[tuple[uuid.UUID, str]], int]:
    """(distinct (trace_id, span_id) stored for the service, total row count)."""
    rows = await database.fetch(  # type: ignore[attr-defined]
        "SELECT trace_id, span_id FROM llm_traces WHERE service_name = $1", service
    )
    return {(r["trace_id"], r["span_id"]) for r in rows}, len(rows)
