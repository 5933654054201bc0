"""The native logs and metrics decoder against the reference, row by row and column by column.

The reference is upb's parse followed by `logs.convert_logs` / `metrics.convert_metrics`; the native path
is `convert_logs_bytes` / `convert_metrics_bytes` with the C decoder (_fastotlp_signals.c). For every
request both must agree: the same rows (every column, same types, the row identities included), the same
rejections, messages, window counts and altered-value statistics, or both refuse the bytes (see
tests/support/differential.py).

Requests: hand-written edge cases for every rule of the two converters (every metric type, every
attribute value kind, missing and invalid ids and times, the time window, oversize values), seeded
random requests (tests/fuzz/targets.RandomTelemetry), the same requests re-encoded with wire-level
deviations (unknown fields, fields repeated, split or out of order, padded varints), and random byte
damage. Identities are hashed from the item's own bytes when they are what upb's serializer writes
(what SDKs send) and from upb's serialization otherwise: both branches are checked to be taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import struct
import tracemalloc
import uuid
from typing import Any, ClassVar

import orjson
import pytest

from receiver import schema
from receiver.convert import genai, identity, logs_metrics_bytes
from receiver.convert.budget import DecodeBudget, DecodeLimits, LimitExceeded
from receiver.convert.common import Converted, WireFormatError
from receiver.convert.logs_metrics_bytes import (
    DECODER_KEYS,
    NATIVE_STATUS,
    SCHEMA,
    convert_logs_bytes,
    convert_metrics_bytes,
    installed_schema,
    native_available,
)
from receiver.convert.window import TimeWindow
from receiver.frontends.decode import decode_request
from receiver.frontends.signals import LOGS, METRICS
from receiver.pipeline.memory import current_rss_bytes
from tests.fuzz.targets import RandomTelemetry
from tests.support import generate, wire
from tests.support.differential import (
    OPTIONS,
    SIGNAL_COLUMNS,
    SIGNAL_JSON_COLUMNS,
    assert_same_converted,
    assert_same_signal,
    signal_native,
    signal_reference,
)
from tests.support.otlp import to_otlp_json
from tests.support.wire import (
    I64,
    any_array,
    any_double,
    any_int,
    any_kvlist,
    any_string,
    encode_tag,
    encode_varint,
    field_fixed32,
    field_fixed64,
    field_group,
    field_len,
    field_varint,
    key_value,
)

pytestmark = pytest.mark.skipif(not native_available(), reason=NATIVE_STATUS)

T0 = wire.T0
DAY_S = 86400
DAY_NS = DAY_S * 10**9
RECEIVED = T0 + 6 * DAY_NS
# Received 6 days after T0, items accepted from 3 days before to 3 days after.
WINDOWED = dataclasses.replace(
    OPTIONS,
    received_unix_nanos=RECEIVED,
    windows={
        "logs": TimeWindow(retention_s=3 * DAY_S, max_future_skew_s=3 * DAY_S),
        "metrics": TimeWindow(retention_s=3 * DAY_S, max_future_skew_s=3 * DAY_S),
    },
)
SMALL = dataclasses.replace(WINDOWED, max_attribute_bytes=8)
EVERY_OPTIONS = (OPTIONS, WINDOWED, SMALL)


def same(signal: str, body: bytes, *options_list: Any) -> Converted | None:
    """Both paths agree under every options given (default: all of EVERY_OPTIONS); the first's result."""
    results = [assert_same_signal(signal, body, options) for options in options_list or EVERY_OPTIONS]
    return results[0]


def envelope(*items: bytes, resource: bytes | None = None, scope: bytes | None = None) -> bytes:
    """A request of one resource and one scope holding `items` (logs and metrics share the layout: 1 the
    resource, 2 the scopes or items, 3 the schema URL)."""
    return wire.request(wire.resource_spans(wire.scope_spans(*items, scope=scope), resource=resource))


def pairs(field: int, *kvs: bytes) -> bytes:
    return b"".join(field_len(field, kv) for kv in kvs)


def rows_of(converted: Converted | None, signal: str) -> list[dict[str, Any]]:
    assert converted is not None
    columns = schema.LOGS_COLUMNS if signal == "logs" else schema.METRICS_COLUMNS
    return [dict(zip(columns, row, strict=True)) for row in converted.rows]


def reserialized(signal: str, body: bytes, options: Any = OPTIONS) -> int:
    """How many identities the native decoder hashed from upb's serialization (not the bytes as sent)."""
    decoder = logs_metrics_bytes._DECODER
    decode = decoder.decode_logs if signal == "logs" else decoder.decode_metrics
    window = options.window(signal)
    earliest, latest = window.bounds(options.received_unix_nanos)
    result = decode(
        body, options.max_attribute_bytes, 5, 1 << 62, earliest, latest, options.received_unix_nanos,
        lambda what, ns: window.problem(what, ns, options.received_unix_nanos), None, None,
    )  # fmt: skip
    return result[-1]


