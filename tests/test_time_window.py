"""The accepted time window, end to end: real receivers, real PostgreSQL / TimescaleDB, OTLP over HTTP.

One request of 2,000 spans dated at random between 1970 and 2100 (a broken clock, a replay tool, an
attacker) must leave no chunk or partition outside the window, answer with the right rejected_spans and a
message naming the window, and land its in-window spans, including those a few seconds ahead or behind
the receiver's clock. Metrics and logs follow the same rule. A span dated inside the window but in an
already-compressed TimescaleDB chunk is stored and readable, and a changed retention policy is honoured.
A spooled request is replayed with the window it was acknowledged with.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from receiver.storage import partitions
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import migrate
from receiver.telemetry.metrics import Metrics
from tests.conftest import create_database, drop_database
from tests.support.load import stored_spans
from tests.support.otlp import (
    export_http,
    gauge,
    log_record,
    log_request,
    metric_request,
    number_point,
    span,
    trace_request,
)
from tests.support.process import ReceiverProcess
from tests.test_reliability import TableLock

SECOND = 10**9
DAY = 86400 * SECOND
RETENTION_DAYS = 90
SKEW_S = 600  # limits.max_future_skew_s default
YEAR_2100 = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * SECOND
# In the window: a few seconds either way of the receiver's clock, and back to the edge of retention.
IN_WINDOW_OFFSETS = [-5 * SECOND, -SECOND, SECOND, 5 * SECOND, 60 * SECOND, 9 * 60 * SECOND, -3600 * SECOND]
IN_WINDOW_OFFSETS += [-d * DAY for d in (1, 2, 7, 10, 30, 60, 89)]


def timestamp(unix_ns: int) -> datetime:
    """As PostgreSQL stores it: microseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_ns // 1000)


def wild_request(service: str, now_ns: int, total: int = 2000) -> tuple[object, set, int, int]:
    """(request, in-window span ids, spans too old, spans too far ahead): random start times between 1970
    and 2100, none within an hour of the window's edges (the receiver's clock reads a little later).
    The first span is from 1971 (a broken clock), so the message shows both kinds of refusal."""
    rng = random.Random(16)
    earliest, latest = now_ns - RETENTION_DAYS * DAY, now_ns + SKEW_S * SECOND
    spans, inside, old, new = [], set(), 1, 0
    for offset in IN_WINDOW_OFFSETS:
        s = span(f"inside {offset // SECOND}s", start_ns=now_ns + offset)
        spans.append(s)
        inside.add((uuid.UUID(bytes=s.trace_id), s.span_id.hex()))
    while len(spans) < total - 1:
        start = rng.randrange(SECOND, YEAR_2100)
        if min(abs(start - earliest), abs(start - latest)) < 3600 * SECOND or earliest <= start <= latest:
            continue
        spans.append(span("wild", start_ns=start))
        old += start < earliest
        new += start > latest
    rng.shuffle(spans)
    spans.insert(0, span("broken clock", start_ns=int(datetime(1971, 3, 2, 4, 5, 6, tzinfo=UTC).timestamp()) * SECOND))
    return trace_request(spans, service), inside, old, new


async def refused_by_reason(proc: ReceiverProcess, noun: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (await proc.metrics()).items():
        if key.startswith(f"otelcol_receiver_refused_{noun}_total{{"):
            reason = key.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0) + value
    return out


async def send_wild_request(proc: ReceiverProcess, database, service: str) -> tuple[int, set]:
    """Send the wild request over OTLP/HTTP; check the answer, the rows and the metrics. Returns the
    receive time (as the test saw it) and the in-window span ids."""
    now_ns = time.time_ns()
    request, inside, old, new = wild_request(service, now_ns)
    result, response = await export_http(proc.http_url, request)
    assert result.status == 200, result.body
    partial = response.partial_success
    assert partial.rejected_spans == old + new == 2000 - len(inside), (partial.rejected_spans, old, new)
    assert f"{old + new} span(s) rejected: span " in partial.error_message
    assert (
        f"span 0 ('broken clock', trace {request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()}): "
        f"start time 1971-03-02T04:05:06Z is older than the {RETENTION_DAYS}-day retention (accepted: "
    ) in partial.error_message
    assert f"is more than {SKEW_S} s ahead of the receive time (limits.max_future_skew_s)" in partial.error_message
    await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", len(inside), service)
    stored, rows = await stored_spans(database, service)
    assert stored == inside and rows == len(inside)
    refused = await refused_by_reason(proc, "spans")
    assert refused == {"older_than_retention": old, "beyond_future_skew": new}, refused
    return now_ns, inside


