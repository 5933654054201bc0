"""Logs end to end: the OpenTelemetry SDK's OTLP log exporters (a LoggingHandler on a standard
Python logger, and the Logs API for events) and raw OTLP through a real receiver into PostgreSQL,
correlated with the spans they were emitted in."""

from __future__ import annotations

import logging
import time
import uuid

import orjson
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.support.idempotency import assert_retry_stored_once, duplicates_skipped
from tests.support.otlp import (
    T0,
    export_grpc,
    export_http,
    log_record,
    log_request,
    post,
    sdk_log_exporter,
    sdk_tracer_provider,
)

ROWS = "SELECT * FROM llm_logs WHERE service_name = $1"
COUNT = "SELECT count(*) FROM llm_logs WHERE service_name = $1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's LoggingHandler is deprecated but common
@pytest.mark.parametrize(("protocol", "processor"), [("grpc", "batch"), ("http", "simple")])
async def test_sdk_logs_are_stored_and_join_their_spans_by_trace_id(receiver, module_database, protocol, processor):
    service = unique(f"logs-{protocol}")
    tracer_provider = sdk_tracer_provider(protocol, receiver, service)
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    exporter = sdk_log_exporter(protocol, receiver)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter) if processor == "batch" else SimpleLogRecordProcessor(exporter)
    )
    std_logger = logging.getLogger(f"tests.app.{service}")
    std_logger.propagate = False
    std_logger.setLevel(logging.INFO)
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    std_logger.addHandler(handler)
    events = logger_provider.get_logger("tests.events", "3.1")
    try:
        tracer = tracer_provider.get_tracer("tests")
        with tracer.start_as_current_span("chat gpt-4o") as span:
            std_logger.warning("calling %s", "gpt-4o", extra={"gen_ai.request.model": "gpt-4o", "attempt": 2})
            events.emit(
                event_name="gen_ai.choice",
                body={"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"},
                attributes={"gen_ai.provider.name": "openai"},
                severity_number=SeverityNumber.INFO,
            )
        std_logger.info("outside any span")
    finally:
        std_logger.removeHandler(handler)
        logger_provider.shutdown()
        tracer_provider.shutdown()
    ctx = span.get_span_context()

    await module_database.wait_for_count(COUNT, 3, service)
    joined = await module_database.fetch(
        "SELECT l.*, t.span_name FROM llm_logs l "
        "JOIN llm_traces t ON l.trace_id = t.trace_id AND l.span_id = t.span_id "
        "WHERE l.service_name = $1 ORDER BY l.ts",
        service,
    )
    assert [r["span_name"] for r in joined] == ["chat gpt-4o", "chat gpt-4o"]
    warning, event = joined
    assert warning["trace_id"] == uuid.UUID(int=ctx.trace_id) and warning["span_id"] == f"{ctx.span_id:016x}"
    assert (warning["severity_number"], warning["severity_text"]) == (13, "WARN")
    assert warning["body"] == "calling gpt-4o" and warning["body_json"] is None
    assert warning["model"] == "gpt-4o" and warning["event_name"] is None
    assert warning["observed_ts"] is not None and warning["ts"] <= warning["observed_ts"]
    attributes = orjson.loads(warning["attributes"])
    assert attributes["attempt"] == 2 and attributes["code.function.name"].startswith("test_sdk_logs")
    assert warning["scope_name"] == f"tests.app.{service}"

    assert event["event_name"] == "gen_ai.choice"
    assert event["provider"] == "openai" and event["severity_number"] == 9
    assert orjson.loads(event["body_json"]) == {
        "index": 0,
        "message": {"role": "assistant", "content": "Hello!"},
        "finish_reason": "stop",
    }
    assert orjson.loads(event["body"]) == orjson.loads(event["body_json"])
    assert (event["scope_name"], event["scope_version"]) == ("tests.events", "3.1")
    content = await module_database.fetchval(
        "SELECT body_json->'message'->>'content' FROM llm_logs WHERE service_name = $1 AND event_name = $2",
        service,
        "gen_ai.choice",
    )
    assert content == "Hello!"  # a map body stays structured and queryable

    (outside,) = await module_database.fetch(f"{ROWS} AND trace_id IS NULL", service)
    assert outside["body"] == "outside any span" and outside["span_id"] is None
    assert outside["severity_text"] == "INFO" and outside["severity_number"] == 9