# -- logs ------------------------------------------------------------------------------------------


def record(
    *extra: bytes,
    time: int = T0,
    observed: int = 0,
    severity: int = 9,
    trace_id: bytes = b"\x01" * 16,
    span_id: bytes = b"\x02" * 8,
) -> bytes:
    """A LogRecord's fields, in field order; `extra` follows (attributes: field 6, body: 5)."""
    out = field_fixed64(1, time) if time else b""
    out += field_varint(2, severity & (2**64 - 1)) if severity else b""
    out += field_len(9, trace_id) if trace_id else b""
    out += field_len(10, span_id) if span_id else b""
    out += field_fixed64(11, observed) if observed else b""
    return out + b"".join(extra)


def log_attrs(*kvs: bytes) -> bytes:
    return pairs(6, *kvs)


def test_a_genai_event_through_both_paths():
    body = envelope(
        record(
            field_len(3, b"INFO"),
            log_attrs(
                key_value(b"event.name", any_string(b"gen_ai.choice")),
                key_value(b"gen_ai.provider.name", any_string(b"OpenAI")),
                key_value(b"gen_ai.response.model", any_string(b"gpt-4o-mini-2024-07-18")),
                key_value(b"code.line.number", any_int(42)),
            ),
            field_len(5, any_kvlist(key_value(b"index", any_int(0)), key_value(b"message", any_string(b"hi")))),
            field_fixed32(8, 1),
        ),
        resource=pairs(1, key_value(b"service.name", any_string(b"chat-svc"))),
        scope=field_len(1, b"opentelemetry.instrumentation.openai") + field_len(2, b"1.0"),
    )
    (row,) = rows_of(same("logs", body), "logs")
    assert (row["event_name"], row["provider"], row["model"]) == ("gen_ai.choice", "openai", "gpt-4o-mini-2024-07-18")
    assert (row["service_name"], row["scope_version"], row["severity_text"]) == ("chat-svc", "1.0", "INFO")
    assert orjson.loads(row["body_json"]) == {"index": 0, "message": "hi"} and row["body"] == row["body_json"]
    assert row["trace_id"].bytes == b"\x01" * 16 and row["span_id"] == "02" * 8 and row["flags"] == 1


@pytest.mark.parametrize(
    "severity, accepted",
    [(0, True), (24, True), (25, False), (-1, False), (2**31, False), (2**32 + 3, True), (2**63, True)],
)
def test_severity_numbers_outside_the_log_data_model_are_refused(severity, accepted):
    converted = same("logs", envelope(record(severity=severity), record(severity=9)))
    assert converted is not None and (converted.rejected == 0) == accepted


def test_times_window_and_the_receive_time_stamp():
    old, new, inside = RECEIVED - 4 * DAY_NS, RECEIVED + 4 * DAY_NS, RECEIVED - DAY_NS
    body = envelope(
        record(time=old),
        record(time=new),
        record(time=0, observed=old),
        record(time=0, observed=inside),
        record(time=inside, observed=old),  # the stored time decides
        record(time=0),  # no time at all: stamped with the receive time, or refused without one
        *[record(time=1 + i) for i in range(6)],  # more refusals than messages
    )
    windowed = same("logs", body, WINDOWED, SMALL)
    assert windowed is not None and (windowed.too_old, windowed.too_new, len(windowed.rows)) == (8, 1, 3)
    assert len(windowed.errors) == 5 and "observed time" in windowed.errors[2]
    unwindowed = same("logs", body, OPTIONS)
    assert unwindowed is not None and unwindowed.rejected == 1 and "no time_unix_nano" in unwindowed.errors[0]


@pytest.mark.parametrize(
    "body_value",
    [
        any_string('é\x00€ "\\\n'.encode() + b"x" * 20),
        any_string(b""),
        b"",  # a body with no value set: NULL, as an absent body
        field_varint(8, 3),  # string_value_strindex: JSON null
        field_len(7, bytes(range(30))),  # bytes: base64, capped
        any_double(math.nan),
        any_double(-0.0),
        any_int(-(2**63)),
        field_varint(2, 1),
        any_array(any_string(b"a"), any_double(1e-05), any_kvlist(key_value(b"k\x00", any_string(b"v")))),
        any_kvlist(key_value(b"a", any_int(1)), key_value(b"a", any_int(2))),  # a later duplicate wins
        any_string(b"s") + any_int(7),  # the oneof: the last member set wins
        any_array(any_int(1)) + any_string(b"replaced array"),
    ],
)
def test_every_body_kind(body_value):
    same(
        "logs",
        envelope(record(field_len(5, body_value)), record(field_len(5, any_string(b"a")) + field_len(5, body_value))),
    )