async def test_wild_timestamps_native_no_partition_outside_the_window(database, tmp_path):
    # The receiver's own maintenance is off so this test's pass is the one that moves rows out of DEFAULT.
    proc = ReceiverProcess(database.dsn, tmp_path, maintenance__enabled="false")
    await proc.start()
    service = f"wild-{uuid.uuid4().hex[:6]}"
    now_ns, _inside = await send_wild_request(proc, database, service)

    maintenance = Maintenance(database.connect, "native", MaintenanceSettings(max_default_days_per_pass=366), Metrics())
    try:
        report = await maintenance.run_once()
    finally:
        await maintenance.shutdown()
    assert report.ok, report.errors
    assert report.partitions.rows_expired == {}, "nothing older than the retention was stored to be deleted"
    today = datetime.fromtimestamp(now_ns / SECOND, UTC).date()
    window_days = {today - timedelta(days=d) for d in range(RETENTION_DAYS + 1)}
    window_days |= {datetime.fromtimestamp((now_ns + SKEW_S * SECOND) / SECOND, UTC).date()}
    ahead = {today + timedelta(days=d) for d in range(MaintenanceSettings().partition_days_ahead + 1)}
    conn = await database.connect()
    try:
        days = (await partitions.list_partitions(conn, "llm_traces")).days
    finally:
        await conn.close()
    assert days - ahead <= window_days, sorted(days - ahead - window_days)
    assert await database.fetchval("SELECT count(*) FROM llm_traces_default") == 0

    # Metrics and logs: their own retention (37 days); a log record without any time keeps the receive time.
    points = [number_point(1, now_ns - 40 * DAY), number_point(2, now_ns + 3600 * SECOND), number_point(3, now_ns)]
    result, response = await export_http(proc.http_url, metric_request([gauge("g", points)], service))
    assert result.status == 200 and response.partial_success.rejected_data_points == 2
    assert "older than the 37-day retention" in response.partial_success.error_message
    records = [
        log_record("old", now_ns - 38 * DAY),
        log_record("ahead", now_ns + 3600 * SECOND),
        log_record("observed ahead", 0, observed_time_unix_nano=now_ns + 3600 * SECOND),
        log_record("no time", 0),
        log_record("now", now_ns + 2 * SECOND),
    ]
    result, response = await export_http(proc.http_url, log_request(records, service))
    assert result.status == 200 and response.partial_success.rejected_log_records == 3
    assert "log record 2: observed time " in response.partial_success.error_message
    await database.wait_for_count("SELECT count(*) FROM llm_metrics WHERE service_name = $1", 1, service)
    await database.wait_for_count("SELECT count(*) FROM llm_logs WHERE service_name = $1", 2, service)
    bodies = {r["body"] for r in await database.fetch("SELECT body FROM llm_logs WHERE service_name = $1", service)}
    assert bodies == {"no time", "now"}
    assert await refused_by_reason(proc, "metric_points") == {"older_than_retention": 1, "beyond_future_skew": 1}
    assert await refused_by_reason(proc, "log_records") == {"older_than_retention": 1, "beyond_future_skew": 2}
    assert await proc.stop() == 0


@pytest.fixture
async def ts_database(timescale_cluster):
    db = await create_database(timescale_cluster)
    yield db
    await drop_database(db)


