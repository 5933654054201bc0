"""The OTLP/JSON -> protobuf transcoder (receiver.convert._jsonwire) against the reference path
(json_format and the pure converters): the contract is tests/support/jsonwire.py's
assert_same_as_reference, checked here on generated, mutated and hand-written documents of each signal.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest

from receiver.frontends import decode
from receiver.frontends.signals import LOGS, METRICS, TRACES, SignalSpec
from tests.fuzz.targets import random_request
from tests.support.jsonwire import AWKWARD, assert_same_as_reference, mutated, otlp_json
from tests.test_traces_json import GENAI_SPAN, _request_of

pytestmark = pytest.mark.skipif(decode._jsonwire is None, reason="the C transcoder _jsonwire is not built")

SPECS = {spec.name: spec for spec in (TRACES, LOGS, METRICS)}


def random_document(spec: SignalSpec, rng: random.Random) -> dict[str, Any]:
    return otlp_json(random_request(spec, rng), enum_names=rng.random() < 0.5)


def test_the_schema_is_the_installed_protobuf_schema():
    """Every field of every message the transcoder reads is in its table with the installed number and a
    kind of the installed type (so a new field in a newer OTLP is not silently ignored as unknown)."""
    from google.protobuf import descriptor_pool
    from google.protobuf.descriptor import FieldDescriptor as F

    kinds = {
        F.TYPE_STRING: {"string"}, F.TYPE_BYTES: {"hex", "hex_lenient", "bytes", "bail"},
        F.TYPE_UINT32: {"uint32"}, F.TYPE_FIXED32: {"fixed32"}, F.TYPE_FIXED64: {"fixed64", "packed_fixed64"},
        F.TYPE_INT64: {"int64"}, F.TYPE_SFIXED64: {"sfixed64"}, F.TYPE_SINT32: {"sint32"}, F.TYPE_ENUM: {"enum"},
        F.TYPE_INT32: {"int32"}, F.TYPE_DOUBLE: {"double", "packed_double"}, F.TYPE_BOOL: {"bool"},
        F.TYPE_MESSAGE: {"message", "repeated", "bail"}, F.TYPE_UINT64: {"packed_uint64"},
    }  # fmt: skip
    pool = descriptor_pool.Default()
    table: dict[str, dict[str, tuple[Any, ...]]] = {}
    for message, name, number, kind, _flags, sub, enum_names in decode._jsonwire.schema():
        table.setdefault(message, {})[name] = (number, kind, sub, enum_names)
    for message, fields in table.items():
        descriptor = pool.FindMessageTypeByName(message)
        for field in descriptor.fields:
            assert field.json_name in fields, f"{message}.{field.json_name} is not in the transcoder's schema"
            number, kind, sub, enum_names = fields[field.json_name]
            assert number == field.number and kind in kinds[field.type], (message, field.json_name)
            if kind in ("message", "repeated"):
                assert sub == field.message_type.full_name
                assert (kind == "repeated") == field.is_repeated
            if kind == "enum":
                assert enum_names == {value.name: value.number for value in field.enum_type.values}
        extra = set(fields) - {field.json_name for field in descriptor.fields}
        assert extra <= {"parentSpanId"}, extra  # a Link's parentSpanId: converted from hex by the reference


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_random_requests_transcode_to_json_formats_message_and_rows(signal):
    """Generated requests (hostile texts, NUL, non-finite doubles, int64 extremes, unknown enum values,
    bytes, nesting), enums as numbers or names: the transcoder answers for every one, with json_format's
    message, and the rows are the reference's."""
    spec = SPECS[signal]
    rng = random.Random(2024 + len(signal))
    for _ in range(60):
        assert assert_same_as_reference(spec, orjson.dumps(random_document(spec, rng)))


EXTRA_AWKWARD = [
    "-Infinity", "nan", "inf", "1.5", "QUJD", "QQ", "QQ=", "Q", "-_8=", 1e300, -0.0, 5e-324, 2**63 - 1, -(2**63),
    "18446744073709551615", "SEVERITY_NUMBER_INFO", "AGGREGATION_TEMPORALITY_DELTA", "SPAN_KIND_BOGUS",
    {"bytesValue": "QUJD"}, {"intValue": "1e2"}, {"doubleValue": "NaN"}, {"stringValue": "x", "boolValue": True},
    [1, 2.5, "3"], [None], {"asInt": 3, "asDouble": None},
]  # fmt: skip


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_mutated_documents_agree_with_the_reference_or_are_left_to_it(signal):
    """Values replaced by awkward ones, unknown and snake_case keys added: decode_request gives what the
    reference gives (rows, rejections, messages, refusals); the transcoder answers only where json_format
    accepts every item."""
    spec = SPECS[signal]
    rng = random.Random(99 + len(signal))
    seeds = [random_document(spec, rng) for _ in range(12)]
    if spec is TRACES:
        seeds.append(_request_of([GENAI_SPAN, GENAI_SPAN]))
    answered = 0
    for case in range(250):
        document = mutated(seeds[case % len(seeds)], rng)
        if rng.random() < 0.3:
            _mutate_with(document, rng, EXTRA_AWKWARD)
        answered += assert_same_as_reference(spec, json.dumps(document).encode())
    # The mutations leave enough documents well-formed for the transcoder's answers to be compared too:
    # 93 (traces), 21 (logs) and 20 (metrics) of 250 with these seeds.
    assert answered >= 15, f"{signal}: only {answered} of 250 mutated documents answered by the transcoder"


