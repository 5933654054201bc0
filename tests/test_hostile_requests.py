"""Requests that cost far more to decode than they weigh, sent to a real receiver while another client
exports normally and a third polls /health/live (issue 9).

Each case asserts what can fail for the reason it names:
- the answer: refused at once with the status and the config key of the limit it broke (HTTP 413 /
  gRPC RESOURCE_EXHAUSTED, 400 / INVALID_ARGUMENT for nesting past upb's limit), or accepted;
- the refusal counted with its reason (observatory_refused_requests_total);
- the receiver's peak memory (VmHWM, reset just before) against the documented bound for a body of B
  bytes (decompressed): 3·B + C when the scan refuses it, 3·B + min(k·B + 16 MiB, M) + C when it is
  decoded, k = limits.max_decode_amplification, M = limits.max_request_memory_mib (README, "Bounded
  decoding");
- the event loop never held for a second or more: the receiver's own lag histogram
  (observatory_event_loop_lag_seconds) gains no sample above 1 s (timing assertions in the suite would
  be flaky; this one is measured by the receiver itself);
- the other client's acknowledged spans all land, exactly once, and nothing of a refused request does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import grpc
import pytest

from receiver.convert.budget import DecodeLimits
from tests.support import hostile, wire
from tests.support.load import SteadyLoad, stored_spans
from tests.support.otlp import TRACE_EXPORT
from tests.support.process import ReceiverProcess
from tests.support.procmem import reset_peak, status_bytes
from tests.support.wait import wait_until

MIB = 1024 * 1024
LIMITS = DecodeLimits()  # the defaults of limits.*, which the receiver below runs with
C = 16 * MIB  # the constant of the bound: threads, allocator, buffers
BYSTANDERS = 16 * MIB  # what the other client's requests hold meanwhile


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    transport: str  # http or grpc
    gzip: bool
    expect: str  # "accepted", or the refusal's metrics reason
    key: str = ""  # the config key the refusal must name
    rows: int | Callable[[], int] = 0  # rows that land when accepted (or what counts them)


def _too_deep() -> bytes:
    return hostile._one_span(wire.field_len(9, wire.key_value(b"deep", hostile.nested_value(60))))


CASES = [
    Case(
        "16 MiB of 0a 00 over HTTP gzip",
        lambda: hostile.empty_resources(16 * MIB),
        "http",
        True,
        "too_many_containers",
        "limits.max_containers_per_request",
    ),
    Case(
        "16 MiB of 0a 00 over gRPC gzip",
        lambda: hostile.empty_resources(16 * MIB),
        "grpc",
        True,
        "too_many_containers",
        "limits.max_containers_per_request",
    ),
    Case(
        "8 million empty events",
        lambda: hostile.empty_events(16 * MIB),
        "http",
        True,
        "too_many_containers",
        "limits.max_containers_per_request",
    ),
    Case("16 MiB nested 100 messages deep", lambda: hostile.deep_nesting(16 * MIB), "http", True, "accepted", rows=1),
    Case("nested past upb's 100 levels", _too_deep, "grpc", False, "malformed", "nested deeper than 100"),
    Case(
        "64 MiB of valid spans",
        lambda: hostile.valid_spans(64 * MIB),
        "grpc",
        False,
        "accepted",
        rows=lambda: hostile.valid_span_count(64 * MIB),
    ),
]


async def _loop_stalls(proc: ReceiverProcess) -> float:
    """Event-loop wake-ups the receiver saw late by more than 1 s, so far."""
    samples = await proc.metrics()
    within_1s = samples['observatory_event_loop_lag_seconds_bucket{le="1.0"}']
    return samples["observatory_event_loop_lag_seconds_count"] - within_1s


async def _refused(proc: ReceiverProcess, reason: str) -> float:
    samples = await proc.metrics()
    name, label = "observatory_refused_requests_total", f'reason="{reason}"'
    return sum(value for key, value in samples.items() if key.startswith(name) and label in key)


class HealthPoller:
    """The third client: GET /health/live every 50 ms; every answer must be 200."""

    def __init__(self, proc: ReceiverProcess) -> None:
        self.url = f"{proc.admin_url}/health/live"
        self.answers = 0
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            while True:
                try:
                    async with session.get(self.url) as response:
                        await response.read()
                        if response.status != 200:
                            self.failures.append(f"HTTP {response.status}")
                        self.answers += 1
                except aiohttp.ClientError as exc:
                    self.failures.append(repr(exc))
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _send(proc: ReceiverProcess, case: Case, body: bytes) -> tuple[str, str]:
    """(outcome, message): "ok" or the HTTP status / gRPC code, and the refusal's message."""
    if case.transport == "http":
        headers = {"Content-Type": "application/x-protobuf"}
        if case.gzip:
            headers["Content-Encoding"] = "gzip"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300), auto_decompress=False) as session,
            session.post(f"{proc.http_url}/v1/traces", data=body, headers=headers) as response,
        ):
            text = (await response.read()).decode("utf-8", "replace")
            return ("ok" if response.status == 200 else f"HTTP {response.status}"), text
    options = [("grpc.max_send_message_length", 128 * MIB)]
    async with grpc.aio.insecure_channel(proc.grpc_target, options=options) as channel:
        try:
            compression = grpc.Compression.Gzip if case.gzip else None
            await channel.unary_unary(TRACE_EXPORT)(body, timeout=300, compression=compression)
            return "ok", ""
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""


