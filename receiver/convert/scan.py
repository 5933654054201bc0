"""Count what a request holds before decoding it, and charge that to its budget.

Protobuf: `WireScanner` walks the wire format with the request type's schema (taken from the protobuf
descriptors) and counts, per message type, the messages upb would make, and the elements of repeated
scalar fields. It runs in C without the GIL (receiver/convert/_fastotlp.c); `_PureScanner` is the same
walk in Python for when the extension is not built. Both refuse what upb refuses about structure
(broken wire format, over-long sizes, bad groups, nesting deeper than 100) and never more; neither
looks inside strings.

OTLP/JSON: `scan_json` counts objects and arrays (and the deepest nesting) without parsing.

`CostModel` turns counts into the memory a decoder will take, per path (`native`: the C trace decoder;
`upb`: upb's parse and the Python converters; `json`: orjson, then upb, then a converter). Its figures
are measured: `python -m benchmarks.amplification` prints, per hostile shape, the estimate next to the
peak memory the decode really took, and the estimate must stay above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from receiver.convert.budget import DecodeBudget
from receiver.convert.common import WireFormatError

try:
    from receiver.convert import _fastotlp
except ImportError:  # built without a C compiler: the pure scanners serve
    _fastotlp = None

MAX_DEPTH = 100  # upb's nesting limit (the request is depth 0)

# Field kinds the scanner counts (the values _fastotlp uses).
MESSAGE, VARINTS, FIXED64S, FIXED32S, STRINGS = 1, 2, 3, 4, 5

_VARINT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
}
_FIXED64_TYPES = {FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_DOUBLE}
_FIXED32_TYPES = {FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_FLOAT}

# What the limits count. Items: what becomes a row. Containers: the repeated messages that hold items
# or hang off them and cost memory of their own whatever they hold.
_ITEM, _CONTAINER = 1, 2  # kinds of message in RequestScanner.charge's weights
ITEM_TYPES = frozenset(
    {
        "opentelemetry.proto.trace.v1.Span",
        "opentelemetry.proto.metrics.v1.NumberDataPoint",
        "opentelemetry.proto.metrics.v1.HistogramDataPoint",
        "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint",
        "opentelemetry.proto.metrics.v1.SummaryDataPoint",
        "opentelemetry.proto.logs.v1.LogRecord",
    }
)
CONTAINER_TYPES = frozenset(
    {
        "opentelemetry.proto.trace.v1.ResourceSpans",
        "opentelemetry.proto.trace.v1.ScopeSpans",
        "opentelemetry.proto.trace.v1.Span.Event",
        "opentelemetry.proto.trace.v1.Span.Link",
        "opentelemetry.proto.metrics.v1.ResourceMetrics",
        "opentelemetry.proto.metrics.v1.ScopeMetrics",
        "opentelemetry.proto.metrics.v1.Metric",
        "opentelemetry.proto.metrics.v1.Exemplar",
        "opentelemetry.proto.logs.v1.ResourceLogs",
        "opentelemetry.proto.logs.v1.ScopeLogs",
    }
)


@dataclass(frozen=True, slots=True)
class ScanTable:
    """A request type's schema as the scanners read it: per message type (0 = the request), the fields
    worth counting as (field number, kind, child type index or -1)."""

    names: tuple[str, ...]
    types: tuple[tuple[tuple[int, int, int], ...], ...]


def scan_table(request: Descriptor) -> ScanTable:
    names: list[str] = [request.full_name]
    index = {request.full_name: 0}
    descriptors = [request]
    types: list[tuple[tuple[int, int, int], ...]] = []
    position = 0
    while position < len(descriptors):
        message = descriptors[position]
        position += 1
        fields: list[tuple[int, int, int]] = []
        for f in message.fields:
            if f.message_type is not None:
                child = f.message_type
                if child.full_name not in index:
                    index[child.full_name] = len(names)
                    names.append(child.full_name)
                    descriptors.append(child)
                fields.append((f.number, MESSAGE, index[child.full_name]))
            elif f.is_repeated:
                if f.type in _VARINT_TYPES:
                    fields.append((f.number, VARINTS, -1))
                elif f.type in _FIXED64_TYPES:
                    fields.append((f.number, FIXED64S, -1))
                elif f.type in _FIXED32_TYPES:
                    fields.append((f.number, FIXED32S, -1))
                else:
                    fields.append((f.number, STRINGS, -1))
        types.append(tuple(fields))
    return ScanTable(tuple(names), tuple(types))


@dataclass(slots=True)
class WireCounts:
    """What a scan found: messages per type name (the request itself not counted), elements of repeated
    scalar fields, and whether the scan stopped early (past `max_messages`: the counts are a floor)."""

    messages: dict[str, int]
    scalars: int = 0
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.messages.values())


# -- the pure scanner (the C one's twin) --------------------------------------------------------


class _Refused(Exception):
    def __init__(self, what: str, at: int) -> None:
        super().__init__(f"{what} at byte {at}")


class _Stop(Exception):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for i in range(10):
        if pos + i >= end:
            raise _Refused("truncated varint", pos)
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos + i + 1
    raise _Refused("varint longer than 10 bytes", pos)


def _tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, after = _varint(data, pos, end)
    if after - pos > 5 or value > 0xFFFFFFFF:
        raise _Refused("invalid field tag", pos)
    return value, after


def _value(data: bytes, pos: int, end: int, at: int, wire_type: int) -> tuple[int, int, int]:
    """(value or payload start, payload length, position after) of a field whose tag was read."""
    if wire_type == 0:
        value, pos = _varint(data, pos, end)
        return value, 0, pos
    if wire_type == 1:
        if end - pos < 8:
            raise _Refused("truncated fixed64 field", at)
        return 0, 0, pos + 8
    if wire_type == 5:
        if end - pos < 4:
            raise _Refused("truncated fixed32 field", at)
        return 0, 0, pos + 4
    if wire_type == 2:
        size_at = pos
        length, pos = _varint(data, pos, end)
        if pos - size_at > 5:
            raise _Refused("length of a length-delimited field longer than 5 bytes", size_at)
        if length >= 0x7FFFFFFF or length > end - pos:
            raise _Refused("length-delimited field runs past the end of its message", at)
        return pos, length, pos + length
    if wire_type == 4:
        raise _Refused("end-group tag without its start-group", at)
    raise _Refused("invalid wire type", at)


def _skip_group(data: bytes, pos: int, end: int, number: int, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise _Refused("messages nested deeper than 100 levels", pos)
    while True:
        if pos >= end:
            raise _Refused("group not closed", pos)
        at = pos
        tag, pos = _tag(data, pos, end)
        wire_type = tag & 7
        if wire_type == 4:
            if tag >> 3 == number:
                return pos
            raise _Refused("end-group tag does not match its start-group", at)
        if wire_type == 3:
            pos = _skip_group(data, pos, end, tag >> 3, depth + 1)
            continue
        _, _, pos = _value(data, pos, end, at, wire_type)


class _PureScanner:
    """WireScanner in Python: the same walk, the same refusals, the same counts."""

    def __init__(self, table: ScanTable) -> None:
        self._fields = [{number: (kind, child) for number, kind, child in fields} for fields in table.types]
        self._descend = [bool(fields) for fields in table.types]

    def scan(self, body: bytes, max_messages: int) -> tuple[list[int], int, bool]:
        counts = [0] * len(self._fields)
        state = [0, 0]  # messages, scalars
        try:
            self._message(body, 0, len(body), 0, 0, counts, state, max_messages)
            stopped = False
        except _Stop:
            stopped = True
        except _Refused as exc:
            raise WireFormatError(str(exc)) from None
        return counts, state[1], stopped

    def weigh(
        self, body: bytes, max_messages: int, weights: tuple[tuple[int, int], ...]
    ) -> tuple[int, int, int, int, bool]:
        """scan() summed by weights[i] = (bytes, kind): (items, containers, message bytes, scalars, stopped)."""
        counts, scalars, stopped = self.scan(body, max_messages)
        items = containers = nbytes = 0
        for n, (cost, kind) in zip(counts, weights, strict=True):
            nbytes += n * cost
            if kind == _ITEM:
                items += n
            elif kind == _CONTAINER:
                containers += n
        return items, containers, nbytes, scalars, stopped

    def _message(
        self, data: bytes, pos: int, end: int, kind_of: int, depth: int, counts: list[int], state: list[int], cap: int
    ) -> None:
        fields = self._fields[kind_of]
        while pos < end:
            at = pos
            tag, pos = _tag(data, pos, end)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 3:
                if number == 0:
                    raise _Refused("field number 0", at)
                pos = _skip_group(data, pos, end, number, depth + 1)
                continue
            value, length, pos = _value(data, pos, end, at, wire_type)
            if number == 0:
                raise _Refused("field number 0", at)
            slot = fields.get(number)
            if slot is None:
                continue
            kind, child = slot
            if kind == MESSAGE:
                if wire_type != 2:
                    continue
                if depth + 1 > MAX_DEPTH:
                    raise _Refused("messages nested deeper than 100 levels", value)
                counts[child] += 1
                state[0] += 1
                if state[0] > cap:
                    raise _Stop
                if self._descend[child]:
                    self._message(data, value, value + length, child, depth + 1, counts, state, cap)
            elif kind == VARINTS:
                if wire_type == 0:
                    state[1] += 1
                elif wire_type == 2:
                    state[1] += sum(1 for byte in data[value : value + length] if byte < 0x80)
            elif kind == FIXED64S:
                state[1] += 1 if wire_type == 1 else (length + 7) // 8 if wire_type == 2 else 0
            elif kind == FIXED32S:
                state[1] += 1 if wire_type == 5 else (length + 3) // 4 if wire_type == 2 else 0
            elif kind == STRINGS and wire_type == 2:
                state[1] += 1


class RequestScanner:
    """Scans the requests of one type: the C scanner when built, else the pure one."""

    def __init__(self, request: Descriptor, native: bool = True) -> None:
        self.table = scan_table(request)
        if native and _fastotlp is not None and hasattr(_fastotlp, "WireScanner"):
            self._scanner: Any = _fastotlp.WireScanner(types=self.table.types, error=WireFormatError)
        else:
            self._scanner = _PureScanner(self.table)
        self._weights: dict[str, tuple[tuple[int, int], ...]] = {}  # per decode path, by type index (charge)

    @property
    def native(self) -> bool:
        return not isinstance(self._scanner, _PureScanner)

    def charge(self, body: bytes, max_messages: int, path: str) -> tuple[Charge, bool]:
        """(protobuf_charge(self.scan(body, max_messages), len(body), path), stopped), with the counts
        summed by the scanner itself (`weigh`): it runs for every request."""
        weights = self._weights.get(path)
        if weights is None:
            weights = self._weights[path] = self._weights_for(path)
        items, containers, message_bytes, scalars, stopped = self._scanner.weigh(bytes(body), max_messages, weights)
        costs = COSTS[path]
        nbytes = int(len(body) * costs.body) + scalars * costs.scalar + message_bytes
        return Charge(items, containers, nbytes), stopped

    def _weights_for(self, path: str) -> tuple[tuple[int, int], ...]:
        """(bytes charged per message, kind) for each type index; the request itself (index 0) is free."""
        costs = COSTS[path]
        weights = [(0, 0)]
        for name in self.table.names[1:]:
            cost = costs.messages.get(name, costs.message)
            if name in ITEM_TYPES:
                weights.append((cost + costs.row, _ITEM))
            else:
                weights.append((cost, _CONTAINER if name in CONTAINER_TYPES else 0))
        return tuple(weights)

    def scan(self, body: bytes, max_messages: int = 1 << 62) -> WireCounts:
        """Counts of `body`; raises WireFormatError for bytes upb would refuse. Stops (counts are then
        a floor) once more than `max_messages` messages were seen."""
        counts, scalars, stopped = self._scanner.scan(bytes(body), max_messages)
        names = self.table.names
        return WireCounts({names[i]: n for i, n in enumerate(counts) if n and i}, scalars, stopped)


# -- OTLP/JSON -----------------------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)


@dataclass(frozen=True, slots=True)
class JsonCounts:
    objects: int
    arrays: int
    max_depth: int  # 0 when not measured (the pure scanner)


def scan_json(body: bytes) -> JsonCounts:
    """Objects and arrays of a JSON body, counted without parsing it (strings skipped)."""
    if _fastotlp is not None and hasattr(_fastotlp, "scan_json"):
        return JsonCounts(*_fastotlp.scan_json(bytes(body)))
    structure = _JSON_STRING.sub(b'""', body)
    return JsonCounts(structure.count(b"{"), structure.count(b"["), 0)


# -- what counts cost ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathCosts:
    """Memory per thing counted, on one decode path, in bytes. `body`: per byte of the (decompressed)
    body: the body itself, and what the path copies of it (upb copies strings). `message`: per message,
    unless `messages` names its type. `scalar`: per element of a repeated scalar field. `row`: per item,
    on top of its message: the row tuple, timestamps, ids, LLM columns (its text is charged as it is made).
    """

    body: float
    message: int
    scalar: int
    row: int
    messages: dict[str, int] = field(default_factory=dict)


_TRACE = "opentelemetry.proto.trace.v1."
_COMMON = "opentelemetry.proto.common.v1."
_METRICS = "opentelemetry.proto.metrics.v1."

# Measured with `python -m benchmarks.amplification --unlimited` (the peak RSS growth of the hostile shape
# that isolates each thing, divided by how many it holds), then rounded up by about a quarter. native:
# what stays of a message is at most a segment pointer (attribute maps and the text are charged by the
# decoder as they grow); upb: the message in upb's arena, and what the Python converter builds from it
# (a span event becomes a dict before it becomes JSON).
COSTS: dict[str, PathCosts] = {
    "native": PathCosts(body=1.0, message=24, scalar=16, row=1200),
    "upb": PathCosts(
        body=2.0,
        message=96,
        scalar=48,
        row=1000,
        messages={
            _TRACE + "Span": 240,
            _TRACE + "Span.Event": 560,
            _TRACE + "Span.Link": 560,
            _METRICS + "Metric": 128,
            _METRICS + "HistogramDataPoint": 192,
            _METRICS + "ExponentialHistogramDataPoint": 192,
            _METRICS + "SummaryDataPoint": 192,
            _METRICS + "Exemplar": 560,
            "opentelemetry.proto.logs.v1.LogRecord": 192,
        },
    ),
}


@dataclass(frozen=True)
class JsonCosts:
    """OTLP/JSON: orjson's document (per object, per array, per byte: strings up to 4 bytes per
    character, numbers) and the upb message parsed from it; then what the upb path's converters make of
    the items and containers `count_json` finds."""

    body: float = 8.0
    object: int = 256
    array: int = 128


JSON_COSTS = JsonCosts()


@dataclass(frozen=True, slots=True)
class Charge:
    items: int
    containers: int
    nbytes: int


def protobuf_charge(counts: WireCounts, body_bytes: int, path: str) -> Charge:
    """What a scan's counts cost, weighed by type name: the statement of the costs that
    RequestScanner.charge (the request path's, by type index) is tested against."""
    costs = COSTS[path]
    items = containers = 0
    nbytes = int(body_bytes * costs.body) + counts.scalars * costs.scalar
    for name, n in counts.messages.items():
        nbytes += n * costs.messages.get(name, costs.message)
        if name in ITEM_TYPES:
            items += n
            nbytes += n * costs.row
        elif name in CONTAINER_TYPES:
            containers += n
    return Charge(items, containers, nbytes)


def json_charge(counts: JsonCounts, body_bytes: int) -> int:
    return int(body_bytes * JSON_COSTS.body + counts.objects * JSON_COSTS.object + counts.arrays * JSON_COSTS.array)


def json_items_charge(items: int, containers: int) -> int:
    """What the upb path makes of a JSON document's items and containers (costed like events: the
    costliest container), on top of their objects."""
    upb = COSTS["upb"]
    return items * (upb.row + upb.messages[_TRACE + "Span"]) + containers * upb.messages[_TRACE + "Span.Event"]


# The least any message is charged, on any path (max_messages, per request: computed once).
_CHEAPEST_MESSAGE = max(1, min(min([c.message, *c.messages.values()]) for c in COSTS.values()))


def max_messages(budget: DecodeBudget) -> int:
    """A scan may stop past this many messages: at the cheapest, they would already exceed the budget."""
    return budget.max_bytes // _CHEAPEST_MESSAGE + 1


def charge_protobuf(budget: DecodeBudget, scanner: RequestScanner, body: bytes, path: str) -> Charge:
    """Scan `body` and charge what it holds before it is decoded; raises WireFormatError, LimitExceeded,
    MemoryBusy."""
    charge, stopped = scanner.charge(body, max_messages(budget), path)
    budget.charge(items=charge.items, containers=charge.containers, nbytes=charge.nbytes)
    if stopped:  # cannot happen: past max_messages the charge is over the budget
        raise AssertionError("a scan stopped early but its counts fit the budget")
    return charge


def charge_json(budget: DecodeBudget, body: bytes) -> JsonCounts:
    counts = scan_json(body)
    budget.charge(nbytes=json_charge(counts, len(body)))
    return counts
