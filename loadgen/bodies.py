"""Pre-serialized request bodies (the pool) and the per-send patch that makes their spans unique.

The pool is built before the clock starts. Sending request number k then costs one `bytes.join` of
a body's pieces with k in between (Template.render): no protobuf work and nothing per span in Python
on the hot path. See ids.py for the id layout.
"""

from __future__ import annotations

import base64
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from .ids import SESSION_SLOT, SLOT, SLOT_HEX, USER_SLOT, RunId
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


USER_ROTATIONS = 8  # distinct values the tail users' placeholder takes (workload.py: users)


class Template:
    """A serialized body with its placeholders, rendered for send number k at a given time.

    - Trace ids: every id placeholder takes the same value (the send number k), so that part of the
      rendering is one `bytes.join` of the pieces between placeholders, done in C, nothing per span.
    - Session and user ids: one `bytes.replace` each (same-width hex, so lengths do not change): the
      session block advances every `session_turns` passes over the pool, the tail users rotate.
    - Timestamps: every span, event and log time in the body moves forward by the whole seconds
      elapsed since the pool was built, so spans are dated when they are sent. Re-patching the times
      happens at most once per second per body (`_segments_at`), not per send.
    """

    __slots__ = (
        "_cached_segments",
        "_cached_shift",
        "body",
        "encoding",
        "items",
        "pool_size",
        "session_turns",
        "time_base_ns",
        "times",
        "width",
    )

    def __init__(
        self,
        body: bytes,
        items: int,
        encoding: str,
        times: tuple[tuple[int, int], ...] = (),
        time_base_ns: int = 0,
        pool_size: int = 1,
        session_turns: int = 1,
    ) -> None:
        self.body = body
        self.items = items  # spans, log records
        self.encoding = encoding
        self.width = 4 if encoding == "protobuf" else 8  # big-endian k, or hex digits of k
        self.times = times  # (byte offset, value in ns) of every timestamp in the body
        self.time_base_ns = time_base_ns
        self.pool_size = max(1, pool_size)
        self.session_turns = max(1, session_turns)
        self._cached_shift = 0
        self._cached_segments = self._split(body)

    @property
    def segments(self) -> tuple[bytes, ...]:
        return self._cached_segments

    @property
    def size(self) -> int:
        return len(self.body)

    def _split(self, body: bytes) -> tuple[bytes, ...]:
        return tuple(body.split(SLOT if self.width == 4 else SLOT_HEX))

    def _segments_at(self, now_ns: int | None) -> tuple[bytes, ...]:
        if now_ns is None or not self.times:
            return self._cached_segments
        shift = (now_ns - self.time_base_ns) // 1_000_000_000 * 1_000_000_000
        if shift != self._cached_shift:
            patched = bytearray(self.body)
            if self.width == 4:
                for offset, value in self.times:
                    struct.pack_into("<Q", patched, offset, value + shift)
            else:
                for offset, value in self.times:
                    patched[offset : offset + 19] = b"%019d" % (value + shift)
            self._cached_segments = self._split(bytes(patched))
            self._cached_shift = shift
        return self._cached_segments

    def render(self, k: int, now_ns: int | None = None) -> bytes:
        """The body of send number k, dated `now_ns` (None: as built)."""
        separator = k.to_bytes(4, "big") if self.width == 4 else b'%08x"' % k
        body = separator.join(self._segments_at(now_ns))
        cycle = (k - 1) // self.pool_size  # passes over the pool so far
        body = body.replace(SESSION_SLOT, b"%08x" % (cycle // self.session_turns))
        return body.replace(USER_SLOT, b"%04x" % (cycle % USER_ROTATIONS))


def _timestamps(message: Message) -> Counter[int]:
    """Every span / event / log-record time in a traces or logs request, with multiplicity."""
    found: Counter[int] = Counter()
    for resource in getattr(message, "resource_spans", ()):
        for scope in resource.scope_spans:
            for span in scope.spans:
                found.update((span.start_time_unix_nano, span.end_time_unix_nano))
                found.update(event.time_unix_nano for event in span.events)
    for resource in getattr(message, "resource_logs", ()):
        for scope in resource.scope_logs:
            for record in scope.log_records:
                found.update(t for t in (record.time_unix_nano, record.observed_time_unix_nano) if t)
    return found


def _time_offsets(body: bytes, message: Message, encoding: str) -> tuple[tuple[int, int], ...]:
    """Where each timestamp sits in the body; every one must be found exactly as often as it was set."""
    offsets: list[tuple[int, int]] = []
    for value, count in _timestamps(message).items():
        if encoding == "protobuf":
            needle, skip = struct.pack("<Q", value), 0
        else:
            needle, skip = b'"%d"' % value, 1  # OTLP/JSON: int64 as a decimal string
            if len(needle) != 21:
                raise PoolError(f"timestamp {value} is not 19 digits long")
        found = []
        start = body.find(needle)
        while start >= 0:
            found.append(start + skip)
            start = body.find(needle, start + 1)
        if len(found) != count:
            raise PoolError(f"timestamp {value} found {len(found)} times in a body, set {count} times")
        offsets.extend((offset, value) for offset in found)
    return tuple(sorted(offsets))


def make_template(
    body: bytes,
    expected_slots: int,
    items: int,
    encoding: str,
    message: Message | None = None,
    time_base_ns: int = 0,
    pool_size: int = 1,
    session_turns: int = 1,
) -> Template:
    """Cut the body at its placeholders; their number must equal the number of trace ids put in it.
    With `message`, its timestamps are located so that sends can re-date them."""
    needle = SLOT if encoding == "protobuf" else SLOT_HEX
    if body.count(needle) != expected_slots:
        raise PoolError(f"found {body.count(needle)} id placeholders in a {encoding} body, expected {expected_slots}")
    times = _time_offsets(body, message, encoding) if message is not None else ()
    return Template(body, items, encoding, times, time_base_ns, pool_size, session_turns)


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


def _entry(built: BuiltRequest, encoding: str, time_base_ns: int, pool_size: int, turns: int) -> PoolEntry:
    spans = len(built.span_keys)
    traces = make_template(
        encode(built.traces, encoding), spans, spans, encoding, built.traces, time_base_ns, pool_size, turns
    )
    logs = None
    if built.logs is not None:
        records = built.log_records
        logs = make_template(
            encode(built.logs, encoding), records, records, encoding, built.logs, time_base_ns, pool_size, turns
        )
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
            entries.append(_entry(built, encoding, base_ns, size, spec.session_turns))
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
            body = entry.traces.render(k, time.time_ns())
            if gzip is not None:
                gzip(body)
            rendered += entry.traces.items
            k += 1
            if time.perf_counter() >= deadline:
                break
    return rendered / (time.perf_counter() - started)