EXPECTED_STATUS = {
    ("http", "too_many_containers"): "HTTP 413",
    ("grpc", "too_many_containers"): "RESOURCE_EXHAUSTED",
    ("http", "malformed"): "HTTP 400",
    ("grpc", "malformed"): "INVALID_ARGUMENT",
}


@pytest.fixture(scope="module")
async def receiver_under_attack(module_database, tmp_path_factory):
    # A queue that holds a 64 MiB request of spans (by default it is refused: 413, larger than the queue;
    # and the rows-per-byte the front end learns from the other client's small spans would foresee 200K).
    proc = ReceiverProcess(
        module_database.dsn,
        tmp_path_factory.mktemp("hostile"),
        pipeline__queue_max_bytes=512 * MIB,
        pipeline__queue_max_rows=400_000,
    )
    await proc.start()
    yield proc
    await proc.stop()


async def _hostile_rows(database, service: str) -> int:
    return int(
        await database.fetchval("SELECT count(*) FROM llm_traces WHERE service_name IS DISTINCT FROM $1", service)
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_hostile_request_is_bounded_and_never_stalls_the_others(receiver_under_attack, module_database, case):
    proc = receiver_under_attack
    assert proc.proc is not None
    pid = proc.proc.pid
    raw = case.build()
    expected_rows = case.rows() if callable(case.rows) else case.rows
    body = gzip.compress(raw, 6) if case.gzip and case.transport == "http" else raw
    service = f"bystander-{uuid.uuid4().hex[:8]}"
    rows_before = await _hostile_rows(module_database, service)
    load = SteadyLoad(proc, service, spans_per_request=20, interval_s=0.05, senders=2)
    health = HealthPoller(proc)
    load.start()
    health.start()
    try:
        await wait_until(lambda: _acked(load), what="the other client's first spans acknowledged")
        stalls_before = await _loop_stalls(proc)
        refused_before = await _refused(proc, case.expect)
        rss_before = status_bytes(pid, "VmRSS")
        reset_peak(pid)
        outcome, message = await _send(proc, case, body)
        peak_growth = status_bytes(pid, "VmHWM") - rss_before
        acked = len(load.result.acked)
        await wait_until(lambda: _acked(load, more_than=acked), what="the other client served after it")
    finally:
        result = await load.stop()
        await health.stop()

    bound = 3 * len(raw) + C + BYSTANDERS  # the body, the transport's and gunzip's copies of it
    if case.expect == "accepted":
        assert outcome == "ok", message
        bound += LIMITS.memory_bound(len(raw))  # what decoding it may take: min(k·B + 16 MiB, M)
    else:
        assert outcome == EXPECTED_STATUS[(case.transport, case.expect)], message
        assert case.key in message
        assert await _refused(proc, case.expect) == refused_before + 1
    assert peak_growth <= bound, f"peak memory grew {peak_growth / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB"
    assert await _loop_stalls(proc) == stalls_before, "the event loop was held for a second or more"
    assert health.answers > 0 and not health.failures, health.failures[:3]

    async def all_landed() -> bool:
        stored, _ = await stored_spans(module_database, service)
        return result.acked <= stored

    await wait_until(all_landed, timeout=60, what="the other client's acknowledged spans in the database")
    stored, rows = await stored_spans(module_database, service)
    assert rows == len(stored), "a span stored twice"
    await module_database.wait_for_count(
        "SELECT count(*) FROM llm_traces WHERE service_name IS DISTINCT FROM $1", rows_before + expected_rows, service
    )
    assert await _hostile_rows(module_database, service) == rows_before + expected_rows  # nothing half-stored


async def _acked(load: SteadyLoad, more_than: int = 0) -> bool:
    return len(load.result.acked) > more_than