def test_ids_flags_and_text_fields():
    body = envelope(
        record(trace_id=b"\x01" * 15, span_id=b"\x02" * 9),
        record(trace_id=bytes(16), span_id=bytes(8)),
        record(trace_id=b"", span_id=b"", severity=0),
        record(field_fixed32(8, 2**31 + 5), field_len(3, b"WARN\x00ING"), field_len(12, b"my.event")),
        record(field_len(12, b""), log_attrs(key_value(b"event.name", any_int(5)))),
        record(log_attrs(key_value(b"event.name", any_array(any_string(b"x"))))),
    )
    rows = rows_of(same("logs", body), "logs")
    assert [(r["trace_id"], r["span_id"]) for r in rows[:3]] == [(None, None)] * 3
    assert rows[3]["flags"] == -(2**31) + 5 and rows[3]["severity_text"] == "WARN\ufffdING"
    assert [r["event_name"] for r in rows[3:]] == ["my.event", "5", None]


def test_resource_and_scope_headers_wherever_they_come_and_however_often():
    resource = pairs(
        1, key_value(b"service.name", any_string(b"svc")), key_value(b"gen_ai.system", any_string(b"anthropic"))
    )
    scope_logs = field_len(2, record()) + field_len(1, field_len(1, b"scope")) + field_len(3, b"https://scope")
    body = wire.request(
        field_len(2, scope_logs) + field_len(1, resource) + field_len(3, b"https://schema"),  # resource last
        field_len(1, resource) + field_len(1, pairs(1, key_value(b"more", any_int(1)))) + field_len(2, scope_logs),
        field_len(2, field_len(2, record())),  # no resource, no scope
        field_len(1, resource),  # no scopes: converted (and counted), no rows
    )
    converted = same("logs", body)
    rows = rows_of(converted, "logs")
    assert [(r["service_name"], r["provider"], r["scope_name"]) for r in rows] == [
        ("svc", "anthropic", "scope"),
        ("svc", "anthropic", "scope"),
        (None, None, None),
    ]
    assert len({r["record_id"] for r in rows}) == 3  # same record, other resource or scope: another row
    assert reserialized("logs", body) >= 1  # the resource sent in two pieces: upb merges, then serializes


def test_identities_match_hashlib_across_block_sizes_and_projects():
    """Records of every length around BLAKE2b's 128-byte blocks, with and without a project."""
    project = uuid.uuid4()
    body = envelope(*[record(field_len(5, any_string(b"x" * n))) for n in range(0, 300, 7)])
    for options in (OPTIONS, dataclasses.replace(OPTIONS, project_id=project)):
        rows = rows_of(same("logs", body, options), "logs")
        assert len({r["record_id"] for r in rows}) == len(rows)
        assert {r["project_id"] for r in rows} == {options.project_id}
    assert rows_of(signal_native("logs", body, OPTIONS), "logs")[0]["record_id"] != rows[0]["record_id"]
    prefix = identity.scope_prefix(
        identity.resource_prefix(identity.LOGS_DOMAIN, _Empty(), "", project.bytes), _Empty(), ""
    )
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    first = LogRecord.FromString(record(field_len(5, any_string(b""))))
    assert rows[0]["record_id"].bytes == identity.item_id(prefix, first)


class _Empty:
    def SerializeToString(self, deterministic: bool = False) -> bytes:
        return b""


def test_oversize_values_and_nul_are_cut_and_counted():
    big = "é😀".encode() * 40
    body = envelope(
        record(
            field_len(3, big),
            field_len(12, big + b"\x00"),
            log_attrs(key_value(big, any_string(big)), key_value(b"b", field_len(7, big))),
            field_len(5, any_string(big)),
        ),
        resource=pairs(1, key_value(b"service.name", any_string(big))),
        scope=field_len(1, big) + field_len(2, big),
    )
    for limit in (0, 1, 3, 5, 7, 64):
        same("logs", body, dataclasses.replace(OPTIONS, max_attribute_bytes=limit))


