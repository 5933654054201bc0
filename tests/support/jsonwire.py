"""The transcoder's contract, as tests/test_jsonwire.py and the `jsonwire` fuzz target check it.

The reference is json_format (parse_json: orjson, hex ids, ParseDict item by item) and the pure
converters. For any OTLP/JSON body, decode_request (the transcoder, then the native decoder; or, where
the transcoder declines, the paths before it) gives the reference's rows, rejections and messages, or the
same refusal; and where the transcoder answers, json_format accepts every item and makes the very message
its bytes hold, and the items and containers it counts are those count_json counted before.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import random
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict

from receiver import schema
from receiver.frontends import decode
from receiver.frontends.decode import MalformedRequest, count_json, decode_request, parse_json
from receiver.frontends.signals import SignalSpec
from tests.support import generate
from tests.support.differential import JSON_COLUMNS, SIGNAL_JSON_COLUMNS, assert_same_converted
from tests.support.differential import OPTIONS as BASE_OPTIONS

OPTIONS = dataclasses.replace(BASE_OPTIONS, received_unix_nanos=generate.T0)
COLUMNS = {"traces": (schema.TRACES_COLUMNS, JSON_COLUMNS)} | {
    name: (getattr(schema, f"{name.upper()}_COLUMNS"), SIGNAL_JSON_COLUMNS[name]) for name in ("logs", "metrics")
}
HEX_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in HEX_KEYS and isinstance(v, str) else hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids(v) for v in node]
    return node


def otlp_json(message: Any, enum_names: bool) -> dict[str, Any]:
    """OTLP/JSON: protobuf's JSON mapping with hex ids; enums as numbers or names."""
    return hex_ids(MessageToDict(message, use_integers_for_enums=not enum_names))


def reference(spec: SignalSpec, body: bytes) -> Any:
    """json_format, then the pure converter: rows and rejections, or the refusal's message."""
    try:
        parsed = parse_json(spec.request_type, spec.envelope, body)
    except MalformedRequest as exc:
        return str(exc)
    converted = spec.convert(parsed.message, OPTIONS)
    converted.rejected += parsed.rejected
    converted.errors[:0] = parsed.errors
    return converted


def assert_same_as_reference(spec: SignalSpec, body: bytes) -> bool:
    """decode_request agrees with the reference; where the transcoder answers, its bytes hold json_format's
    message and its counts are count_json's. Returns whether it answered."""
    expected = reference(spec, body)
    try:
        actual: Any = decode_request(spec, body, True, OPTIONS)
    except MalformedRequest as exc:
        actual = str(exc)
    if isinstance(expected, str) or isinstance(actual, str):
        assert actual == expected
    else:
        assert_same_converted(actual.converted, expected, *COLUMNS[spec.name])
    wire = decode._jsonwire.transcode(spec.json_signal, body)
    if wire is None:
        return False
    protobuf, items, containers = wire
    assert not isinstance(expected, str), "answered for a request the reference refuses"
    parsed = parse_json(spec.request_type, spec.envelope, body)
    assert parsed.rejected == 0, f"answered for a request with an item json_format refuses: {parsed.errors}"
    got = spec.request_type.FromString(protobuf)
    assert got.SerializeToString(deterministic=True) == parsed.message.SerializeToString(deterministic=True)
    assert actual.protobuf == protobuf  # what the spool keeps
    assert (items, containers) == count_json(orjson.loads(body) if body else {}, spec.envelope)
    assert len(protobuf) <= 4 * len(body) + 64
    return True


# -- mutated documents (tests/test_traces_json.py, tests/test_jsonwire.py, the jsonwire fuzz target) ----

# Values the C encoder and the transcoder must either read exactly as json_format does or leave to it.
AWKWARD = [
    None, "", " ", "abc", "12", "-12", " 12", "1e3", "0x10", "007", "NaN", "Infinity", "-0",
    0, 1, -1, 1.5, 2.0, 2**31, 2**32, 2**63, 2**64, -(2**63), True, False,
    [], {}, [None], [{}], {"stringValue": "x"}, "SPAN_KIND_SERVER", "STATUS_CODE_ERROR",
    "5B8EFFF798038103D269B633813FC60C", "5b 8e", "zz", "abc", "\u00e9", "\x00",
]  # fmt: skip
EXTRA_KEYS = ["unknownField", "trace_id", "start_time_unix_nano", "[ext]", "keyStrindex", "bytesValue", "entityRefs"]


def paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and list position under `node` (where a value can be replaced or a key added)."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*path, index))
    return found


def mutated(document: Any, rng: random.Random) -> Any:
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths(document))
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        # A copy of the awkward value: AWKWARD's lists and dicts are shared, and a later step may add to
        # the one it put in (the very dict into itself: a circular document; and AWKWARD changed for good).
        if isinstance(parent, dict) and rng.random() < 0.2:
            parent[rng.choice(EXTRA_KEYS)] = copy.deepcopy(rng.choice(AWKWARD))
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(AWKWARD))
    return document
