"""Random ExportTraceServiceRequests for the differential tests of the native trace converter.

Two generators over the same value pools: Hypothesis strategies (shrinkable, ~20 ms an example) for
structured exploration, and `random_request` (plain `random`, ~0.1 ms) for thousands of cases per run.
The pools favour what breaks converters: NUL, quotes, backslashes, control and multi-byte characters,
the attribute keys the LLM rules read (with values of every type), duplicate keys, non-finite and
awkward doubles, int64 extremes, invalid ids, time edge cases, unknown enum values, deep nesting.
"""

from __future__ import annotations

import math
import random
import struct

from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert.traces import ROW_ATTRIBUTE_KEYS

T0 = 1_763_000_000_000_000_000
SPECIAL_CHARACTERS = list('ab \x00\x01\x1f\x7f"\\\n/é€😀\ufffd\u2028')
WANTED_KEYS = sorted(ROW_ATTRIBUTE_KEYS)
OTHER_KEYS = ["a", "b", "k\x00", "k\ufffd", "", "x" * 70]
MODEL_LIKE = ["gpt-4o", "gpt-4o-mini-2024-07-18", "openai", "OpenAI", "anthropic", "chat", "LLM", "42", " 7 ", "1.5"]
DOUBLES = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e16, 1e15, 1e-5, 1e-7, 5e-324, 0.1, 2.5, 1e22, 1e300, 7.0]
INTS = [0, 1, -1, 7, 1000, 2**31, -(2**63), 2**63 - 1, 2**62, -5]
TIMES = [0, 1, T0, T0 + 1, T0 + 1_500_000, 2**63, 2**64 - 1]
ENUMS = [0, 1, 2, 3, 5, 6, -1, 2**31 - 1, -(2**31)]
LIMITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 64, 128 * 1024]


def _array(values: list[common_pb2.AnyValue | None]) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[v or common_pb2.AnyValue() for v in values]))


def _kvlist(pairs: list[tuple[str, common_pb2.AnyValue | None]]) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[key_value(k, v) for k, v in pairs]))


def key_value(key: str, value: common_pb2.AnyValue | None) -> common_pb2.KeyValue:
    """A KeyValue; None: the value field absent altogether."""
    return common_pb2.KeyValue(key=key, value=value) if value is not None else common_pb2.KeyValue(key=key)


# -- Hypothesis ----------------------------------------------------------------------------------

TEXT = st.one_of(st.text(alphabet=SPECIAL_CHARACTERS, max_size=10), st.text(max_size=8), st.sampled_from(MODEL_LIKE))
KEYS = st.one_of(st.sampled_from(WANTED_KEYS), st.sampled_from(OTHER_KEYS), TEXT)
SCALARS = st.one_of(
    st.none(),
    TEXT.map(lambda s: common_pb2.AnyValue(string_value=s)),
    st.booleans().map(lambda b: common_pb2.AnyValue(bool_value=b)),
    st.one_of(st.sampled_from(INTS), st.integers(-(2**63), 2**63 - 1)).map(lambda i: common_pb2.AnyValue(int_value=i)),
    st.one_of(st.sampled_from(DOUBLES), st.floats()).map(lambda d: common_pb2.AnyValue(double_value=d)),
    st.binary(max_size=12).map(lambda b: common_pb2.AnyValue(bytes_value=b)),
    st.integers(-3, 3).map(lambda i: common_pb2.AnyValue(string_value_strindex=i)),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(_array), st.lists(st.tuples(KEYS, children), max_size=3).map(_kvlist)
    ),
    max_leaves=6,
)
ATTRIBUTES = st.lists(st.builds(key_value, KEYS, VALUES), max_size=6)
IDS16 = st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from([b"", bytes(16), b"\x01" * 15, b"\x01" * 17]))
IDS8 = st.one_of(st.binary(min_size=8, max_size=8), st.sampled_from([b"", bytes(8), b"\x01" * 7, b"\x01" * 3]))
NANOS = st.one_of(st.sampled_from(TIMES), st.integers(0, 2**64 - 1))
ENUM_VALUES = st.one_of(st.sampled_from(ENUMS), st.integers(-(2**31), 2**31 - 1))
EVENTS = st.builds(
    trace_pb2.Span.Event,
    time_unix_nano=NANOS,
    name=TEXT,
    attributes=ATTRIBUTES,
    dropped_attributes_count=st.integers(0, 2**32 - 1),
)
LINKS = st.builds(
    trace_pb2.Span.Link,
    trace_id=st.binary(max_size=17),
    span_id=st.binary(max_size=9),
    trace_state=TEXT,
    attributes=ATTRIBUTES,
)


@st.composite
def spans(draw: st.DrawFn) -> trace_pb2.Span:
    start = draw(NANOS)
    end = draw(st.one_of(NANOS, st.just(start), st.integers(start, min(2**64 - 1, start + 10**12))))
    return trace_pb2.Span(
        trace_id=draw(IDS16),
        span_id=draw(IDS8),
        parent_span_id=draw(st.one_of(st.just(b""), IDS8)),
        trace_state=draw(TEXT),
        name=draw(TEXT),
        kind=draw(ENUM_VALUES),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=draw(ATTRIBUTES),
        events=draw(st.lists(EVENTS, max_size=2)),
        links=draw(st.lists(LINKS, max_size=2)),
        status=trace_pb2.Status(message=draw(TEXT), code=draw(ENUM_VALUES)),
    )