@pytest.mark.parametrize(
    "where",
    ["severity_text", "event_name", "attribute key", "attribute value", "body", "rejected record", "scope attributes",
     "resource schema_url", "entity ref", "replaced body"],
)  # fmt: skip
def test_invalid_utf8_anywhere_refuses_the_request_like_upb(where):
    bad = b"\xff\xfe"
    parts = {
        "severity_text": envelope(record(field_len(3, bad))),
        "event_name": envelope(record(field_len(12, bad))),
        "attribute key": envelope(record(log_attrs(key_value(bad, any_int(1))))),
        "attribute value": envelope(record(log_attrs(key_value(b"k", any_array(any_string(bad)))))),
        "body": envelope(record(field_len(5, any_kvlist(key_value(b"k", any_string(bad)))))),
        "rejected record": envelope(record(log_attrs(key_value(b"k", any_string(bad))), severity=99)),
        "scope attributes": envelope(record(), scope=pairs(3, key_value(bad, any_int(1)))),
        "resource schema_url": wire.request(wire.resource_spans(wire.scope_spans(record()), extra=field_len(3, bad))),
        "entity ref": envelope(record(), resource=field_len(3, field_len(3, bad))),
        "replaced body": envelope(record(field_len(5, any_string(bad) + any_int(1)))),
    }
    assert same("logs", parts[where], OPTIONS) is None


# -- metrics ---------------------------------------------------------------------------------------


def metric(name: bytes, kind: int, data: bytes, description: bytes = b"", unit: bytes = b"") -> bytes:
    out = field_len(1, name) if name else b""
    out += field_len(2, description) if description else b""
    out += field_len(3, unit) if unit else b""
    return out + field_len(kind, data)


GAUGE, SUM, HISTOGRAM, EXPONENTIAL, SUMMARY = 5, 7, 9, 10, 11


def points(*bodies: bytes, temporality: int = 0, monotonic: bool = False) -> bytes:
    out = pairs(1, *bodies)
    out += field_varint(2, temporality & (2**64 - 1)) if temporality else b""
    return out + (field_varint(3, 1) if monotonic else b"")


def number(*extra: bytes, time: int = T0, start: int = T0 - 10**9, value: bytes | None = None) -> bytes:
    out = field_fixed64(2, start) if start else b""
    out += field_fixed64(3, time) if time else b""
    out += value if value is not None else field_fixed64(4, struct.unpack("<Q", struct.pack("<d", 1.5))[0])
    return out + b"".join(extra)


def double(number_: int, value: float) -> bytes:
    return encode_tag(number_, I64) + struct.pack("<d", value)


def packed_doubles(number_: int, values: list[float]) -> bytes:
    return field_len(number_, b"".join(struct.pack("<d", v) for v in values))


def packed_fixed64(number_: int, values: list[int]) -> bytes:
    return field_len(number_, b"".join(v.to_bytes(8, "little") for v in values))


def packed_varints(number_: int, values: list[int]) -> bytes:
    return field_len(number_, b"".join(encode_varint(v) for v in values))


def histogram(counts: list[int], bounds: list[float], *extra: bytes, count: int = 3, time: int = T0) -> bytes:
    out = field_fixed64(2, T0 - 10**9) + field_fixed64(3, time) + field_fixed64(4, count)
    out += packed_fixed64(6, counts) if counts else b""
    return out + (packed_doubles(7, bounds) if bounds else b"") + b"".join(extra)


def exponential(*extra: bytes, scale: int = 3, threshold: float = 0.0, time: int = T0) -> bytes:
    out = field_fixed64(2, T0 - 10**9) + field_fixed64(3, time) + field_fixed64(4, 5)
    out += field_varint(6, ((scale << 1) ^ (scale >> 31)) & 0xFFFFFFFF) if scale else b""
    return out + b"".join(extra) + (double(14, threshold) if threshold else b"")


def buckets(offset: int, counts: list[int]) -> bytes:
    out = field_varint(1, ((offset << 1) ^ (offset >> 31)) & 0xFFFFFFFF) if offset else b""
    return out + (packed_varints(2, counts) if counts else b"")


def summary(quantiles: list[tuple[float, float]], *extra: bytes, count: int = 4, time: int = T0) -> bytes:
    out = field_fixed64(2, T0 - 10**9) + field_fixed64(3, time) + field_fixed64(4, count) + double(5, 10.5)
    return out + pairs(6, *[double(1, q) + double(2, v) for q, v in quantiles]) + b"".join(extra)


def test_items_in_upbs_own_form_are_hashed_as_sent_and_others_through_upb():
    """What SDKs send (upb's serialization) is hashed without a round trip through upb; the same item with
    a field out of order, a default value sent or an unknown field is serialized by upb first."""
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    sdk = LogRecord(
        time_unix_nano=T0, severity_number=9, body={"string_value": "x"}, event_name="e"
    ).SerializeToString()
    assert reserialized("logs", envelope(sdk)) == 0
    for other in (
        field_len(12, b"e") + sdk[: sdk.index(b"\x62")],  # event_name first
        sdk + field_len(3, b""),  # an empty severity_text sent
        sdk + field_varint(99, 1),  # an unknown field
        sdk.replace(b"\x10\x09", b"\x10\x89\x00"),  # a padded varint
    ):
        assert reserialized("logs", envelope(other)) == 1
        assert_same_signal("logs", envelope(other))