def mixed_request(service: str, trace_id: bytes):
    return log_request(
        [
            log_record("ok 1", trace_id=trace_id, span_id=b"\x05" * 8),
            log_record("bad severity", severity_number=42),
            log_record("ok 2", trace_id=b"\x01\x02", span_id=bytes(8)),  # invalid ids: NULL, still stored
            log_record("negative severity", severity_number=-1),
            log_record({"k": [1, 2]}, time_ns=0, observed_time_unix_nano=T0 + 1),
        ],
        service,
    )


@pytest.mark.parametrize("transport", ["grpc", "http-protobuf", "http-json-gzip"])
async def test_invalid_records_are_rejected_by_partial_success_and_valid_ones_land(
    receiver, module_database, transport
):
    service = unique(f"mixed-{transport}")
    trace_id = uuid.uuid4().bytes
    before = await receiver.metric("otelcol_receiver_accepted_log_records_total")
    request = mixed_request(service, trace_id)
    if transport == "grpc":
        response = await export_grpc(receiver.grpc_target, request)
    else:
        result, response = await export_http(
            receiver.http_url, request, json=transport.startswith("http-json"), gzip=transport.endswith("gzip")
        )
        assert result.status == 200
    partial = response.partial_success
    assert partial.rejected_log_records == 2
    assert partial.error_message == (
        "2 log record(s) rejected: log record 1: severity_number 42 is outside 0..24; "
        "log record 3: severity_number -1 is outside 0..24"
    )
    await module_database.wait_for_count(COUNT, 3, service)
    rows = {r["body"]: r for r in await module_database.fetch(ROWS, service)}
    assert set(rows) == {"ok 1", "ok 2", '{"k":[1,2]}'}
    assert rows["ok 1"]["trace_id"] == uuid.UUID(bytes=trace_id) and rows["ok 1"]["span_id"] == "05" * 8
    assert rows["ok 2"]["trace_id"] is None and rows["ok 2"]["span_id"] is None
    structured = rows['{"k":[1,2]}']
    assert orjson.loads(structured["body_json"]) == {"k": [1, 2]}
    assert structured["ts"] == structured["observed_ts"]
    assert await receiver.metric("otelcol_receiver_accepted_log_records_total") - before == 3
    assert await receiver.metric("otelcol_receiver_refused_log_records_total") >= 2


async def test_otlp_json_with_ids_that_are_not_hex_keeps_the_record(receiver, module_database):
    service = unique("json-ids")
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(T0),
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"stringValue": "upstream failed"},
                                "traceId": "this-is-not-hex",
                                "spanId": "0102030405060708",
                                "eventName": "app.failure",
                            },
                            {"timeUnixNano": "noon", "body": {"stringValue": "unparseable time"}},
                        ]
                    }
                ],
            }
        ]
    }
    result = await post(f"{receiver.http_url}/v1/logs", orjson.dumps(body), "application/json")
    assert result.status == 200
    partial = orjson.loads(result.body)["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "log record 1:" in partial["errorMessage"]
    await module_database.wait_for_count(COUNT, 1, service)
    (row,) = await module_database.fetch(ROWS, service)
    assert (row["body"], row["trace_id"], row["span_id"]) == ("upstream failed", None, "0102030405060708")
    assert (row["severity_number"], row["severity_text"], row["event_name"]) == (17, "ERROR", "app.failure")


async def test_record_without_any_time_is_stamped_with_the_receive_time(receiver, module_database):
    service = unique("no-time")
    sent_after = time.time_ns()
    await export_grpc(receiver.grpc_target, log_request([log_record("when?", time_ns=0)], service))
    received_before = time.time_ns()
    await module_database.wait_for_count(COUNT, 1, service)
    (row,) = await module_database.fetch(ROWS, service)
    stamp = row["ts"].timestamp() * 1e9
    assert sent_after - 1000 <= stamp <= received_before and row["observed_ts"] == row["ts"]


async def test_same_request_exported_twice_is_stored_once(receiver, module_database):
    service = unique("retry")
    request = log_request([log_record(f"line {i}", time_ns=T0 + i, attributes={"i": i}) for i in range(40)], service)
    before = await duplicates_skipped(receiver, "llm_logs")
    await export_grpc(receiver.grpc_target, request)
    await module_database.wait_for_count(COUNT, 40, service)
    result, _ = await export_http(receiver.http_url, request, json=True)  # the retry, as OTLP/JSON
    assert result.status == 200
    await assert_retry_stored_once(receiver, module_database, "llm_logs", "record_id", service, 40, before)
