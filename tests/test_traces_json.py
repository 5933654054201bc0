"""OTLP/JSON traces through the C encoder (receiver.convert._otlpjson) against the references.

Two references, two contracts:
- the same request sent as protobuf: the same rows, rejections and messages (differential across
  encodings), and the protobuf the JSON path hands the spool converts to those rows again;
- the json_format path it replaced (parse_json, then the same converter): for any JSON, however bad,
  the same rows, the same rejected count and the same messages, and where the C encoder answers for a
  span its bytes hold the very message json_format makes of it.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import random
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict, ParseError
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert.budget import DecodeBudget, DecodeLimits, LimitExceeded
from receiver.convert.common import Converted
from receiver.frontends import decode
from receiver.frontends.decode import Decoded, decode_request
from receiver.frontends.signals import TRACES
from tests.support.differential import OPTIONS, assert_same_converted
from tests.support.generate import T0, RandomRequests
from tests.support.jsonwire import mutated

pytestmark = pytest.mark.skipif(decode._otlpjson is None, reason="the C encoder _otlpjson is not built")

JSON_FORMAT_TRACES = dataclasses.replace(TRACES, json_wire=False, json_signal=None)  # the path before the C encoders
HEX_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in HEX_KEYS and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json(message: Any, enum_names: bool = False) -> dict[str, Any]:
    """OTLP/JSON: protobuf's JSON mapping with hex ids; enums as numbers (as the spec says) or names."""
    return _hex_ids(MessageToDict(message, use_integers_for_enums=not enum_names))


def via_json(document: Any, spec: Any = TRACES, options: Any = OPTIONS) -> Decoded:
    body = json.dumps(document).encode()  # not orjson: it refuses ints past 64 bits, which clients may send
    return decode_request(spec, body, True, options)


def assert_same_as_json_format(document: Any) -> Converted:
    """The C encoder's path and json_format's give the same result for `document` (or both refuse it)."""
    outcomes = []
    for spec in (TRACES, JSON_FORMAT_TRACES):
        try:
            outcomes.append(via_json(copy.deepcopy(document), spec).converted)
        except decode.MalformedRequest as exc:
            outcomes.append(str(exc))
    actual, expected = outcomes
    if isinstance(actual, str) or isinstance(expected, str):
        assert actual == expected
        return actual
    assert_same_converted(actual, expected)
    return actual


def test_random_requests_in_json_and_protobuf_give_the_same_rows_and_rejections():
    """Every generated request (invalid ids and times, NUL, non-finite doubles, int64 extremes, unknown
    enum values, deep nesting...) sent as OTLP/JSON gives what it gives as protobuf; the protobuf the
    JSON path keeps for the spool converts to the same rows again."""
    rng = random.Random(1313)
    generator = RandomRequests(rng)
    for case in range(200):
        request = generator.request()
        body = request.SerializeToString()
        expected = decode_request(TRACES, body, False, OPTIONS).converted
        for enum_names in (False, True):
            decoded = via_json(otlp_json(request, enum_names))
            assert_same_converted(decoded.converted, expected)
            if case % 10 == 0:
                replayed = decode_request(TRACES, decoded.protobuf, False, OPTIONS).converted
                assert_same_converted(replayed, expected)


GENAI_SPAN = {
    "traceId": "5b8efff798038103d269b633813fc60c",
    "spanId": "eee19b7ec3c1b174",
    "parentSpanId": "eee19b7ec3c1b173",
    "name": "chat gpt-4o",
    "kind": 3,
    "startTimeUnixNano": str(T0),
    "endTimeUnixNano": T0 + 850_000_000,
    "attributes": [
        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 200}},
        {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.7}},
        {"key": "flag", "value": {"boolValue": False}},
        {"key": "empty", "value": {"stringValue": ""}},
        {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}, {}]}}},
        {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 2}}]}}},
    ],
    "events": [{"timeUnixNano": str(T0 + 1), "name": "e", "attributes": [], "droppedAttributesCount": 1}],
    "links": [{"traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175", "flags": 256}],
    "droppedAttributesCount": 2,
    "status": {"code": 2, "message": "boom"},
    "flags": 769,
}


def _request_of(spans: list[Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.30.0",
                "scopeSpans": [{"scope": {"name": "s", "version": "1"}, "spans": spans}],
            }
        ]
    }


def test_bad_values_reject_their_span_with_json_formats_message_and_good_spans_match_it():
    """Mutated OTLP/JSON (every value of a GenAI span and its envelope replaced by awkward ones, unknown
    and snake_case keys added): the same rows, rejected counts and messages as the json_format path."""
    rng = random.Random(13)
    generator = RandomRequests(rng)
    seeds = [_request_of([GENAI_SPAN, GENAI_SPAN])] + [otlp_json(generator.request()) for _ in range(40)]
    rejected = 0
    for case in range(800):
        converted = assert_same_as_json_format(mutated(seeds[case % len(seeds)], rng))
        rejected += isinstance(converted, Converted) and converted.rejected > 0
    assert rejected > 50  # the mutations do reach the rejection paths


def test_the_c_encoders_bytes_hold_what_json_format_makes_of_a_span():
    """Where the C encoder answers for a span, json_format accepts it and makes the same message."""
    rng = random.Random(7)
    answered = 0
    for _ in range(1500):
        span = mutated(GENAI_SPAN, rng)
        encoded = decode._otlpjson.span(copy.deepcopy(span))
        if encoded is None:
            continue
        answered += 1
        try:
            expected = trace_pb2.Span.FromString(decode._span_by_json_format(span, TRACES.envelope))
        except (ParseError, ValueError, TypeError) as exc:
            raise AssertionError(f"the C encoder accepted what json_format refuses ({exc}): {span}") from None
        assert trace_pb2.Span.FromString(encoded) == expected, span
    assert answered > 100


def test_one_bad_value_rejects_only_its_span_with_the_message_it_had():
    spans = [dict(GENAI_SPAN, name=f"s{i}") for i in range(4)]
    spans[1] = dict(spans[1], traceId="not-hex-at-all-not-hex-at-all-00")
    spans[2] = dict(spans[2], startTimeUnixNano="yesterday")
    converted = assert_same_as_json_format(_request_of(spans))
    assert [row[5] for row in converted.rows] == ["s0", "s3"]
    assert converted.rejected == 2
    assert converted.errors[0] == "span 1: traceId 'not-hex-at-all-not-hex-at-all-00' is not a hex string"
    assert converted.errors[1].startswith("span 2: Failed to parse startTimeUnixNano field")


def test_values_nested_past_upbs_limit_take_the_json_format_path_as_before():
    value: dict[str, Any] = {"stringValue": "deep"}
    for _ in range(120):
        value = {"arrayValue": {"values": [value]}}
    span = dict(GENAI_SPAN, attributes=[{"key": "deep", "value": value}])
    assert decode._otlpjson.span(span) is None  # past the encoder's depth: left to json_format
    assert_same_as_json_format(_request_of([span, GENAI_SPAN]))


def test_the_decode_budget_bounds_a_json_request_before_anything_is_encoded():
    limits = DecodeLimits(max_items=3)
    options = dataclasses.replace(OPTIONS, budget=DecodeBudget(limits))
    with pytest.raises(LimitExceeded, match=r"limits\.max_items_per_request"):
        via_json(_request_of([GENAI_SPAN] * 4), options=options)
    budget = DecodeBudget(DecodeLimits())
    via_json(_request_of([GENAI_SPAN] * 2), options=dataclasses.replace(OPTIONS, budget=budget))
    assert budget.items == 2 and budget.nbytes > 0
