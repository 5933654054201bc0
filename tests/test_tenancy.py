"""Tenants, scopes and rate limits with auth.mode = api_key, through a real receiver, real PostgreSQL and
the OpenTelemetry SDK exporters: every row of every signal carries its key's project, and so do the
rollups; a read-only key may not export; a key over its rate is refused retryably and then recovers;
a revoked key stops at the first key refresh after the revocation; spooled requests keep their project."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.storage.api_keys import create_key
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.telemetry.metrics import Metrics
from tests.support.otlp import export_grpc, post, sdk_spans, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until

RATE = 20  # items/s of the rate-limited key; auth.rate_burst_s = 1: a bucket of 20


def cli(database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
    )


@dataclass(frozen=True)
class Key:
    secret: str
    project_id: uuid.UUID

    @property
    def prefix(self) -> str:
        return self.secret[:12]

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.secret}"}


@dataclass(frozen=True)
class Tenants:
    proc: ReceiverProcess
    alpha: Key
    beta: Key
    reader: Key  # --scope read (project alpha)
    limited: Key  # --rate RATE


async def _cli_key(database, *args: str) -> Key:
    created = await asyncio.to_thread(cli, database, "keys", "create", *args)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    project = await database.fetchval(
        "SELECT project_id FROM api_keys WHERE key_prefix = $1 ORDER BY created_at DESC LIMIT 1", secret[:12]
    )
    return Key(secret, project)


@pytest.fixture(scope="module")
async def tenants(module_database, tmp_path_factory):
    proc = ReceiverProcess(
        module_database.dsn,
        tmp_path_factory.mktemp("tenants"),
        auth__mode="api_key",
        auth__refresh_interval_s=0.5,
        auth__rate_burst_s=1,
    )
    await proc.start()  # migrates
    conn = await module_database.connect()
    try:
        alpha = await create_key(conn, "Tenant Alpha")
        beta = await create_key(conn, "Tenant Beta")
        alpha_id = await conn.fetchval("SELECT project_id FROM api_keys WHERE id = $1", alpha.id)
        beta_id = await conn.fetchval("SELECT project_id FROM api_keys WHERE id = $1", beta.id)
    finally:
        await conn.close()
    reader = await _cli_key(module_database, "--project", "Tenant Alpha", "--scope", "read")
    limited = await _cli_key(module_database, "--project", "Tenant Gamma", "--rate", str(RATE))
    listed = await asyncio.to_thread(cli, module_database, "keys", "list")
    assert "\tread\t-\t" in listed.stdout and f"\tingest\t{RATE}/s\t" in listed.stdout, listed.stdout

    async def all_keys_loaded() -> bool:
        return await proc.metric("observatory_api_keys_active") >= 4

    await wait_until(all_keys_loaded, what="the receiver loaded the new keys")
    yield Tenants(proc, Key(alpha.key, alpha_id), Key(beta.key, beta_id), reader, limited)
    await proc.stop()


def llm_provider(protocol: str, proc: ReceiverProcess, key: Key, service: str) -> TracerProvider:
    if protocol == "grpc":
        exporter = GrpcSpanExporter(endpoint=proc.grpc_target, insecure=True, headers=key.bearer)
    else:
        exporter = HttpSpanExporter(endpoint=f"{proc.http_url}/v1/traces", headers=key.bearer)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def emit_chats(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("tests.tenancy")
    for _ in range(count):
        with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            chat.set_attribute("gen_ai.usage.input_tokens", 1000)
            chat.set_attribute("gen_ai.usage.output_tokens", 100)
    provider.shutdown()


async def test_every_row_and_rollup_carries_the_project_of_its_key(tenants, module_database):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    proc = tenants.proc
    service = f"tenants-{uuid.uuid4().hex[:6]}"
    emit_chats(llm_provider("grpc", proc, tenants.alpha, service), 3)
    emit_chats(llm_provider("http", proc, tenants.beta, service), 2)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{proc.http_url}/v1/metrics", headers=tenants.alpha.bearer),
        export_interval_millis=3_600_000,
    )
    meters = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meters.get_meter("tests").create_counter("requests").add(5)
    meters.shutdown()
    logs = LoggerProvider(resource=Resource.create({"service.name": service}))
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=proc.grpc_target, insecure=True, headers=tenants.beta.bearer))
    )
    logs.get_logger("tests").emit(body="hello", event_name="tests.hello")
    logs.shutdown()

    for table, expected in (("llm_traces", 5), ("llm_metrics", 1), ("llm_logs", 1)):
        await module_database.wait_for_count(f"SELECT count(*) FROM {table} WHERE service_name = $1", expected, service)
    rows = await module_database.fetch(
        "SELECT project_id, count(*) AS n FROM llm_traces WHERE service_name = $1 GROUP BY 1", service
    )
    assert {r["project_id"]: r["n"] for r in rows} == {tenants.alpha.project_id: 3, tenants.beta.project_id: 2}
    for table, project in (("llm_metrics", tenants.alpha.project_id), ("llm_logs", tenants.beta.project_id)):
        stamped = await module_database.fetch(f"SELECT project_id FROM {table} WHERE service_name = $1", service)
        assert [r["project_id"] for r in stamped] == [project], table

    # The native rollups, by project: cost per tenant per hour.
    maintenance = Maintenance(module_database.connect, "native", MaintenanceSettings(rollup_delay_s=0), Metrics())
    cost_query = (
        "SELECT project_id, sum(request_count) AS requests, sum(total_cost) AS cost FROM cost_analysis_hourly "
        "WHERE service_name = $1 GROUP BY 1"
    )
    per_project: dict[uuid.UUID, tuple[int, Decimal]] = {}

    async def rolled_up() -> bool:
        await maintenance.run_once()  # skipped while the receiver's own pass holds the lock
        per_project.clear()
        for r in await module_database.fetch(cost_query, service):
            per_project[r["project_id"]] = (r["requests"], r["cost"])
        return sum(n for n, _ in per_project.values()) == 5

    try:
        await wait_until(rolled_up, what="the spans rolled up")
    finally:
        await maintenance.shutdown()
    cost = Decimal(1000) * Decimal("0.15") / 10**6 + Decimal(100) * Decimal("0.60") / 10**6  # gpt-4o-mini
    assert per_project == {tenants.alpha.project_id: (3, 3 * cost), tenants.beta.project_id: (2, 2 * cost)}


async def test_a_read_only_key_may_not_export(tenants, module_database):
    proc, reader = tenants.proc, tenants.reader
    request = trace_request([span("read-only")], f"read-only-{uuid.uuid4().hex[:6]}")
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await export_grpc(proc.grpc_target, request, metadata=(("authorization", f"Bearer {reader.secret}"),))
    assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs 'ingest'" in excinfo.value.details()
    result = await post(f"{proc.http_url}/v1/traces", request.SerializeToString(), headers=reader.bearer)
    assert result.status == 403
    assert "has scopes read" in status_pb2.Status.FromString(result.body).message
    exporter = HttpSpanExporter(endpoint=f"{proc.http_url}/v1/traces", headers=reader.bearer, timeout=5)
    assert exporter.export(sdk_spans("read-only-sdk", ["x"])) is SpanExportResult.FAILURE  # not retried
    exporter.shutdown()
    label = f'observatory_key_refused_requests_total{{key_prefix="{reader.prefix}",reason="auth_forbidden"}}'
    assert await proc.metric(label) == 3
    assert await module_database.fetchval("SELECT count(*) FROM llm_traces WHERE span_name = 'read-only'") == 0


async def test_a_key_over_its_rate_is_refused_retryably_and_recovers(tenants, module_database):
    proc, key = tenants.proc, tenants.limited
    service = f"limited-{uuid.uuid4().hex[:6]}"
    metadata = (("authorization", f"Bearer {key.secret}"),)
    burst = trace_request([span(f"burst-{i}") for i in range(50)], service)  # a full bucket of 20, then 30 of debt
    await export_grpc(proc.grpc_target, burst, metadata=metadata)

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await export_grpc(proc.grpc_target, trace_request([span("over")], service), metadata=metadata)
    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"{key.prefix}… is over its rate limit of {RATE} items/s" in excinfo.value.details()
    details = dict(excinfo.value.trailing_metadata())["grpc-status-details-bin"]
    info = error_details_pb2.RetryInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(info)
    debt_s = 31 / RATE  # at most this until the bucket holds one token again (less as it refills)
    assert 0 < info.retry_delay.ToTimedelta().total_seconds() <= debt_s

    result = await post(
        f"{proc.http_url}/v1/traces", trace_request([span("over")], service).SerializeToString(), headers=key.bearer
    )
    assert result.status == 429 and 1 <= int(result.headers["Retry-After"]) <= math.ceil(debt_s)
    label = f'observatory_key_refused_requests_total{{key_prefix="{key.prefix}",reason="rate_limited"}}'
    assert await proc.metric(label) == 2
    refused_http = 'observatory_refused_requests_total{reason="rate_limited",signal="traces",transport="http"}'
    assert await proc.metric(refused_http) == 1

    # Recovery, the way exporters do it: the SDK waits out Retry-After itself and its retry lands.
    exporter = HttpSpanExporter(endpoint=f"{proc.http_url}/v1/traces", headers=key.bearer, timeout=10)
    try:
        result = await asyncio.to_thread(exporter.export, sdk_spans(service, ["after-the-wait"]))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert await proc.metric(label) >= 3, "the SDK's first attempt was refused too: it recovered by waiting"
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 51, service)
    assert (
        await module_database.fetchval(
            "SELECT count(*) FROM llm_traces WHERE service_name = $1 AND span_name = 'over'", service
        )
        == 0
    )


async def test_a_revoked_key_stops_at_the_next_key_refresh(tenants, module_database):
    proc = tenants.proc
    conn = await module_database.connect()
    try:
        created = await create_key(conn, "Short Lived")
    finally:
        await conn.close()
    key = Key(created.key, uuid.uuid4())
    refreshes = 'observatory_api_key_refreshes_total{outcome="ok"}'
    service = f"revoked-{uuid.uuid4().hex[:6]}"

    async def exported(protocol: str) -> SpanExportResult:
        if protocol == "grpc":
            exporter = GrpcSpanExporter(endpoint=proc.grpc_target, insecure=True, headers=key.bearer, timeout=5)
        else:
            exporter = HttpSpanExporter(endpoint=f"{proc.http_url}/v1/traces", headers=key.bearer, timeout=5)
        try:
            return await asyncio.to_thread(exporter.export, sdk_spans(service, [f"{protocol}-span"]))
        finally:
            exporter.shutdown()

    async def key_works() -> bool:
        return await exported("grpc") is SpanExportResult.SUCCESS

    await wait_until(key_works, what="the new key loaded")
    revoked = await asyncio.to_thread(cli, module_database, "keys", "revoke", str(created.id))
    assert revoked.returncode == 0, revoked.stderr
    # A refresh in progress now may have read the keys before the revocation; the one after it has not.
    seen = await proc.metric(refreshes)

    async def a_full_refresh_since() -> bool:
        return await proc.metric(refreshes) >= seen + 2

    await wait_until(a_full_refresh_since, what="two key refreshes after the revocation")
    for protocol in ("grpc", "http"):
        assert await exported(protocol) is SpanExportResult.FAILURE, protocol
    assert await proc.metric('observatory_auth_refused_requests_total{reason="auth_invalid"}') >= 2


async def test_a_spooled_request_is_replayed_with_its_project(module_database, tmp_path):
    """A request accepted into the spool and not yet stored when the receiver died is replayed at the
    next start with the project it was sent with (and one spooled before projects existed, with none)."""
    from receiver.pipeline.spool import Spool

    project = uuid.uuid4()
    service = f"spooled-{uuid.uuid4().hex[:6]}"
    spool = Spool(
        tmp_path / "spool",
        max_bytes=10_000_000,
        segment_bytes=1_000_000,
        hand_over=lambda rows, nbytes, done: False,
        materialize=lambda record: None,
        can_hand_over=lambda n: False,
    )
    await spool.open()
    for name, project_bytes in (("with-project", project.bytes), ("before-projects", b"")):
        request = trace_request([span(name)], service).SerializeToString()
        await spool.append(SpoolRecord(signal="traces", request=request, project_id=project_bytes), None, 1)
    await spool.close()  # on disk, never stored: what a kill -9 leaves

    proc = ReceiverProcess(module_database.dsn, tmp_path, pipeline__durability="spool")
    await proc.start()
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)
    rows = await module_database.fetch("SELECT span_name, project_id FROM llm_traces WHERE service_name = $1", service)
    assert {r["span_name"]: r["project_id"] for r in rows} == {"with-project": project, "before-projects": None}
    assert await proc.stop() == 0
