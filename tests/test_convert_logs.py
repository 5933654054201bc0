"""Pure log conversion: timestamps, ids only when valid, bodies of every type, event names, the
validation rules, deterministic record ids and OTLP/JSON with lenient ids."""

from __future__ import annotations

import math

import orjson
import pytest

from receiver import schema
from receiver.convert.common import ConvertOptions
from receiver.convert.logs import convert_logs
from receiver.convert.pgvalues import Uuid, timestamp_from_unix_nanos
from receiver.frontends.decode import parse_json
from receiver.frontends.signals import LOGS
from tests.support.otlp import T0, log_record, log_request, to_otlp_json

RECEIVED = T0 + 5 * 10**9


def rows_of(request, received: int = RECEIVED) -> list[dict[str, object]]:
    converted = convert_logs(request, ConvertOptions(received_unix_nanos=received))
    assert converted.rejected == 0, converted.errors
    return [dict(zip(schema.LOGS_COLUMNS, row, strict=True)) for row in converted.rows]


def one(record, **resource: object) -> dict[str, object]:
    (row,) = rows_of(log_request([record], "svc", **resource))
    return row


def test_timestamps_time_then_observed_then_received():
    row = one(log_record(time_ns=T0, observed_time_unix_nano=T0 + 1000))
    assert row["ts"] == timestamp_from_unix_nanos(T0)
    assert row["observed_ts"] == timestamp_from_unix_nanos(T0 + 1000)
    row = one(log_record(time_ns=T0))
    assert row["observed_ts"] is None
    row = one(log_record(time_ns=0, observed_time_unix_nano=T0 + 7000))
    assert row["ts"] == row["observed_ts"] == timestamp_from_unix_nanos(T0 + 7000)
    row = one(log_record(time_ns=0))
    assert row["ts"] == row["observed_ts"] == timestamp_from_unix_nanos(RECEIVED)
    converted = convert_logs(log_request([log_record(time_ns=0)], "svc"), ConvertOptions())
    assert converted.rejected == 1 and "no time_unix_nano" in converted.errors[0]


@pytest.mark.parametrize(
    ("trace_id", "span_id", "stored_trace", "stored_span"),
    [
        (b"\x11" * 16, b"\x22" * 8, Uuid(b"\x11" * 16), "22" * 8),
        (b"", b"", None, None),
        (bytes(16), bytes(8), None, None),
        (b"\x11" * 8, b"\x22" * 4, None, None),
        (b"\x11" * 16, b"", Uuid(b"\x11" * 16), None),
    ],
)
def test_trace_and_span_ids_only_when_valid_never_rejected(trace_id, span_id, stored_trace, stored_span):
    row = one(log_record(trace_id=trace_id, span_id=span_id))
    assert (row["trace_id"], row["span_id"]) == (stored_trace, stored_span)


@pytest.mark.parametrize(
    ("body", "text", "structured"),
    [
        ("plain \x00 text", "plain \ufffd text", None),
        ("", "", None),
        (42, "42", 42),
        (2.5, "2.5", 2.5),
        (math.nan, '"NaN"', "NaN"),
        (True, "true", True),
        (b"\x00\x01", '"AAE="', "AAE="),
        (["a", 1, {"b": None}], None, ["a", 1, {"b": None}]),
        ({"role": "user", "content": {"parts": ["hi"]}}, None, {"role": "user", "content": {"parts": ["hi"]}}),
        (None, None, None),
    ],
)
def test_bodies_of_every_type(body, text, structured):
    row = one(log_record(body=body))
    if structured is None:
        assert row["body"] == text and row["body_json"] is None
    else:
        assert orjson.loads(row["body_json"]) == structured
        assert row["body"] == row["body_json"]  # the text column holds the JSON text
        if text is not None:
            assert row["body"] == text


def test_event_name_field_then_attribute_and_llm_columns():
    row = one(log_record(event_name="gen_ai.client.inference.operation.details", attributes={"event.name": "other"}))
    assert row["event_name"] == "gen_ai.client.inference.operation.details"
    row = one(
        log_record(attributes={"event.name": "gen_ai.choice", "gen_ai.response.model": "gpt-4o"}),
        **{"gen_ai.provider.name": "OpenAI"},
    )
    assert (row["event_name"], row["provider"], row["model"], row["service_name"]) == (
        "gen_ai.choice",
        "openai",
        "gpt-4o",
        "svc",
    )
    assert orjson.loads(row["attributes"]) == {"event.name": "gen_ai.choice", "gen_ai.response.model": "gpt-4o"}
    row = one(log_record(severity_number=17, severity_text="ERROR", flags=1))
    assert (row["severity_number"], row["severity_text"], row["flags"]) == (17, "ERROR", 1)
    assert row["scope_name"] == "tests"


def test_out_of_range_severity_is_rejected_and_neighbours_land():
    request = log_request([log_record("a"), log_record("b", severity_number=99), log_record("c")], "svc")
    converted = convert_logs(request, ConvertOptions(received_unix_nanos=RECEIVED))
    assert converted.rejected == 1
    assert converted.errors == ["log record 1: severity_number 99 is outside 0..24"]
    assert len(converted.rows) == 2


def test_record_ids_are_deterministic_and_json_equals_protobuf():
    def request(body: str = "hello", service: str = "svc"):
        return log_request([log_record(body, trace_id=b"\x01" * 16, span_id=b"\x02" * 8)], service)

    ids = [r["record_id"] for r in rows_of(request())]
    assert [r["record_id"] for r in rows_of(request())] == ids
    assert [r["record_id"] for r in rows_of(request("other"))] != ids
    assert [r["record_id"] for r in rows_of(request(service="other"))] != ids
    parsed = parse_json(LOGS.request_type, LOGS.envelope, to_otlp_json(request()))
    assert parsed.rejected == 0
    assert rows_of(parsed.message) == rows_of(request())


def test_otlp_json_drops_ids_that_are_not_hex_instead_of_rejecting():
    document = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": str(T0), "body": {"stringValue": "a"}, "traceId": "not-hex", "spanId": 7},
                            {"timeUnixNano": "soon", "body": {"stringValue": "b"}},
                            {"observedTimeUnixNano": T0, "body": {"kvlistValue": {"values": []}}, "severityNumber": 9},
                        ]
                    }
                ]
            }
        ]
    }
    parsed = parse_json(LOGS.request_type, LOGS.envelope, orjson.dumps(document))
    assert parsed.rejected == 1 and parsed.errors[0].startswith("log record 1:")
    rows = rows_of(parsed.message)
    assert [(r["body"], r["trace_id"], r["span_id"]) for r in rows] == [("a", None, None), ("{}", None, None)]
    assert rows[1]["severity_number"] == 9


def test_rows_carry_the_project_and_two_projects_records_are_two_identities():
    import uuid

    request = log_request([log_record()], "svc")
    first, second = uuid.uuid4(), uuid.uuid4()
    rows = {p: convert_logs(request, ConvertOptions(project_id=p)).rows[0] for p in (None, first, second)}
    assert {p: row[schema.LOGS_COLUMNS.index("project_id")] for p, row in rows.items()} == {
        None: None,
        first: first,
        second: second,
    }
    assert len({row[schema.LOGS_COLUMNS.index("record_id")] for row in rows.values()}) == 3