def exemplar(value: bytes, trace_id: bytes = b"\x03" * 16, span_id: bytes = b"\x04" * 8, *kvs: bytes) -> bytes:
    ids = (field_len(4, span_id) if span_id else b"") + (field_len(5, trace_id) if trace_id else b"")
    return field_fixed64(2, T0) + value + ids + pairs(7, *kvs)


GENAI = (
    key_value(b"gen_ai.provider.name", any_string(b"openai")),
    key_value(b"gen_ai.request.model", any_string(b"gpt-4o")),
    key_value(b"server.address", any_string(b"x.openai.azure.com")),
)


def test_every_metric_type_through_both_paths():
    body = envelope(
        metric(b"gauge", GAUGE, points(number(pairs(7, *GENAI)), number(value=field_fixed64(6, 2**63)))),
        metric(
            b"requests",
            SUM,
            points(number(value=field_fixed64(6, 42)), temporality=2, monotonic=True),
            unit=b"{request}",
        ),
        metric(b"odd temporality", SUM, points(number(value=b""), temporality=7)),
        metric(
            b"tokens",
            HISTOGRAM,
            points(
                histogram([1, 0, 2], [1.0, 10.0], double(5, 12.5), double(11, 0.0), double(12, 9.0)),
                histogram(
                    [],
                    [],
                    pairs(8, exemplar(double(3, math.nan)), exemplar(field_fixed64(6, 2**64 - 7), b"", bytes(8))),
                ),
                temporality=1,
            ),
            description=b"token usage",
        ),
        metric(
            b"duration",
            EXPONENTIAL,
            points(
                exponential(field_len(8, buckets(-3, [1, 2, 300])), field_len(9, buckets(0, [])), double(13, -0.0)),
                exponential(scale=-10, threshold=1e-9),
            ),
        ),
        metric(b"latency", SUMMARY, points(summary([(0.0, 1.0), (0.5, 2.5), (1.0, math.inf)]), summary([]))),
        resource=pairs(1, key_value(b"service.name", any_int(7))),
    )
    rows = rows_of(same("metrics", body), "metrics")
    assert [r["metric_type"] for r in rows] == ["gauge"] * 2 + ["sum"] * 2 + ["histogram"] * 2 + [
        "exponential_histogram"
    ] * 2 + ["summary"] * 2
    assert rows[0]["provider"] == "azure.ai.openai" and rows[0]["model"] == "gpt-4o" and rows[0]["service_name"] == "7"
    assert (rows[1]["value"], rows[1]["value_int"]) == (float(-(2**63)), -(2**63))
    assert (rows[2]["temporality"], rows[2]["is_monotonic"], rows[3]["temporality"]) == ("cumulative", True, None)
    assert rows[4]["bucket_counts"] == [1, 0, 2] and rows[4]["min"] == 0.0 and rows[5]["sum"] is None
    assert (
        rows[6]["positive_offset"] == -3
        and rows[6]["negative_bucket_counts"] == []
        and rows[7]["positive_offset"] is None
    )
    assert rows[8]["quantile_values"] == [1.0, 2.5, math.inf]


@pytest.mark.parametrize(
    "point, refused",
    [
        (histogram([1, 2, 0], [1.0, 2.0], count=2**63 - 1), False),
        (histogram([1, 2], [1.0, 2.0]), True),
        (histogram([], [1.0]), True),
        (histogram([1, 2, 3], [math.nan, 2.0]), True),
        (histogram([1, 2, 3], [2.0, 2.0]), True),
        (histogram([1, 2, 3], [3.0, -1.0]), True),
        (histogram([1, 2], [1.0], count=2**63), True),
        (histogram([1, 2**63], [1.0]), True),
        (histogram([1, 2**64 - 1], [1.0], count=2**64 - 1), True),
    ],
)
def test_histogram_rules(point, refused):
    converted = same("metrics", envelope(metric(b"h", HISTOGRAM, points(point, histogram([1], [])))))
    assert converted is not None and converted.rejected == refused


@pytest.mark.parametrize(
    "point",
    [
        exponential(scale=21),
        exponential(scale=-11),
        exponential(scale=20, threshold=-1.0),
        exponential(threshold=math.nan),
        exponential(field_fixed64(7, 2**63)),
        exponential(field_len(8, buckets(1, [2**63]))),
        exponential(field_len(9, buckets(-(2**31), [1, 2**64 - 1]))),
        exponential(field_len(8, buckets(2, [1])) + field_len(8, buckets(0, [7]))),  # merged: offset 2, [1, 7]
        exponential(field_len(8, field_varint(2, 5) + field_varint(2, 6))),  # unpacked counts
    ],
)
def test_exponential_histogram_rules(point):
    same("metrics", envelope(metric(b"e", EXPONENTIAL, points(point, exponential()))))