@pytest.mark.timescale
async def test_wild_timestamps_timescale_no_chunk_outside_the_window(ts_database, tmp_path):
    proc = ReceiverProcess(ts_database.dsn, tmp_path)
    await proc.start()
    service = f"wild-{uuid.uuid4().hex[:6]}"
    now_ns, _inside = await send_wild_request(proc, ts_database, service)
    chunks = await ts_database.fetch(
        "SELECT range_start, range_end FROM timescaledb_information.chunks WHERE hypertable_name = 'llm_traces'"
    )
    earliest = datetime.fromtimestamp((now_ns - RETENTION_DAYS * DAY) / SECOND, UTC)
    latest = datetime.fromtimestamp((now_ns + SKEW_S * SECOND) / SECOND, UTC)
    outside = [c for c in chunks if c["range_end"] <= earliest or c["range_start"] > latest]
    assert not outside, outside
    # Every chunk holds a stored span: none was made for a refused one (chunks are 6 h long, so the
    # in-window spans of one day may take two when they straddle a chunk boundary).
    holding = await ts_database.fetchval(
        "SELECT count(*) FROM timescaledb_information.chunks c WHERE c.hypertable_name = 'llm_traces' "
        "AND EXISTS (SELECT 1 FROM llm_traces t WHERE t.ts >= c.range_start AND t.ts < c.range_end)"
    )
    assert len(chunks) == holding, "a chunk without a stored span: made for a span outside the window"
    assert await proc.stop() == 0


@pytest.mark.timescale
async def test_timescale_policy_is_honoured_and_late_spans_land_in_compressed_chunks(ts_database, tmp_path):
    conn = await ts_database.connect()
    try:
        await migrate(conn, "timescale")
        # An operator's own policy: 30 days instead of migration 007's 90.
        await conn.execute("SELECT remove_retention_policy('llm_traces')")
        await conn.execute("SELECT add_retention_policy('llm_traces', drop_after => INTERVAL '30 days')")
        proc = ReceiverProcess(ts_database.dsn, tmp_path)
        await proc.start()
        service = f"late-{uuid.uuid4().hex[:6]}"
        ten_days_ago = time.time_ns() - 10 * DAY
        first = span("first", start_ns=ten_days_ago)
        result, response = await export_http(proc.http_url, trace_request([first], service))
        assert result.status == 200 and not response.HasField("partial_success")
        await ts_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 1, service)
        compressed = await conn.fetchval(
            "SELECT count(*) FROM (SELECT compress_chunk(c) FROM show_chunks('llm_traces', older_than => "
            "INTERVAL '7 days') c) done"
        )
        assert compressed == 1
        chunk_of = (
            "SELECT is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'llm_traces' AND range_start <= $1 AND range_end > $1"
        )
        assert await conn.fetchval(chunk_of, timestamp(ten_days_ago)) is True

        late = span("late, into the compressed chunk", start_ns=ten_days_ago + 60 * SECOND)
        expired = span("older than the operator's 30 days", start_ns=time.time_ns() - 40 * DAY)
        result, response = await export_http(proc.http_url, trace_request([late, expired], service))
        assert result.status == 200 and response.partial_success.rejected_spans == 1
        assert "is older than the 30-day retention" in response.partial_success.error_message
        await ts_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)
        row = await conn.fetchrow("SELECT span_name, ts FROM llm_traces WHERE span_id = $1", late.span_id.hex())
        assert row["span_name"] == "late, into the compressed chunk"
        assert row["ts"] == timestamp(ten_days_ago + 60 * SECOND)
        assert await proc.stop() == 0
    finally:
        await conn.close()


async def test_spool_replay_uses_the_window_the_request_was_acknowledged_with(database, tmp_path):
    """Acknowledged under max_future_skew_s = 600, replayed by a receiver restarted with 1: still stored."""
    settings = {"pipeline__durability": "spool"}
    proc = ReceiverProcess(database.dsn, tmp_path, **settings)
    await proc.start()
    service = f"replay-{uuid.uuid4().hex[:6]}"
    ahead = span("five minutes ahead", start_ns=time.time_ns() + 300 * SECOND)
    now = span("now")
    async with TableLock(database.dsn) as lock:
        result, response = await export_http(proc.http_url, trace_request([ahead, now], service))
        assert result.status == 200 and not response.HasField("partial_success")
        await proc.kill()  # acknowledged, in the spool only: the table was locked
        await lock.release()
    assert await database.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == 0
    restarted = ReceiverProcess(database.dsn, tmp_path, limits__max_future_skew_s=1, **settings)
    await restarted.start()
    await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)
    # The same request sent live now is judged by the new window.
    again = span("five minutes ahead, live", start_ns=time.time_ns() + 300 * SECOND)
    result, response = await export_http(restarted.http_url, trace_request([again], service))
    assert response.partial_success.rejected_spans == 1
    assert await restarted.stop() == 0
