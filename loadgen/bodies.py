"""Pre-serialized request bodies (the pool) and the per-send patch that makes their spans unique.

The pool is built before the clock starts. Sending request number k then costs one `bytes.join` of
a body's pieces with k in between (Template.render): no protobuf work and nothing per span in Python
on the hot path. See ids.py for the id layout.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from .ids import SLOT, SLOT_HEX, RunId
from .workload import BuiltRequest, RequestBuilder, WorkloadSpec

ENCODINGS = ("protobuf", "json")

# Where OTLP/JSON carries ids (as hex, where protobuf's canonical JSON would use base64).
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class PoolError(Exception):
    """The pool could not be built (e.g. a placeholder count did not match)."""


def _ids_to_hex(node: object) -> None:
    """Rewrite every traceId/spanId/parentSpanId in an OTLP dict from base64 to hex, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)


def otlp_json(message: Message) -> bytes:
    """OTLP/JSON: lowerCamelCase keys, enums as integers, int64 as strings, ids as hex."""
    document = MessageToDict(message, use_integers_for_enums=True)
    _ids_to_hex(document)
    return orjson.dumps(document)


def encode(message: Message, encoding: str) -> bytes:
    return message.SerializeToString() if encoding == "protobuf" else otlp_json(message)


@dataclass(frozen=True, slots=True)
class Template:
    """A serialized body cut at its k placeholders.

    Every placeholder of a body takes the same value (the send number k), so rendering is one
    `bytes.join` of the pieces between placeholders with k as the separator: one allocation and one
    copy per request, done in C, with no Python work per span at all.
    """

    segments: tuple[bytes, ...]
    items: int  # spans, log records
    width: int  # 4: protobuf (big-endian k), 8: OTLP/JSON (hex digits of k)

    @property
    def size(self) -> int:
        return sum(map(len, self.segments)) + (len(self.segments) - 1) * self.width

    def render(self, k: int) -> bytes:
        """The body of send number k."""
        separator = k.to_bytes(4, "big") if self.width == 4 else b'%08x"' % k
        return separator.join(self.segments)


def make_template(body: bytes, expected_slots: int, items: int, encoding: str) -> Template:
    """Cut the body at its placeholders; their number must equal the number of trace ids put in it."""
    needle, width = (SLOT, 4) if encoding == "protobuf" else (SLOT_HEX, 8)
    segments = tuple(body.split(needle))
    if len(segments) - 1 != expected_slots:
        raise PoolError(f"found {len(segments) - 1} id placeholders in a {encoding} body, expected {expected_slots}")
    return Template(segments, items, width)


@dataclass(frozen=True, slots=True)
class PoolEntry:
    traces: Template
    logs: Template | None
    span_keys: dict[tuple[bytes, str], int]  # (template part of trace id, span id hex) -> index in body
    series: frozenset[tuple[str, str, str]]


@dataclass(frozen=True, slots=True)
class Pool:
    entries: tuple[PoolEntry, ...]
    spans_per_request: int
    body_bytes: int  # average traces body size
    build_s: float

    @property
    def bytes_per_span(self) -> int:
        return self.body_bytes // max(1, self.spans_per_request)

    def series(self) -> list[tuple[str, str, str]]:
        found: set[tuple[str, str, str]] = set()
        for entry in self.entries:
            found |= entry.series
        return sorted(found)


def _entry(built: BuiltRequest, encoding: str) -> PoolEntry:
    spans = len(built.span_keys)
    traces = make_template(encode(built.traces, encoding), spans, spans, encoding)
    logs = None
    if built.logs is not None:
        logs = make_template(encode(built.logs, encoding), built.log_records, built.log_records, encoding)
    keys = {key: i for i, key in enumerate(built.span_keys)}
    if len(keys) != spans:
        raise PoolError("two spans of one body share a (trace, span) id")
    return PoolEntry(traces, logs, keys, frozenset(built.series))


def build_pool(
    spec: WorkloadSpec,
    run: RunId,
    encoding: str,
    size: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> Pool:
    """`size` distinct bodies. A body whose placeholder count is off (a random timestamp or double
    happened to contain the placeholder bytes: about one in a million bodies) is simply rebuilt."""
    started = time.perf_counter()
    base_ns = time.time_ns()
    builder = RequestBuilder(spec, run, seed, base_ns)
    entries: list[PoolEntry] = []
    attempts = 0
    while len(entries) < size:
        attempts += 1
        if attempts > size * 3 + 10:
            raise PoolError("could not build request bodies with unambiguous id placeholders")
        built = builder.build(len(entries))
        try:
            entries.append(_entry(built, encoding))
        except PoolError:
            continue
        if progress is not None:
            progress(len(entries), size)
    total = sum(e.traces.size for e in entries)
    return Pool(tuple(entries), spec.batch_spans, total // len(entries), time.perf_counter() - started)


def render_rate(pool: Pool, seconds: float = 1.0, gzip: Callable[[bytes], bytes] | None = None) -> float:
    """Spans per second one core can render (copy + patch [+ gzip]): the generator's own ceiling."""
    entries: Iterable[PoolEntry] = pool.entries
    rendered = 0
    k = 1
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for entry in entries:
            body = entry.traces.render(k)
            if gzip is not None:
                gzip(body)
            rendered += entry.traces.items
            k += 1
            if time.perf_counter() >= deadline:
                break
    return rendered / (time.perf_counter() - started)