@pytest.mark.parametrize(
    "point, refused",
    [
        (summary([(-0.0, 1.0), (1.0, math.nan)], count=2**63 - 1), False),
        (summary([(1.5, 1.0)]), True),
        (summary([(math.nan, 1.0)]), True),
        (summary([(0.0, 1.0), (-0.1, 2.0)]), True),
        (summary([], count=2**63), True),
    ],
)
def test_summary_rules(point, refused):
    converted = same("metrics", envelope(metric(b"s", SUMMARY, points(point, summary([(0.5, 1.0)])))))
    assert converted is not None and converted.rejected == refused


def test_nameless_empty_and_replaced_metrics():
    body = envelope(
        metric(b"", GAUGE, points(number(), number(), number())),  # all three points refused, one message
        metric(b"", SUM, points()),  # nothing to refuse
        field_len(1, b"no data"),  # no data member: nothing at all
        metric(b"first gauge, then sum", GAUGE, points(number())) + field_len(SUM, points(number(), temporality=1)),
        metric(b"gauge twice", GAUGE, points(number())) + field_len(GAUGE, points(number(time=T0 + 1))),
        metric(b"with metadata", GAUGE, points(number())) + pairs(12, key_value(b"m", any_string(b"v"))),
    )
    converted = same("metrics", body)
    assert (
        converted is not None
        and converted.rejected == 3
        and converted.errors == ["metric 0 has no name (3 data point(s))"]
    )
    assert [r["metric_name"] for r in rows_of(converted, "metrics")] == [
        "first gauge, then sum",
        "gauge twice",
        "gauge twice",
        "with metadata",
    ]


def test_point_times_window_and_messages_with_long_and_odd_names():
    name = "n\x00é'\"".encode() + b"m" * 80
    body = envelope(
        metric(
            name, GAUGE, points(number(time=0), number(time=RECEIVED - 4 * DAY_NS), number(time=RECEIVED + 4 * DAY_NS))
        ),
        metric(b"ok", GAUGE, points(number(time=RECEIVED, start=0), number(time=RECEIVED, start=RECEIVED - 1))),
        metric(b"h", HISTOGRAM, points(*[histogram([1], [1.0], time=1 + i) for i in range(7)])),
    )
    windowed = same("metrics", body, WINDOWED, SMALL)
    assert windowed is not None and (windowed.too_old, windowed.too_new, windowed.rejected) == (8, 1, 10)
    assert "…' data point 0: time_unix_nano is missing" in windowed.errors[0]


@pytest.mark.parametrize(
    "kind, point, accepted",
    [
        (HISTOGRAM, histogram([], [], field_fixed64(6, 1) + field_fixed64(6, 2) + double(7, 1.0)), True),  # unpacked
        (HISTOGRAM, histogram([1], [], packed_fixed64(6, [2]) + packed_doubles(7, [5.0]) + field_len(6, b"")), True),
        (HISTOGRAM, histogram([1, 2], [1.0], field_varint(6, 9)), True),  # a varint where fixed64 is declared: unknown
        (GAUGE, number(field_group(99, field_varint(1, 1)), field_varint(8, 2**40 + 1)), True),  # flags: uint32
        (EXPONENTIAL, exponential(field_len(8, field_varint(2, 2**64 - 1) + packed_varints(2, []))), True),
        (HISTOGRAM, histogram([], [], field_len(6, b"\x01" * 7)), False),  # packed fixed64 of 7 bytes
        (HISTOGRAM, histogram([], [], field_len(7, b"\x01" * 9)), False),
        (EXPONENTIAL, exponential(field_len(8, field_len(2, b"\x80"))), False),  # a packed varint cut short
        (EXPONENTIAL, exponential(field_len(8, field_len(2, b"\x80" * 10 + b"\x01"))), False),  # 11 bytes
    ],
)
def test_wire_forms_upb_accepts_and_refuses_in_points(kind, point, accepted):
    assert (same("metrics", envelope(metric(b"m", kind, points(point)))) is not None) == accepted