def _mutate_with(document: Any, rng: random.Random, values: list[Any]) -> None:
    node = document
    for _ in range(12):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if not isinstance(node[key], dict | list) or rng.random() < 0.3:
                node[key] = copy.deepcopy(rng.choice(values))
                return
            node = node[key]
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            if not isinstance(node[index], dict | list) or rng.random() < 0.3:
                node[index] = copy.deepcopy(rng.choice(values))
                return
            node = node[index]
        else:
            return


def _span_text(attributes: str = "[]", **fields: str) -> bytes:
    extra = "".join(f',"{k}":{v}' for k, v in fields.items())
    return (
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
        f'"spanId":"eee19b7ec3c1b174","name":"n","startTimeUnixNano":"1","attributes":{attributes}{extra}}}]}}]}}]}}'
    ).encode("latin-1")  # the texts below spell raw bytes as \x escapes


def _attribute(value: str) -> bytes:
    return _span_text(f'[{{"key":"k","value":{value}}}]')


# (body, whether the transcoder answers). Answered or not, decode_request gives the reference's result.
TEXTS = [
    (b"", True),
    (b" ", False),  # not JSON: the reference refuses it
    (b"[]", False),
    (b'{"resourceSpans":null,"other":[1,{"a":"\\u00e9"}],"resource_spans":7}', True),
    (b'{"resourceSpans":[],"resourceSpans":[]}', False),  # a duplicate key
    (_attribute('{"stringValue":"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u20ac\\ud83d\\ude00"}'), True),
    (_attribute('{"stringValue":"\\ud83d"}'), False),  # a lone surrogate
    (_attribute('{"stringValue":"\\ude00\\ud83d"}'), False),
    (_attribute('{"stringValue":"\xc3\xa9 \xf0\x9f\x98\x80"}'), True),
    (_attribute('{"stringValue":"\xc3"}'), False),  # invalid UTF-8
    (_attribute('{"stringValue":"\xed\xa0\x80"}'), False),  # a surrogate in UTF-8
    (_attribute('{"stringValue":"\x01"}'), False),  # a control character
    (_attribute('{"intValue":"-9223372036854775808"}'), True),
    (_attribute('{"intValue":9223372036854775808}'), False),
    (_attribute('{"intValue":"1e2"}'), False),
    (_attribute('{"intValue":1.0}'), False),
    (_attribute('{"intValue":"007"}'), True),
    (_attribute('{"intValue":" 7"}'), False),
    (_attribute('{"doubleValue":-0}'), True),
    (_attribute('{"doubleValue":-0.0}'), True),
    (_attribute('{"doubleValue":1e-400}'), True),
    (_attribute('{"doubleValue":1e400}'), False),  # orjson refuses it
    (_attribute('{"doubleValue":123456789012345678901234567890}'), True),
    (_attribute('{"doubleValue":"Infinity"}'), True),
    (_attribute('{"doubleValue":"1.5"}'), False),
    (_attribute('{"doubleValue":01}'), False),
    (_attribute('{"bytesValue":"QUJD"}'), True),
    (_attribute('{"bytesValue":"QQ"}'), True),
    (_attribute('{"bytesValue":"Q Q="}'), False),
    (_attribute('{"boolValue":true,"stringValue":"x"}'), False),  # two members of a oneof
    (_attribute('{"stringValue":null}'), False),
    (_attribute('{"arrayValue":{"values":[{"intValue":1},{},{"kvlistValue":{"values":[]}}]}}'), True),
    (_attribute('{"stringValue":"x","futureField":{"a":[1e400]}}'), False),  # orjson refuses it anywhere
    (_attribute('{"stringValue":"x","futureField":[true,null,{"b":-1.5e3}]}'), True),
    (_attribute('{"stringValue":"x","string_value":"y"}'), False),  # a proto name: json_format reads it
    (_span_text(kind='"SPAN_KIND_SERVER"', status='{"code":"STATUS_CODE_ERROR"}'), True),
    (_span_text(kind='"server"'), False),
    (_span_text(kind="-1"), True),
    (_span_text(droppedAttributesCount="4294967296"), False),
    (_span_text(parentSpanId='"zz"'), False),
    (_span_text(parentSpanId='""', traceState="null"), True),
    (_span_text(parentSpanId='"ab cd"'), False),
    (_span_text(links='[{"traceId":"00","parentSpanId":"01"}]'), False),
    (_span_text(Name='"b"', traceFlags="[1]"), True),  # unknown keys
    (_span_text(name='"a"'), False),  # "name" twice
    (_span_text(name='"a"') + b" x", False),
]