SCOPE_SPANS = st.builds(
    trace_pb2.ScopeSpans,
    scope=st.builds(common_pb2.InstrumentationScope, name=TEXT, version=TEXT, attributes=ATTRIBUTES),
    spans=st.lists(spans(), max_size=3),
)
REQUESTS = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            trace_pb2.ResourceSpans,
            resource=st.builds(resource_pb2.Resource, attributes=ATTRIBUTES),
            scope_spans=st.lists(SCOPE_SPANS, max_size=2),
        ),
        max_size=2,
    ),
)


# -- plain random ---------------------------------------------------------------------------------


class RandomRequests:
    """The same kinds of requests as the strategies above, from a seeded `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.5:
            return "".join(rng.choice(SPECIAL_CHARACTERS) for _ in range(rng.randint(0, 10)))
        if pick < 0.7:
            return rng.choice(MODEL_LIKE)
        if pick < 0.8:
            return "x" * rng.randint(60, 70)
        return "".join(
            chr(rng.choice((rng.randint(32, 126), rng.randint(0xA0, 0xD7FF), rng.randint(0x10000, 0x10FFFF))))
            for _ in range(rng.randint(0, 8))
        )

    def key(self) -> str:
        pick = self.rng.random()
        if pick < 0.4:
            return self.rng.choice(WANTED_KEYS)
        if pick < 0.7:
            return self.rng.choice(OTHER_KEYS)
        return self.text()

    def value(self, depth: int = 0) -> common_pb2.AnyValue | None:
        rng = self.rng
        kind = rng.randrange(10 if depth < 3 else 8)
        if kind == 0:
            return None
        if kind == 1:
            return common_pb2.AnyValue(string_value=self.text())
        if kind == 2:
            return common_pb2.AnyValue(bool_value=rng.random() < 0.5)
        if kind == 3:
            return common_pb2.AnyValue(int_value=rng.choice((rng.choice(INTS), rng.randint(-(2**63), 2**63 - 1))))
        if kind == 4:
            any_double = struct.unpack("<d", rng.randbytes(8))[0]  # every bit pattern: NaNs, subnormals
            return common_pb2.AnyValue(double_value=rng.choice((rng.choice(DOUBLES), any_double)))
        if kind == 5:
            return common_pb2.AnyValue(bytes_value=rng.randbytes(rng.randint(0, 12)))
        if kind == 6:
            return common_pb2.AnyValue(string_value_strindex=rng.randint(-3, 3))
        if kind == 7:
            return common_pb2.AnyValue(string_value=rng.choice(MODEL_LIKE))
        if kind == 8:
            return _array([self.value(depth + 1) for _ in range(rng.randint(0, 3))])
        return _kvlist([(self.key(), self.value(depth + 1)) for _ in range(rng.randint(0, 3))])

    def attributes(self) -> list[common_pb2.KeyValue]:
        return [key_value(self.key(), self.value()) for _ in range(self.rng.randint(0, 8))]

    def id(self, size: int) -> bytes:
        rng = self.rng
        if rng.random() < 0.85:
            return rng.randbytes(size)
        return rng.choice((b"", bytes(size), rng.randbytes(rng.randint(1, 17))))

    def nanos(self) -> int:
        return self.rng.choice((self.rng.choice(TIMES), self.rng.getrandbits(64)))

    def enum(self) -> int:
        return self.rng.choice((self.rng.choice(ENUMS), self.rng.randint(-(2**31), 2**31 - 1)))

    def span(self) -> trace_pb2.Span:
        rng = self.rng
        start = self.nanos() if rng.random() < 0.3 else T0 + rng.getrandbits(50)
        end = self.nanos() if rng.random() < 0.15 else min(2**64 - 1, start + rng.choice((0, rng.randint(0, 10**12))))
        return trace_pb2.Span(
            trace_id=self.id(16),
            span_id=self.id(8),
            parent_span_id=rng.choice((b"", self.id(8))),
            trace_state=self.text(),
            name=self.text(),
            kind=self.enum(),
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=self.attributes(),
            events=[
                trace_pb2.Span.Event(
                    time_unix_nano=self.nanos(),
                    name=self.text(),
                    attributes=self.attributes(),
                    dropped_attributes_count=rng.choice((0, 0, 3, 2**32 - 1)),
                )
                for _ in range(rng.randint(0, 2))
            ],
            links=[
                trace_pb2.Span.Link(
                    trace_id=rng.randbytes(rng.randint(0, 17)),
                    span_id=rng.randbytes(rng.randint(0, 9)),
                    trace_state=self.text(),
                    attributes=self.attributes(),
                )
                for _ in range(rng.randint(0, 2))
            ],
            status=trace_pb2.Status(message=self.text(), code=self.enum()),
        )

    def request(self) -> ExportTraceServiceRequest:
        rng = self.rng
        return ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=resource_pb2.Resource(attributes=self.attributes()),
                    scope_spans=[
                        trace_pb2.ScopeSpans(
                            scope=common_pb2.InstrumentationScope(
                                name=self.text(), version=self.text(), attributes=self.attributes()
                            ),
                            spans=[self.span() for _ in range(rng.randint(0, 4))],
                        )
                        for _ in range(rng.randint(0, 2))
                    ],
                )
                for _ in range(rng.randint(0, 2))
            ]
        )