@pytest.mark.parametrize(
    "where", ["name", "unit", "point attribute", "exemplar attribute", "replaced member", "nameless metric", "metadata"]
)
def test_invalid_utf8_in_metrics_refuses_the_request_like_upb(where):
    bad = b"\xc3\x28"
    bodies = {
        "name": envelope(metric(bad, GAUGE, points(number()))),
        "unit": envelope(metric(b"m", GAUGE, points(number()), unit=bad)),
        "point attribute": envelope(metric(b"m", GAUGE, points(number(pairs(7, key_value(b"k", any_string(bad))))))),
        "exemplar attribute": envelope(
            metric(
                b"m",
                HISTOGRAM,
                points(histogram([], [], pairs(8, exemplar(b"", b"", b"", key_value(bad, any_int(1)))))),
            )
        ),
        "replaced member": envelope(
            metric(b"m", GAUGE, points(number(pairs(7, key_value(bad, any_int(1)))))) + field_len(SUM, points())
        ),
        "nameless metric": envelope(metric(b"", GAUGE, points(number(pairs(7, key_value(bad, any_int(1))))))),
        "metadata": envelope(metric(b"m", GAUGE, points(number())) + pairs(12, key_value(bad, any_int(1)))),
    }
    assert same("metrics", bodies[where], OPTIONS) is None


def test_oversize_and_non_finite_values_in_points_and_exemplars():
    big = b"\xe2\x82\xac" * 30
    body = envelope(
        metric(
            big + b"\x00",
            HISTOGRAM,
            points(
                histogram(
                    [1],
                    [],
                    pairs(9, key_value(big, any_string(big)), key_value(b"d", any_double(math.inf))),
                    pairs(
                        8, exemplar(double(3, -math.inf), b"\x01" * 16, b"\x01" * 8, key_value(b"k", any_string(big)))
                    ),
                )
            ),
            description=big,
            unit=big,
        )
    )
    for limit in (0, 2, 4, 64):
        same("metrics", body, dataclasses.replace(OPTIONS, max_attribute_bytes=limit))


# -- generated, re-encoded and damaged requests ----------------------------------------------------