@pytest.mark.parametrize(("body", "answers"), TEXTS, ids=range(len(TEXTS)))
def test_json_text_forms(body, answers):
    assert assert_same_as_reference(TRACES, body) is answers


LOG_TEXTS = [
    ('{"traceId":"zz","spanId":7,"severityNumber":"SEVERITY_NUMBER_WARN","body":{"kvlistValue":{}}}', True),
    ('{"traceId":"0102","spanId":"","flags":4294967295,"observedTimeUnixNano":18446744073709551615}', True),
    ('{"traceId":"01 02"}', False),
    ('{"severityNumber":"9"}', False),
]


@pytest.mark.parametrize(("record", "answers"), LOG_TEXTS)
def test_log_id_leniency_and_enums(record, answers):
    body = ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + record + "]}]}]}").encode()
    assert assert_same_as_reference(LOGS, body) is answers


METRIC_TEXTS = [
    ('{"name":"m","gauge":null,"sum":{"dataPoints":[{"asInt":"5","exemplars":[{"traceId":7,'
     '"parentSpanId":"zz","asDouble":"NaN"}]}],"isMonotonic":true,"aggregationTemporality":2}}', True),
    ('{"name":"m","gauge":{},"sum":{}}', False),
    ('{"name":"m","histogram":{"dataPoints":[{"bucketCounts":["1",2,"18446744073709551615"],'
     '"explicitBounds":[1,"Infinity",2.5],"sum":0,"count":"3"}]}}', True),
    ('{"name":"m","histogram":{"dataPoints":[{"bucketCounts":[1,null]}]}}', False),
    ('{"name":"m","exponentialHistogram":{"dataPoints":[{"scale":-3,"positive":{"offset":-2,'
     '"bucketCounts":[0,"7"]},"zeroThreshold":0,"min":-0.0}]}}', True),
    ('{"name":"m","summary":{"dataPoints":[{"quantileValues":[{"quantile":0.5,"value":1},{}]}]}}', True),
    ('{"name":"m","metadata":[{"key":"a","value":{"intValue":1}}],"unit":"s"}', True),
]  # fmt: skip


@pytest.mark.parametrize(("metric", "answers"), METRIC_TEXTS)
def test_metric_forms(metric, answers):
    body = ('{"resourceMetrics":[{"scopeMetrics":[{"metrics":[' + metric + "]}]}]}").encode()
    assert assert_same_as_reference(METRICS, body) is answers


def test_nesting_past_its_bound_is_left_to_the_reference():
    value = '{"stringValue":"deep"}'
    for _ in range(40):
        value = '{"arrayValue":{"values":[' + value + "]}}"
    assert assert_same_as_reference(TRACES, _attribute(value)) is False
    assert decode._jsonwire.transcode(0, b"[" * 100000) is None


def test_output_is_bounded_by_the_input():
    """The form that grows most (packed fixed64 counts from one-digit numbers) stays within 4x."""
    counts = ",".join(["1"] * 5000)
    body = ('{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[{"bucketCounts":['
            + counts + "]}]}}]}]}]}").encode()  # fmt: skip
    protobuf, items, _ = decode._jsonwire.transcode(2, body)
    assert items == 1 and len(body) * 3 < len(protobuf) <= len(body) * 4


def test_mutated_documents_own_their_awkward_values():
    """The mutator puts copies of AWKWARD's values in: when it put the shared ones in, a later step could
    add to one of them (the jsonwire fuzz target met a dict holding itself: json.dumps refused the
    circular document) and AWKWARD itself changed for every test after."""
    before = copy.deepcopy(AWKWARD)
    small = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a"}]}]}]}  # few paths: steps land on
    for seed in range(3000):  # what an earlier step inserted
        json.dumps(mutated(small, random.Random(seed)))
    assert before == AWKWARD
