"""The native trace converter against the reference, column by column.

The reference is upb's parse followed by `convert_traces`; the native path is `convert_traces_bytes`
with the C decoder. For every request both must agree: the same rows (every column, same types),
rejections, messages and statistics, or both refuse the bytes. JSON columns are compared as parsed
values (floats exactly) and as jsonb compares them (key order, numbers by value); their texts may
differ only in how a number is spelled (Python's repr vs orjson, e.g. 1e-05 vs 0.00001).

Requests come from hand-written edge cases, from Hypothesis (structured requests, then the same bytes
re-encoded with unknown fields, shuffled and repeated fields, split messages, non-canonical varints,
wrong wire types), and from random byte damage to valid requests, which must never crash the process.

Every request also goes through the wire scanners that run before any decoder (receiver.convert.scan):
the C one and its pure twin must count the same and refuse the same, never refuse bytes upb accepts,
and count every span upb finds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import tracemalloc
from decimal import Decimal
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver import schema
from receiver.convert import genai
from receiver.convert.budget import DecodeBudget, DecodeLimits, LimitExceeded
from receiver.convert.common import Converted, WireFormatError
from receiver.convert.traces import ROW_ATTRIBUTE_KEYS
from receiver.convert.traces_bytes import (
    NATIVE_STATUS,
    SCHEMA,
    convert_traces_bytes,
    installed_schema,
    native_available,
)
from receiver.convert.window import TimeWindow
from receiver.pipeline.memory import current_rss_bytes
from tests.support import generate, otlp, wire
from tests.support.differential import OPTIONS, SCANNER, assert_same, native, reference
from tests.support.wire import (
    any_array,
    any_double,
    any_int,
    any_kvlist,
    any_string,
    field_fixed64,
    field_group,
    field_len,
    field_varint,
    key_value,
    request,
    resource_spans,
    scope_spans,
    span_fields,
)

pytestmark = pytest.mark.skipif(not native_available(), reason=NATIVE_STATUS)

DAY_S = 86400
# Received 6 days after T0, spans accepted from 3 days before to 3 days after: the generated start
# times (T0 plus up to 13 days, and edge values) fall on both sides of the window.
WINDOWED = dataclasses.replace(
    OPTIONS,
    received_unix_nanos=wire.T0 + 6 * DAY_S * 10**9,
    windows={"traces": TimeWindow(retention_s=3 * DAY_S, max_future_skew_s=3 * DAY_S)},
)


def one_span(*extra: bytes, name: bytes = b"span", **fields: Any) -> bytes:
    """A request of one valid span, its fields followed by `extra` (attributes are field 9)."""
    return request(resource_spans(scope_spans(span_fields(name, **fields) + b"".join(extra))))


def attrs(*pairs: bytes) -> bytes:
    return b"".join(field_len(9, p) for p in pairs)


def row_of(converted: Converted | None) -> dict[str, Any]:
    assert converted is not None and len(converted.rows) == 1, converted
    return dict(zip(schema.TRACES_COLUMNS, converted.rows[0], strict=True))


# -- hand-written edge cases ---------------------------------------------------------------------


def test_a_genai_span_through_both_paths():
    body = one_span(
        attrs(
            key_value(b"gen_ai.provider.name", any_string(b"OpenAI")),
            key_value(b"gen_ai.request.model", any_string(b"gpt-4o-mini")),
            key_value(b"gen_ai.usage.input_tokens", any_int(1000)),
            key_value(b"gen_ai.usage.output_tokens", any_int(200)),
            key_value(b"gen_ai.response.finish_reasons", any_array(any_string(b"stop"))),
            key_value(b"deployment.environment.name", any_string(b"prod")),
            key_value(b"temperature", any_double(0.7)),
        )
    )
    row = row_of(assert_same(body))
    assert (row["provider"], row["model"], row["total_tokens"]) == ("openai", "gpt-4o-mini", 1200)
    assert row["total_cost"] == Decimal("0.00027") and row["finish_reasons"] == ["stop"]
    assert row["environment"] == "prod"
    assert orjson.loads(row["attributes"])["temperature"] == 0.7


def test_nul_everywhere_becomes_u_fffd_and_is_counted():
    body = request(
        resource_spans(
            scope_spans(
                span_fields(b"na\x00me")
                + attrs(
                    key_value(b"k\x00", any_string(b"v\x00v")),
                    key_value(b"nested", any_kvlist(key_value(b"a\x00", any_array(any_string(b"\x00"))))),
                    key_value(b"user.id", any_string(b"u\x00")),
                )
                + field_len(3, b"ts\x00")
                + field_len(15, field_len(2, b"m\x00"))
                + field_len(11, field_len(2, b"ev\x00"))
                + field_len(13, field_len(1, b"\x01" * 16) + field_len(3, b"st\x00")),
                scope=field_len(1, b"sc\x00") + field_len(2, b"\x00"),
            ),
            resource=field_len(1, key_value(b"service.name", any_string(b"s\x00"))),
        )
    )
    converted = assert_same(body)
    row = row_of(converted)
    assert row["span_name"] == "na\ufffdme" and row["user_id"] == "u\ufffd" and row["service_name"] == "s\ufffd"
    assert orjson.loads(row["attributes"])["k\ufffd"] == "v\ufffdv"
    assert converted.stats.nul_replaced == 13  # once per string or key that held NUL


@pytest.mark.parametrize("limit", range(0, 14))
def test_truncation_at_every_boundary_around_multibyte_characters(limit):
    options = dataclasses.replace(OPTIONS, max_attribute_bytes=limit)
    texts = [b"ab\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9z", b"\x00\xe2\x82\xac\x00a", "€😀".encode() * 3, b"plain-ascii"]
    pairs = [key_value(b"k%d" % i, any_string(t)) for i, t in enumerate(texts)]
    pairs.append(key_value(b"bytes", field_len(7, bytes(range(10)))))
    pairs.append(key_value(b"gen_ai.request.model", any_string("gpt-4o-€€".encode())))
    converted = assert_same(one_span(attrs(*pairs), field_len(3, "é€".encode() * 4), name="ñ😀".encode() * 5), options)
    assert converted is not None


def test_non_finite_and_awkward_doubles():
    values = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e16, 1e15, 1e-5, 1e-7, 5e-324, 1.7976931348623157e308, 0.1]
    pairs = [key_value(b"d%d" % i, any_double(v)) for i, v in enumerate(values)]
    pairs.append(key_value(b"llm.cost.total", any_double(math.nan)))  # a wanted key with a NaN
    pairs.append(key_value(b"tags", any_array(any_double(math.inf), any_double(1e16))))
    converted = assert_same(one_span(attrs(*pairs)))
    stored = orjson.loads(row_of(converted)["attributes"])
    assert (stored["d0"], stored["d1"], stored["d2"]) == ("NaN", "Infinity", "-Infinity")
    assert converted.stats.non_finite_numbers == 5


def test_empty_values_and_missing_values_are_null_or_empty():
    pairs = [
        key_value(b"no-value", None),
        key_value(b"empty-anyvalue", b""),
        key_value(b"empty-string", any_string(b"")),
        key_value(b"empty-array", field_len(5, b"")),
        key_value(b"empty-kvlist", field_len(6, b"")),
        key_value(b"empty-bytes", field_len(7, b"")),
        key_value(b"strindex", field_varint(8, 5)),  # string_value_strindex: no value we read
        key_value(b"", any_string(b"empty key")),
        field_len(1, b"strindex-key") + field_varint(3, 7) + field_len(2, any_int(1)),
    ]
    stored = orjson.loads(row_of(assert_same(one_span(attrs(*pairs))))["attributes"])
    assert stored["no-value"] is None and stored["strindex"] is None and stored["empty-array"] == []
    assert stored[""] == "empty key" and stored["strindex-key"] == 1


def test_bytes_values_as_base64_and_capped():
    pairs = [key_value(b"b%d" % n, field_len(7, bytes(range(n)))) for n in range(0, 9)]
    pairs.append(key_value(b"gen_ai.system", field_len(7, b"\xff\x00raw")))
    options = dataclasses.replace(OPTIONS, max_attribute_bytes=5)
    converted = assert_same(one_span(attrs(*pairs)), options)
    assert orjson.loads(row_of(converted)["attributes"])["b8"] == "AAECAwQ=…[truncated 3 bytes]"


def test_nested_values_up_to_the_nesting_limit_and_one_past_it():
    def nested(levels: int) -> bytes:
        value = any_string(b"leaf")
        for i in range(levels):
            value = any_array(value) if i % 2 else any_kvlist(key_value(b"k", value))
        return value

    assert assert_same(one_span(attrs(key_value(b"deep", nested(10))))) is not None
    # Request 0 > ResourceSpans 1 > ScopeSpans 2 > Span 3 > KeyValue 4 > AnyValue 5; each level adds
    # two messages (array: ArrayValue + AnyValue; kvlist: KeyValueList + KeyValue + AnyValue).
    accepted = refused = 0
    for levels in range(28, 40):
        result = assert_same(one_span(attrs(key_value(b"deep", nested(levels)))))
        accepted += result is not None
        refused += result is None
    assert accepted and refused  # the limit (100 levels, as upb) lies inside the range tried
    assert assert_same(field_group(5, field_group(6)) * 3 + request(resource_spans())) is not None
    too_deep = b"".join(wire.encode_tag(7, wire.SGROUP) for _ in range(101)) + b"".join(
        wire.encode_tag(7, wire.EGROUP) for _ in range(101)
    )
    assert assert_same(too_deep) is None


def test_duplicate_keys_later_value_wins_at_first_position_and_every_value_is_counted():
    pairs = [
        key_value(b"a", any_string(b"first")),
        key_value(b"b", any_double(math.nan)),  # replaced below, still counted (as key_values does)
        key_value(b"k\x00", any_int(1)),
        key_value(b"a", any_string(b"second")),
        key_value(b"k\xef\xbf\xbd", any_int(2)),  # the same key once NUL is replaced
        key_value(b"b", any_int(3)),
        key_value(b"gen_ai.request.model", any_string(b"gpt-4o")),
        key_value(b"nested", any_kvlist(key_value(b"x", any_int(1)), key_value(b"x", any_int(2)))),
        key_value(b"gen_ai.request.model", any_string(b"o1")),
        key_value(b"gen_ai.usage.input_tokens", any_int(10)),
    ]
    converted = assert_same(one_span(attrs(*pairs)))
    row = row_of(converted)
    assert list(orjson.loads(row["attributes"]).items())[:4] == [
        ("a", "second"),
        ("b", 3),
        ("k\ufffd", 2),
        ("gen_ai.request.model", "o1"),
    ]
    assert row["model"] == "o1" and converted.stats.non_finite_numbers == 1
    many = [key_value(b"key%d" % (i % 23), any_int(i)) for i in range(100)]  # over 16 keys: sorted
    assert assert_same(one_span(attrs(*many))) is not None
    related = [b"k", b"ka", b"k\x00", b"k\xef\xbf\xbd", b"", b"kb", b"k\x00a", b"k\xef\xbf\xbda"]
    pairs = [key_value(related[(i * 7) % len(related)], any_int(i)) for i in range(40)]
    stored = orjson.loads(row_of(assert_same(one_span(attrs(*pairs))))["attributes"])
    assert len(stored) == 6  # "k\x00" is "k\ufffd" once its NUL is replaced


def test_invalid_spans_are_rejected_with_the_same_messages():
    cases = [
        dict(trace_id=b""),
        dict(trace_id=b"\x01" * 15),
        dict(trace_id=b"\x01" * 17),
        dict(trace_id=bytes(16)),
        dict(span_id=b""),
        dict(span_id=b"\x02" * 7),
        dict(span_id=b"\x02" * 9),
        dict(span_id=bytes(8)),
        dict(start=0),
        dict(end=wire.T0 - 1),
    ]
    spans = [span_fields(f"bad {i} 'quoted' \\ \x00 {'x' * 70}".encode(), **case) for i, case in enumerate(cases)]
    spans.append(span_fields(b"bad parent") + field_len(4, b"\x03" * 3))
    spans.append(span_fields(b"zero parent") + field_len(4, bytes(8)))
    spans.append(span_fields(b"equal times", end=wire.T0))
    spans.append(span_fields(b"max times", start=2**64 - 2, end=2**64 - 1))
    converted = assert_same(request(resource_spans(scope_spans(*spans))))
    assert converted.rejected == 11 and len(converted.rows) == 3 and len(converted.errors) == 5
    name = f"bad 0 'quoted' \\ \x00 {'x' * 70}"[:64] + "…"  # the first 64 characters, then an ellipsis
    assert converted.errors[0] == f"span 0 ({name!r}, trace -): trace_id has 0 bytes, expected 16"
    assert converted.rows[0][4] is None  # an all-zero parent is no parent


def test_start_times_outside_the_window_are_rejected_with_the_same_messages_and_counts():
    received = WINDOWED.received_unix_nanos
    earliest, latest = WINDOWED.window("traces").bounds(received)
    starts = [1, earliest - 1, earliest, received - 5 * 10**9, received, received + 5 * 10**9, latest, latest + 1]
    starts += [2**63, 2**64 - 2]
    spans = [span_fields(f"s{i}".encode(), start=t, end=max(t, min(2**64 - 1, t + 1000))) for i, t in enumerate(starts)]
    spans.append(span_fields(b"missing start", start=0))  # the span's own problem comes first
    converted = assert_same(request(resource_spans(scope_spans(*spans))), WINDOWED)
    assert (converted.too_old, converted.too_new, converted.rejected, len(converted.rows)) == (2, 3, 6, 5)
    assert converted.errors[0].startswith("span 0 ('s0', trace ") and converted.errors[0].endswith(
        "start time 1970-01-01T00:00:00Z is older than the 3-day retention "
        "(accepted: 2025-11-16T02:13:20Z to 2025-11-22T02:13:20Z)"
    ), converted.errors[0]
    assert "start time 2025-11-22T02:13:20Z is more than 259200 s ahead of the receive time" in converted.errors[2]
    # Without a receive time there is no window: conversion never reads the clock.
    unbounded = assert_same(
        request(resource_spans(scope_spans(*spans))), dataclasses.replace(WINDOWED, received_unix_nanos=0)
    )
    assert (unbounded.too_old, unbounded.too_new, unbounded.rejected) == (0, 0, 1)


def test_unknown_enum_values_and_enum_values_past_32_bits():
    for value in (0, 1, 5, 6, 7, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 2, 2**64 - 1):
        body = one_span(field_varint(6, value), field_len(15, field_varint(3, value)))
        assert_same(body)


def test_unknown_fields_of_every_wire_type_at_every_level_are_skipped():
    unknown = (
        field_varint(99, 2**64 - 1)
        + field_fixed64(98, 7)
        + wire.field_fixed32(97, 7)
        + field_len(96, b"\xff\xfe not utf-8, not parsed")
        + field_group(95, field_varint(1, 1) + field_group(94, field_len(2, b"x")))
    )
    body = (
        request(
            resource_spans(
                scope_spans(
                    span_fields() + unknown + attrs(key_value(b"k", any_string(b"v") + unknown) + unknown),
                    scope=field_len(1, b"scope") + unknown,
                    extra=unknown,
                ),
                resource=field_len(1, key_value(b"service.name", any_string(b"svc"))) + unknown,
                extra=unknown,
            )
        )
        + unknown
    )
    row = row_of(assert_same(body))
    assert row["service_name"] == "svc" and orjson.loads(row["attributes"]) == {"k": "v"}


def test_wrong_wire_types_and_packed_varints_are_ignored_like_upb():
    body = one_span(
        field_len(6, b"\x03"),  # kind sent length-delimited ("packed"): not a kind
        field_varint(7, 5),  # start_time as a varint: ignored, the fixed64 one stays
        field_varint(1, 1),  # trace_id as a varint: ignored
        field_varint(9, 1),  # attributes as a varint
        field_fixed64(5, 1),  # name as fixed64
        attrs(key_value(b"k", field_varint(1, 1) + field_fixed64(3, 9) + any_int(4))),
    )
    row = row_of(assert_same(body))
    assert row["span_kind"] == "unspecified" and orjson.loads(row["attributes"]) == {"k": 4}


def test_non_canonical_varints_and_fields_in_unusual_order():
    fields = wire.parse(one_span(attrs(key_value(b"k", any_int(-5))), field_varint(6, 3)))
    for seed in range(40):
        body = wire.Perturber(random.Random(seed), rate=0.5).encode(fields)
        assert_same(body)
    reversed_span = b"".join(
        reversed(
            [
                field_fixed64(8, wire.T0 + 5),
                field_fixed64(7, wire.T0),
                field_len(2, b"\x02" * 8),
                field_len(1, b"\x01" * 16),
            ]
        )
    )
    # Resource after its scope_spans, scope after its spans, span fields last to first.
    late_scope = field_len(2, reversed_span) + field_len(1, field_len(1, b"late scope"))
    late_resource = field_len(1, field_len(1, key_value(b"service.name", any_string(b"late"))))
    row = row_of(assert_same(request(field_len(2, late_scope) + late_resource)))
    assert row["scope_name"] == "late scope" and row["service_name"] == "late"


def test_singular_fields_sent_twice_are_merged_or_replaced_like_upb():
    body = one_span(
        field_len(5, b"second name"),  # name again: last wins
        field_len(15, field_len(2, b"message")),
        field_len(15, field_varint(3, 2)),  # status in two parts: merged
        attrs(
            field_len(1, b"k1") + field_len(2, any_array(any_string(b"a"))) + field_len(2, any_array(any_int(1))),
            field_len(1, b"k2") + field_len(2, any_string(b"s")) + field_len(2, any_int(7)),
            field_len(1, b"k3") + field_len(2, any_array(any_string(b"a")) + any_string(b"x") + any_array(any_int(2))),
            field_len(1, b"old") + field_len(1, b"k4") + field_len(2, any_kvlist(key_value(b"a", any_int(1)))),
        ),
    )
    row = row_of(assert_same(body))
    assert (row["span_name"], row["status_code"], row["status_message"]) == ("second name", "error", "message")
    assert orjson.loads(row["attributes"]) == {"k1": ["a", 1], "k2": 7, "k3": [2], "k4": {"a": 1}}
    split_resource = request(
        field_len(1, field_len(1, field_len(1, key_value(b"service.name", any_string(b"a")))))
        + field_len(1, field_len(1, field_len(1, key_value(b"deployment.environment", any_string(b"dev")))))
    )
    assert_same(split_resource)


@pytest.mark.parametrize(
    "where",
    [
        "span name",
        "trace state",
        "status message",
        "attribute key",
        "attribute value",
        "nested value",
        "replaced value",
        "replaced array",
        "event name",
        "link trace state",
        "scope name",
        "scope attribute",
        "resource schema url",
        "scope schema url",
        "entity ref",
        "rejected span attribute",
    ],
)
def test_invalid_utf8_in_any_string_field_refuses_the_request(where):
    bad = b"ok\xc3\x28"  # not UTF-8
    span = span_fields()
    extra_scope = extra_resource = b""
    scope = field_len(1, b"scope")
    if where == "span name":
        span = span_fields(bad)
    elif where == "trace state":
        span += field_len(3, bad)
    elif where == "status message":
        span += field_len(15, field_len(2, bad))
    elif where == "attribute key":
        span += attrs(key_value(bad, any_int(1)))
    elif where == "attribute value":
        span += attrs(key_value(b"k", any_string(bad)))
    elif where == "nested value":
        span += attrs(key_value(b"k", any_kvlist(key_value(b"n", any_array(any_string(bad))))))
    elif where == "replaced value":
        span += attrs(key_value(b"k", any_string(bad) + any_int(1)))
    elif where == "replaced array":
        span += attrs(key_value(b"k", any_array(any_string(bad)) + any_int(1)))
    elif where == "event name":
        span += field_len(11, field_len(2, bad))
    elif where == "link trace state":
        span += field_len(13, field_len(3, bad))
    elif where == "scope name":
        scope = field_len(1, bad)
    elif where == "scope attribute":
        scope += field_len(3, key_value(b"k", any_string(bad)))
    elif where == "resource schema url":
        extra_resource = field_len(3, bad)
    elif where == "scope schema url":
        extra_scope = field_len(3, bad)
    elif where == "entity ref":
        extra_resource = field_len(1, field_len(3, field_len(3, bad)))
    elif where == "rejected span attribute":
        span = span_fields(trace_id=b"") + attrs(key_value(b"k", any_string(bad)))
    body = request(resource_spans(scope_spans(span, scope=scope, extra=extra_scope), extra=extra_resource))
    assert assert_same(body) is None
    with pytest.raises(WireFormatError, match="invalid UTF-8 in a string field at byte"):
        convert_traces_bytes(body, OPTIONS)


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a",  # tag, then nothing
        b"\x0a\x05\x00",  # length past the end
        b"\x08",  # truncated varint
        b"\x10" + b"\xff" * 10 + b"\x01",  # varint of 11 bytes
        b"\x11\x00\x00",  # truncated fixed64
        b"\x00\x01",  # field number 0
        b"\x0c",  # end-group without start
        b"\x13\x08\x01",  # group never closed
        b"\x13\x1c",  # group closed by another number
        b"\x0e",  # wire type 6
        b"\x0f",  # wire type 7
        b"\xf8\xff\xff\xff\x1f\x00",  # tag over 2^32
        b"\x90\x80\x80\x80\x80\x00\x01",  # tag of 6 bytes
        b"\x0a\x03\x12\x01\x0c",  # end-group inside a message
        b"\x0a\x02\x12\x05",  # inner length past the outer message
        b"\x03\x04",  # a group of field number 0
        b"\x13\x08\x01\x04",  # a group closed by field number 0
        b"\x13\x0e\x14",  # wire type 6 inside a group
        b"\x13\x88\x80\x80\x80\x80\x00\x01\x14",  # tag of 6 bytes inside a group
    ],
)
def test_malformed_wire_format_is_refused_by_both(body):
    assert assert_same(body) is None


@pytest.mark.parametrize(
    "group_body",
    [
        b"\x01" + bytes(8),  # field number 0 (fixed64): upb tolerates it inside a skipped group
        b"\x00\x01",  # field number 0 (varint)
        b"\x02\x00",  # field number 0 (length-delimited)
        b"\x05" + bytes(4),  # field number 0 (fixed32)
        b"\x03\x04",  # a nested group of field number 0
        b"\x1b\x00\x01\x1c",  # field number 0 in a nested group
    ],
)
def test_field_number_zero_inside_a_skipped_group_is_tolerated_like_upb(group_body):
    group = field_group(2, group_body)
    assert assert_same(request(resource_spans(scope_spans(span_fields() + field_len(13, group)))) + group)


def test_requests_without_spans_and_resource_fallbacks():
    assert assert_same(b"").rows == []
    assert assert_same(request(resource_spans())).rows == []
    scope_only = request(resource_spans(scope_spans(scope=field_len(1, b"s\x00") + field_len(2, b"v"))))
    assert assert_same(scope_only).stats.nul_replaced == 1  # counted even without spans, as the reference
    for value in (
        any_int(7),
        any_double(1.5),
        field_varint(2, 1),
        any_array(any_string(b"x")),
        b"",
        field_len(7, b"\x01"),
    ):
        body = request(
            resource_spans(
                scope_spans(span_fields()),
                resource=field_len(1, key_value(b"service.name", value))
                + field_len(1, key_value(b"deployment.environment", value)),
            )
        )
        assert_same(body)


def test_events_and_links():
    event = (
        field_fixed64(1, 2**64 - 1)
        + field_len(2, b"gen_ai.content.prompt")
        + field_len(3, key_value(b"gen_ai.prompt", any_string(b"hi")))
        + field_varint(4, 2**32 + 3)  # uint32: the low 32 bits
    )
    link = (
        field_len(1, b"\xab" * 3)
        + field_len(2, b"")
        + field_len(4, key_value(b"why", any_string(b"x")))
        + field_varint(5, 1)
    )
    body = one_span(field_len(11, event), field_len(11, b""), field_len(13, link), field_len(13, field_len(3, b"ts")))
    row = row_of(assert_same(body))
    assert orjson.loads(row["events"])[0]["dropped_attributes_count"] == 3
    assert orjson.loads(row["links"])[0] == {"trace_id": "ababab", "span_id": "", "attributes": {"why": "x"}}


# -- generated requests --------------------------------------------------------------------------

GENERATED = settings(
    max_examples=int(os.environ.get("NATIVE_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@GENERATED
@given(generate.REQUESTS, st.sampled_from(generate.LIMITS), st.sampled_from([OPTIONS, WINDOWED]))
def test_generated_requests_convert_identically(message, limit, options):
    assert_same(message.SerializeToString(), dataclasses.replace(options, max_attribute_bytes=limit))


@settings(GENERATED, max_examples=max(1, GENERATED.max_examples // 2))
@given(generate.REQUESTS, st.integers(0, 2**32 - 1), st.sampled_from([0.05, 0.2, 0.5]))
def test_generated_requests_reencoded_with_wire_level_deviations(message, seed, rate):
    fields = wire.parse(message.SerializeToString())
    assert_same(wire.Perturber(random.Random(seed), rate).encode(fields))


def test_thousands_of_random_requests_plain_and_reencoded():
    rng = random.Random(6)
    requests = generate.RandomRequests(rng)
    spans = rejected = outside = 0
    for _ in range(int(os.environ.get("NATIVE_REQUESTS", "2500"))):
        body = requests.request().SerializeToString()
        options = rng.choice((OPTIONS, WINDOWED))
        converted = assert_same(body, dataclasses.replace(options, max_attribute_bytes=rng.choice(generate.LIMITS)))
        spans += len(converted.rows)
        rejected += converted.rejected
        outside += converted.too_old + converted.too_new
        assert_same(wire.Perturber(rng, rng.choice((0.05, 0.2))).encode(wire.parse(body)), options)
    assert spans > 1000 and rejected > 1000 and outside > 100, (spans, rejected, outside)


def test_random_damage_to_valid_requests_never_crashes_and_agrees_with_upb():
    rng = random.Random(20251122)
    genai_spans = [
        otlp.span(
            f"chat {i}",
            attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": i, "x": [1.5, {"k": b"\x00"}]},
        )
        for i in range(3)
    ]
    bases = [
        otlp.trace_request(genai_spans, "svc").SerializeToString(),
        one_span(
            attrs(
                key_value(b"gen_ai.request.model", any_string(b"gpt-4o")),
                key_value(b"gen_ai.usage.input_tokens", any_int(12)),
                key_value(b"nested", any_kvlist(key_value(b"a", any_array(any_double(1.5), field_len(7, b"\x00"))))),
                key_value(b"text", any_string('é€😀\x00"\\'.encode())),
            ),
            field_len(11, field_fixed64(1, 5) + field_len(2, b"ev")),
            field_len(13, field_len(1, b"\x01" * 16) + field_len(3, b"ts")),
            field_len(15, field_len(2, b"msg") + field_varint(3, 2)),
        ),
        request(
            resource_spans(
                scope_spans(span_fields(b"a"), span_fields(b"b", trace_id=b""), scope=field_len(1, b"s")),
                resource=field_len(1, key_value(b"service.name", any_string(b"svc"))),
            )
        ),
    ]
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(int(os.environ.get("NATIVE_MUTATIONS", "20000"))):
        body = wire.mutate(rng.choice(bases), rng)
        result = assert_same(body, dataclasses.replace(OPTIONS, max_attribute_bytes=rng.choice([4, 64, 4096])))
        outcomes["accepted" if result is not None else "refused"] += 1
    assert outcomes["accepted"] > 100 and outcomes["refused"] > 100, outcomes


# -- safety and drift guards ---------------------------------------------------------------------


@pytest.mark.parametrize("pad", range(0, 10))
@pytest.mark.parametrize("where", ["request", "span field", "string", "unknown field", "in a group", "packed"])
def test_over_long_length_varints_are_refused_like_upb(where, pad):
    """upb reads a size in at most 5 bytes: 80 80 80 80 80 00 (0 in 6 bytes) is corrupt, whatever the value."""

    def sized(number: int, data: bytes) -> bytes:
        return wire.encode_tag(number, wire.LEN) + wire.encode_varint(len(data), pad) + data

    span = span_fields()
    if where == "request":
        body = sized(1, resource_spans(scope_spans(span)))
    elif where == "span field":
        body = request(resource_spans(scope_spans(span + sized(15, field_len(2, b"msg")))))
    elif where == "string":
        body = request(resource_spans(scope_spans(span + sized(3, b"tracestate"))))
    elif where == "unknown field":
        body = request(resource_spans(scope_spans(span))) + sized(99, b"\x00" * 3)
    elif where == "in a group":
        body = request(resource_spans(scope_spans(span))) + field_group(98, sized(1, b"x"))
    else:  # a packed repeated field of an unknown message: a length like any other
        body = request(resource_spans(scope_spans(span + field_len(14, b"") + sized(16, b"\x01\x02"))))
    result = assert_same(body)
    assert (result is None) == (pad + 1 > 5)
    assert assert_same(b"\x0a\x80\x80\x80\x80\x80\x00") is None  # the smallest such request


def test_no_memory_or_reference_leaks_on_any_path():
    """Thousands of calls on every path (rows, rejections, refusals deep inside, the output budget, the
    scanners) leave nothing behind: neither Python allocations (tracemalloc sees the decoder's
    PyMem buffers too) nor process memory (RSS)."""
    cases = [
        one_span(
            attrs(
                key_value(b"gen_ai.request.model", any_string(b"gpt-4o")),
                key_value(b"tags", any_array(any_string(b"t"))),
            )
        ),
        one_span(attrs(key_value(b"k\x00", any_string(b"x" * 300)), key_value(b"k\x00", any_double(math.nan)))),
        request(resource_spans(scope_spans(span_fields(trace_id=b""), span_fields(span_id=bytes(8))))),
        one_span(attrs(key_value(b"k", any_array(any_string(b"\xff"))))),  # refused deep inside
        one_span(field_len(11, b"\x0a\x05")),  # truncated inside an event
        b"\x0a\x05\x00",
        wire.encode_tag(7, wire.SGROUP) * 101,
        one_span(attrs(*[key_value(b"key%d" % (i % 7), any_int(i)) for i in range(40)])),
        one_span(attrs(*[key_value(b"k%d" % i, any_string(b"v" * 50)) for i in range(100)])),  # over budget
        one_span(field_len(11, field_len(2, b"event")) * 50),
        # outside the window: worded for the first five, only counted after
        request(resource_spans(scope_spans(*[span_fields(b"old", start=1 + i) for i in range(8)]))),
        request(resource_spans(scope_spans(*[span_fields(b"new", start=2**63 + i, end=2**63 + i) for i in range(8)]))),
    ]
    options = dataclasses.replace(WINDOWED, max_attribute_bytes=100)

    def run(times: int) -> None:
        for _ in range(times):
            for body in cases:
                with contextlib.suppress(WireFormatError):
                    SCANNER.scan(body)
                native(body, options)
                budget = DecodeBudget(DecodeLimits(max_memory_bytes=4096))
                with contextlib.suppress(WireFormatError, LimitExceeded):
                    convert_traces_bytes(body, dataclasses.replace(options, native=True, budget=budget))

    run(200)  # warm: caches, free lists, the allocator's arenas
    gc.collect()
    rss_before = current_rss_bytes()
    tracemalloc.start()
    try:
        run(1000)
        gc.collect()
        leaked, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    run(2000)
    gc.collect()
    rss_growth = current_rss_bytes() - rss_before
    # 1000 rounds of 10 cases, 3 decodes each: a leak of even 4 bytes a decode would show as 120 KB.
    assert leaked < 64 * 1024, f"{leaked} bytes of Python allocations outlived 30,000 decodes"
    assert rss_growth < 4 * 1024 * 1024, f"RSS grew {rss_growth} bytes over 90,000 decodes"


def test_installed_protobuf_schema_is_the_one_the_decoder_implements():
    assert installed_schema() == SCHEMA


def test_row_attribute_keys_hold_every_key_the_llm_rules_read():
    class Recording(dict):
        read: ClassVar[set[str]] = set()

        def get(self, key, default=None):
            Recording.read.add(key)
            return super().get(key, default)

    genai.extract_llm_fields(Recording())  # nothing found: every fallback is read
    genai.extract_llm_fields(Recording({"llm.request.type": "chat", "openinference.span.kind": "LLM"}))
    assert Recording.read and Recording.read <= ROW_ATTRIBUTE_KEYS
    assert genai.LLM_ATTRIBUTE_KEYS <= ROW_ATTRIBUTE_KEYS


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have a compiler")
def test_ci_builds_the_native_converter():
    assert native_available(), NATIVE_STATUS


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have a compiler")
def test_ci_builds_the_grpc_front_end():
    from receiver.frontends import grpc_native

    assert grpc_native.available(), "receiver.frontends._h2grpc is not built (scripts/ensure-nghttp2, libnghttp2-dev)"


async def test_json_texts_mean_the_same_to_postgresql_jsonb(database):
    values = [math.nan, -0.0, 1e16, 1e15, 1e-5, 1e-7, 5e-324, 1.7976931348623157e308, 0.1, 123456789.125]
    pairs = [key_value(b"d%d" % i, any_double(v)) for i, v in enumerate(values)]
    pairs += [
        key_value(b"ints", any_array(any_int(-(2**63)), any_int(2**63 - 1), any_int(0))),
        key_value('ctl \x01\x1f\x7f "\\ é😀 \u2028 \x00'.encode(), any_string('\x00\x01\x1f"\\/\u2028\ufffd'.encode())),
        key_value(b"dup", any_int(1)),
        key_value(b"dup", any_int(2)),
    ]
    body = one_span(attrs(*pairs), field_len(11, field_fixed64(1, 2**64 - 1) + field_len(2, b"\x00")))
    actual, expected = native(body, OPTIONS), reference(body, OPTIONS)
    conn = await database.connect()
    try:
        for column in ("attributes", "events", "resource_attributes"):
            index = schema.TRACES_COLUMNS.index(column)
            got, want = actual.rows[0][index], expected.rows[0][index]
            assert await conn.fetchval("SELECT $1::jsonb = $2::jsonb", got, want), column
            assert await conn.fetchval("SELECT $1::jsonb::text = $2::jsonb::text", got, want), column
    finally:
        await conn.close()


def test_both_paths_stamp_every_row_with_the_requests_project():
    import uuid
    from dataclasses import replace

    project = uuid.uuid4()
    body = request(resource_spans(scope_spans(span_fields(b"a"), span_fields(b"b")), scope_spans(span_fields(b"c"))))
    converted = assert_same(body, replace(OPTIONS, project_id=project))
    assert converted is not None and [r[-1] for r in converted.rows] == [project] * 3
    assert row_of(native(one_span(), OPTIONS))["project_id"] is None  # auth off: no project
    assert row_of(reference(one_span(), OPTIONS))["project_id"] is None


def test_a_resource_seen_before_converts_exactly_as_the_first_time():
    """The decoder keeps what a Resource's bytes decoded to (an SDK repeats its Resource in every export):
    a request whose Resource it has seen must give the reference's rows and statistics all the same, at
    every max_attribute_bytes (truncation depends on it), and never be charged less output."""
    from receiver.convert import traces_bytes

    attributes = [
        key_value(b"service.name", any_string(b"svc\x00nul")),  # NUL: counted in nul_replaced
        key_value(b"deployment.environment", any_string(b"prod")),
        key_value(b"big", any_string(b"x" * 3000)),  # truncated under a small limit
        key_value(b"ratio", any_double(math.nan)),  # non-finite
        key_value(b"nested", any_kvlist(key_value(b"k", any_int(7)))),
    ]
    resource = b"".join(field_len(1, kv) for kv in attributes)
    decoder = traces_bytes._DECODER
    for limit in (1024, 100_000, 1024, 64):
        options = dataclasses.replace(OPTIONS, max_attribute_bytes=limit)
        outputs = []
        for spans in (1, 2, 1):
            body = request(
                resource_spans(scope_spans(*[span_fields(name=b"s%d" % i) for i in range(spans)]), resource=resource)
            )
            converted = assert_same(body, options)
            assert converted is not None and len(converted.rows) == spans
            assert converted.stats.nul_replaced >= 1 and converted.stats.non_finite_numbers >= 1
            assert (converted.stats.truncated_values >= 1) == (limit < 3000)
            decoded = decoder.decode(body, limit, 5, 1 << 40, 0, (1 << 64) - 1, lambda start: "")
            outputs.append(decoded[6])
        assert outputs[2] >= outputs[0], "a request whose Resource was cached was charged less output"