def random_bodies(seed: int, count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    telemetry = RandomTelemetry(rng)
    return [
        (signal, (telemetry.logs_request() if signal == "logs" else telemetry.metrics_request()).SerializeToString())
        for _ in range(count)
        for signal in ("logs", "metrics")
    ]


def test_random_requests_plain_and_reencoded_with_wire_level_deviations():
    rng = random.Random(13)
    rows = rejected = outside = from_upb = 0
    for signal, body in random_bodies(13, int(os.environ.get("NATIVE_SIGNAL_REQUESTS", "300"))):
        # Most generated times are far from any receive time: half the requests go without a window.
        options = rng.choice((*EVERY_OPTIONS, dataclasses.replace(SMALL, windows={}), OPTIONS))
        options = dataclasses.replace(options, received_unix_nanos=options.received_unix_nanos or generate.T0)
        converted = assert_same_signal(signal, body, options)
        assert converted is not None and reserialized(signal, body, options) == 0  # SDK bytes: hashed as sent
        rows += len(converted.rows)
        rejected += converted.rejected
        outside += converted.too_old + converted.too_new
        request_type = LOGS.request_type if signal == "logs" else METRICS.request_type
        fields = wire.parse(body, request_type.DESCRIPTOR.full_name)
        perturbed = wire.Perturber(rng, rng.choice((0.05, 0.2))).encode(fields)
        if assert_same_signal(signal, perturbed, options) is not None:
            from_upb += reserialized(signal, perturbed, options) > 0
    assert rows > 400 and rejected > 400 and outside > 200 and from_upb > 100, (rows, rejected, outside, from_upb)


def test_random_damage_never_crashes_and_agrees_with_upb():
    rng = random.Random(20261130)
    bases = random_bodies(5, 6)
    bases += [
        ("logs", envelope(record(log_attrs(*GENAI), field_len(5, any_kvlist(key_value(b"k", any_array(any_int(1)))))))),
        ("metrics", envelope(metric(b"m", EXPONENTIAL, points(exponential(field_len(8, buckets(-3, [1, 2]))))))),
        (
            "metrics",
            envelope(metric(b"h", HISTOGRAM, points(histogram([1, 2], [1.0], pairs(8, exemplar(double(3, 1.0))))))),
        ),
        ("metrics", envelope(metric(b"s", SUMMARY, points(summary([(0.5, 1.0)]))))),
    ]
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(int(os.environ.get("NATIVE_SIGNAL_MUTATIONS", "8000"))):
        signal, base = rng.choice(bases)
        options = dataclasses.replace(WINDOWED, max_attribute_bytes=rng.choice([4, 64, 4096]))
        result = assert_same_signal(signal, wire.mutate(base, rng), options)
        outcomes["accepted" if result is not None else "refused"] += 1
    assert outcomes["accepted"] > 100 and outcomes["refused"] > 100, outcomes


@pytest.mark.parametrize("signal", ["logs", "metrics"])
def test_both_paths_through_decode_request_under_a_budget(signal):
    """As the front ends decode (scan, budget): the native path charges what it makes and stops at the
    request's bound, as the reference does; either gives the same rows or refuses for the memory."""
    spec = LOGS if signal == "logs" else METRICS
    rng = random.Random(3)
    telemetry = RandomTelemetry(rng)
    for _ in range(20):
        message = telemetry.logs_request() if signal == "logs" else telemetry.metrics_request()
        body = message.SerializeToString()
        for max_bytes in (2048, 16384, 1 << 20):
            outcomes = []
            for native in (True, False):
                budget = DecodeBudget(DecodeLimits(max_memory_bytes=max_bytes))
                options = dataclasses.replace(OPTIONS, native=native, budget=budget, received_unix_nanos=T0)
                try:
                    outcomes.append(decode_request(spec, body, False, options).converted)
                except LimitExceeded:
                    continue
                assert budget.nbytes <= budget.max_bytes
            if len(outcomes) == 2:
                assert_same_converted(*outcomes, SIGNAL_COLUMNS[signal], SIGNAL_JSON_COLUMNS[signal])
        # OTLP/JSON reaches the native decoder too (from its protobuf form): the same rows as the reference.
        json_body = to_otlp_json(message)
        options = dataclasses.replace(OPTIONS, received_unix_nanos=T0)
        from_json = decode_request(spec, json_body, True, options).converted
        reference = decode_request(spec, json_body, True, dataclasses.replace(options, native=False)).converted
        assert_same_converted(from_json, reference, SIGNAL_COLUMNS[signal], SIGNAL_JSON_COLUMNS[signal])


# -- drift and safety guards -----------------------------------------------------------------------


def test_installed_protobuf_schema_is_the_one_the_decoder_implements():
    assert installed_schema() == SCHEMA


def test_provider_and_model_reads_only_the_keys_the_decoder_hands_it():
    class Recording(dict):
        read: ClassVar[set[str]] = set()

        def get(self, key, default=None):
            Recording.read.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            Recording.read.add(key)
            return super().__getitem__(key)

    genai.provider_and_model(Recording())  # nothing found: every fallback is read
    genai.provider_and_model(Recording({"gen_ai.provider.name": "openai"}))  # the Azure rule too
    assert Recording.read and Recording.read <= set(DECODER_KEYS)


def test_no_memory_or_reference_leaks_on_any_path():
    cases = [(signal, body) for signal, body in random_bodies(11, 3)]
    cases += [
        ("logs", envelope(record(log_attrs(key_value(b"k", any_string(b"\xff")))))),  # refused deep inside
        ("logs", envelope(*[record(time=1 + i) for i in range(7)])),  # worded, then only counted
        ("logs", wire.request(field_len(1, b"") * 2 + field_len(2, field_len(2, record() + field_varint(99, 1))))),
        ("metrics", envelope(metric(b"", GAUGE, points(number(), number())))),
        (
            "metrics",
            envelope(metric(b"h", HISTOGRAM, points(histogram([1, 2], [1.0], count=2**63), histogram([1], [])))),
        ),
        ("metrics", envelope(metric(b"h", HISTOGRAM, points(histogram([], [], field_len(6, b"\x01" * 7)))))),
        ("metrics", envelope(metric(b"e", EXPONENTIAL, points(exponential(field_len(8, buckets(1, [1] * 200))))))),
    ]
    options = dataclasses.replace(WINDOWED, max_attribute_bytes=100)

    def run(times: int) -> None:
        for _ in range(times):
            for signal, body in cases:
                signal_native(signal, body, options)
                budget = DecodeBudget(DecodeLimits(max_memory_bytes=4096))
                convert = convert_logs_bytes if signal == "logs" else convert_metrics_bytes
                with contextlib.suppress(WireFormatError, LimitExceeded):
                    convert(body, dataclasses.replace(options, native=True, budget=budget))

    run(50)  # warm: caches, free lists, the allocator's arenas
    gc.collect()
    rss_before = current_rss_bytes()
    tracemalloc.start()
    try:
        run(200)
        gc.collect()
        leaked, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    run(400)
    gc.collect()
    rss_growth = current_rss_bytes() - rss_before
    # 200 rounds of 13 cases, 2 decodes each: a leak of even 8 bytes a decode would show as 40 KB.
    assert leaked < 32 * 1024, f"{leaked} bytes of Python allocations outlived {200 * len(cases) * 2} decodes"
    assert rss_growth < 4 * 1024 * 1024, f"RSS grew {rss_growth} bytes"


def test_the_pure_path_serves_when_native_is_off():
    off = dataclasses.replace(OPTIONS, native=False)
    for signal, body in (("logs", envelope(record())), ("metrics", envelope(metric(b"m", GAUGE, points(number()))))):
        converted = signal_reference(signal, body, OPTIONS)
        convert = convert_logs_bytes if signal == "logs" else convert_metrics_bytes
        assert converted is not None and repr(convert(body, off).rows) == repr(converted.rows)
