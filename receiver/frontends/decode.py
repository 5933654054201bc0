"""Request bodies -> rows, bounded: gunzip, scan, protobuf or OTLP/JSON parse, convert.

`decode_request` is the whole of it for one request (live or replayed from the spool). It runs in a
worker thread, off the event loop, and every step charges the request's budget (`options.budget`,
receiver.convert.budget) before it allocates: gunzip is capped at otlp.max_request_bytes, a scan of
the bytes counts items, containers and the memory they will take before any decoder runs, and the
converters charge the text they make. Past a bound the request is refused and nothing of it is kept.

OTLP/JSON differs from protobuf's canonical JSON: trace and span ids are hex, not base64. And a value
that cannot be represented must reject only its item (partial success), not the whole request, so
JSON is parsed envelope by envelope and item by item rather than in one `ParseDict` call.
"""

from __future__ import annotations

import base64
import gc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.trace.v1 import trace_pb2

from receiver.convert.budget import DecodeBudget
from receiver.convert.common import Converted, ConvertOptions, WireFormatError
from receiver.convert.pgvalues import untrack_rows
from receiver.convert.scan import Charge, RequestScanner, charge_json, charge_protobuf, json_items_charge

try:
    from receiver.convert import _otlpjson
except ImportError:  # built without a C compiler: OTLP/JSON traces take json_format
    _otlpjson = None
try:
    from receiver.convert import _jsonwire
except ImportError:  # built without a C compiler: OTLP/JSON takes orjson and the paths below
    _jsonwire = None

if TYPE_CHECKING:
    from receiver.frontends.signals import SignalSpec


class MalformedRequest(Exception):
    """The body is not a valid OTLP message (HTTP 400 / gRPC INVALID_ARGUMENT); not retryable."""


class RequestTooLarge(Exception):
    """The body exceeds the size limit after decompression (HTTP 413 / gRPC RESOURCE_EXHAUSTED)."""


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body without ever holding more than `limit` + 1 bytes of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise RequestTooLarge(f"decompressed body exceeds the {limit}-byte limit (otlp.max_request_bytes)")
    if not inflater.eof:
        raise MalformedRequest("gzip body is truncated")
    return out


def parse_protobuf(message_type: type[Message], body: bytes) -> Message:
    message = message_type()
    try:
        message.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise malformed(message_type, exc) from None
    return message


def malformed(message_type: type[Message], exc: Exception) -> MalformedRequest:
    """The refusal of protobuf bytes: upb's, and the scanner's and native converters' (which refuse
    exactly what upb refuses), in one message."""
    return MalformedRequest(f"body is not a valid {message_type.DESCRIPTOR.name} protobuf: {exc}")


@dataclass(frozen=True, slots=True)
class JsonEnvelope:
    """Where the items sit in one signal's OTLP/JSON request, and which item fields hold hex ids.

    Metrics have one more level: an item (a Metric) holds its data points inside one of several type
    objects (`gauge`, `sum`, ...). With `point_containers` set, the item's own fields are parsed first
    and then each data point on its own, so one unrepresentable value rejects its point, not the
    metric; rejections are counted in points (`rejected_data_points`). A metric whose own fields do
    not parse rejects all its points (at least one).
    """

    resource_list: str  # "resourceSpans"
    scope_list: str  # "scopeSpans"
    item_list: str  # "spans"
    item_noun: str  # "span", for error messages
    id_fields: tuple[str, ...]  # hex id fields of an item
    nested_id_lists: tuple[tuple[str, ...], ...] = ()  # paths to lists of dicts with hex ids
    point_containers: tuple[str, ...] = ()  # item keys holding {"dataPoints": [...], ...}
    point_list: str = "dataPoints"
    point_id_lists: tuple[tuple[str, ...], ...] = ()  # paths, inside a point, to lists with hex ids
    # Lists inside an item (or, for metrics, inside a point) whose entries count as containers for
    # limits.max_containers_per_request: events and links of a span, exemplars of a point.
    container_lists: tuple[str, ...] = ()
    # True: an id that is not hex is dropped (the converter stores NULL) instead of rejecting the
    # item. For logs and exemplars the ids are optional correlation, not identity.
    lenient_ids: bool = False


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_to_b64(item: dict[str, Any], field: str, lenient: bool = False) -> None:
    value = item.get(field)
    if value is None or value == "":
        return
    try:
        if not isinstance(value, str):
            raise ValueError(f"{field} must be a hex string, got {type(value).__name__}")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{field} {value[:40]!r} is not a hex string") from None
    except ValueError:
        if not lenient:
            raise
        del item[field]
        return
    item[field] = base64.b64encode(raw).decode("ascii")


def _fix_ids(item: dict[str, Any], envelope: JsonEnvelope) -> None:
    for field in envelope.id_fields:
        _hex_to_b64(item, field, envelope.lenient_ids)
    for path in envelope.nested_id_lists:
        _fix_nested(item, path, envelope.lenient_ids)


def _fix_nested(node: Any, path: tuple[str, ...], lenient: bool = False) -> None:
    if not isinstance(node, dict):
        return
    child = node.get(path[0])
    if len(path) == 1:
        if isinstance(child, list):
            for entry in child:
                if isinstance(entry, dict):
                    for field in _ID_FIELDS:
                        _hex_to_b64(entry, field, lenient)
        return
    if isinstance(child, list):
        for entry in child:
            _fix_nested(entry, path[1:], lenient)
    else:
        _fix_nested(child, path[1:], lenient)


@dataclass(slots=True)
class JsonParse:
    message: Message
    rejected: int
    errors: list[str]


def _lists(node: Any, key: str) -> list[Any]:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, list) else []


def count_json(document: dict[str, Any], envelope: JsonEnvelope) -> tuple[int, int]:
    """(items, containers) of a parsed OTLP/JSON document, as the limits count them."""
    items = containers = 0
    for resource in _lists(document, envelope.resource_list):
        containers += 1
        for scope in _lists(resource, envelope.scope_list):
            containers += 1
            entries = _lists(scope, envelope.item_list)
            if not envelope.point_containers:
                items += len(entries)
                for item in entries:
                    for key in envelope.container_lists:
                        containers += len(_lists(item, key))
                continue
            containers += len(entries)  # metrics hold the points
            for metric in entries:
                if not isinstance(metric, dict):
                    continue
                for key in envelope.point_containers:
                    points = _lists(metric.get(key), envelope.point_list)
                    items += len(points)
                    for point in points:
                        for list_key in envelope.container_lists:
                            containers += len(_lists(point, list_key))
    return items, containers


def load_json(
    envelope: JsonEnvelope, body: bytes, budget: DecodeBudget | None, scanned: bool = False
) -> dict[str, Any]:
    """Parse an OTLP/JSON body with orjson; with a budget, its objects and arrays are charged before it
    is parsed (unless `scanned`: the transcoder's try charged them already), and its items and
    containers after (before anything is made of them)."""
    if budget is not None and not scanned:
        charge_json(budget, bytes(body))
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedRequest("OTLP/JSON body must be a JSON object")
    if budget is not None:
        items, containers = count_json(document, envelope)
        budget.charge(items=items, containers=containers, nbytes=json_items_charge(items, containers))
    return document


def parse_json(
    message_type: type[Message],
    envelope: JsonEnvelope,
    body: bytes,
    max_errors: int = 5,
    budget: DecodeBudget | None = None,
    scanned: bool = False,
) -> JsonParse:
    """OTLP/JSON body -> request message holding every item that parsed; the rest are rejected.

    With a budget: the body's objects and arrays are charged before orjson parses it (unless `scanned`),
    and its items and containers before they are parsed one by one."""
    document = load_json(envelope, body, budget, scanned)
    request = message_type()
    rejected = 0
    errors: list[str] = []
    resource_entries = document.get(envelope.resource_list) or []
    if not isinstance(resource_entries, list):
        raise MalformedRequest(f"{envelope.resource_list} must be a list")
    resource_field = request.DESCRIPTOR.fields_by_camelcase_name[envelope.resource_list]
    index = 0
    for resource_entry in resource_entries:
        if not isinstance(resource_entry, dict):
            raise MalformedRequest(f"each {envelope.resource_list} entry must be an object")
        target = getattr(request, resource_field.name).add()
        scope_entries = resource_entry.get(envelope.scope_list) or []
        header = {k: v for k, v in resource_entry.items() if k != envelope.scope_list}
        try:
            ParseDict(header, target, ignore_unknown_fields=True)
        except (ParseError, ValueError, TypeError) as exc:
            raise MalformedRequest(f"{envelope.resource_list}[].resource: {exc}") from None
        if not isinstance(scope_entries, list):
            raise MalformedRequest(f"{envelope.scope_list} must be a list")
        scope_field = target.DESCRIPTOR.fields_by_camelcase_name[envelope.scope_list]
        for scope_entry in scope_entries:
            if not isinstance(scope_entry, dict):
                raise MalformedRequest(f"each {envelope.scope_list} entry must be an object")
            scope_target = getattr(target, scope_field.name).add()
            items = scope_entry.get(envelope.item_list) or []
            scope_header = {k: v for k, v in scope_entry.items() if k != envelope.item_list}
            try:
                ParseDict(scope_header, scope_target, ignore_unknown_fields=True)
            except (ParseError, ValueError, TypeError) as exc:
                raise MalformedRequest(f"{envelope.scope_list}[].scope: {exc}") from None
            if not isinstance(items, list):
                raise MalformedRequest(f"{envelope.item_list} must be a list")
            item_field = scope_target.DESCRIPTOR.fields_by_camelcase_name[envelope.item_list]
            item_list = getattr(scope_target, item_field.name)
            for item in items:
                if envelope.point_containers:
                    room = max_errors - len(errors)
                    n, item_errors = _parse_item_with_points(item, item_list, envelope, index, room)
                    rejected += n
                    errors.extend(item_errors)
                    index += 1
                    continue
                added = None
                try:
                    if not isinstance(item, dict):
                        raise ValueError("must be a JSON object")
                    _fix_ids(item, envelope)
                    added = item_list.add()
                    ParseDict(item, added, ignore_unknown_fields=True)
                except (ParseError, ValueError, TypeError) as exc:
                    if added is not None:
                        del item_list[-1]
                    rejected += 1
                    if len(errors) < max_errors:
                        errors.append(f"{envelope.item_noun} {index}: {exc}")
                index += 1
    return JsonParse(request, rejected, errors)


def _parse_item_with_points(
    item: Any, item_list: Any, envelope: JsonEnvelope, index: int, max_errors: int
) -> tuple[int, list[str]]:
    """Parse one metric: its own fields, then each data point alone.

    Returns (points rejected, at most `max_errors` messages)."""
    noun = envelope.item_noun
    if not isinstance(item, dict):
        return 1, [f"{noun} {index}: must be a JSON object"][:max_errors]
    present = [key for key in envelope.point_containers if item.get(key) is not None]
    container = item.get(present[0]) if present else None
    points = container.get(envelope.point_list) if isinstance(container, dict) else None
    n_points = len(points) if isinstance(points, list) else 1
    name = item.get("name")
    label = f"{noun} {index}" + (f" ({name[:64]!r})" if isinstance(name, str) else "")
    added = item_list.add()
    try:
        if len(present) > 1:
            raise ValueError(f"has more than one of {', '.join(present)}")
        if present and not isinstance(container, dict):
            raise ValueError(f"{present[0]} must be a JSON object")
        if points is not None and not isinstance(points, list):
            raise ValueError(f"{present[0]}.{envelope.point_list} must be a list")
        header = {k: v for k, v in item.items() if k not in envelope.point_containers}
        ParseDict(header, added, ignore_unknown_fields=True)
        if not present:
            return 0, []
        key = present[0]
        target = getattr(added, added.DESCRIPTOR.fields_by_camelcase_name[key].name)
        target.SetInParent()  # the metric's type is set even when it has no points
        ParseDict({k: v for k, v in container.items() if k != envelope.point_list}, target, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError) as exc:
        del item_list[-1]
        return max(1, n_points), [f"{label}: {exc}"][:max_errors]
    if not points:
        return 0, []
    point_list = getattr(target, target.DESCRIPTOR.fields_by_camelcase_name[envelope.point_list].name)
    rejected = 0
    errors: list[str] = []
    for point_index, point in enumerate(points):
        added_point = None
        try:
            if not isinstance(point, dict):
                raise ValueError("must be a JSON object")
            for path in envelope.point_id_lists:
                _fix_nested(point, path, envelope.lenient_ids)
            added_point = point_list.add()
            ParseDict(point, added_point, ignore_unknown_fields=True)
        except (ParseError, ValueError, TypeError) as exc:
            if added_point is not None:
                del point_list[-1]
            rejected += 1
            if len(errors) < max_errors:
                errors.append(f"{label} data point {point_index}: {exc}")
    return rejected, errors


# -- OTLP/JSON traces straight to protobuf bytes -------------------------------------------------


@dataclass(slots=True)
class JsonWire:
    protobuf: bytes  # the request holding every span that parsed, as protobuf
    rejected: int
    errors: list[str]


_TAGS = {field: bytes(((field << 3) | 2,)) for field in (1, 2)}
_SMALL_LENGTHS = tuple(bytes((n,)) for n in range(128))


def _framed(parts: list[bytes], field: int, payload: bytes) -> None:
    """Append `payload` to `parts` as length-delimited field `field` (a message in a repeated field)."""
    n = len(payload)
    if n < 128:
        parts += (_TAGS[field], _SMALL_LENGTHS[n], payload)
        return
    length = bytearray()
    while n >= 0x80:
        length.append((n & 0x7F) | 0x80)
        n >>= 7
    length.append(n)
    parts += (_TAGS[field], bytes(length), payload)


def _header_by_json_format(message_type: type[Message], header: dict[str, Any], where: str) -> bytes:
    """A ResourceSpans / ScopeSpans header the C encoder left to json_format (the reference parse)."""
    message = message_type()
    try:
        ParseDict(header, message, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError) as exc:
        raise MalformedRequest(f"{where}: {exc}") from None
    return message.SerializeToString()


def _span_by_json_format(item: Any, envelope: JsonEnvelope) -> bytes:
    """A span the C encoder left to json_format: parsed exactly as parse_json parses an item."""
    if not isinstance(item, dict):
        raise ValueError("must be a JSON object")
    _fix_ids(item, envelope)
    message = trace_pb2.Span()
    ParseDict(item, message, ignore_unknown_fields=True)
    return message.SerializeToString()


def encode_json_traces(document: dict[str, Any], envelope: JsonEnvelope, max_errors: int = 5) -> JsonWire:
    """An OTLP/JSON trace document (orjson's dicts) -> ExportTraceServiceRequest bytes, span by span.

    The C encoder (receiver.convert._otlpjson) writes each span, resource and scope header it is sure
    of; what it leaves (None: an unusual form or a bad value) is parsed by json_format as parse_json
    does. So a span is accepted or refused, with the same message, exactly as parse_json would, and
    the bytes hold what its message would hold (the converter then reads them like a protobuf
    request: the same rows)."""
    assert _otlpjson is not None
    encode_span = _otlpjson.span
    resource_entries = document.get(envelope.resource_list) or []
    if not isinstance(resource_entries, list):
        raise MalformedRequest(f"{envelope.resource_list} must be a list")
    request: list[bytes] = []
    rejected = 0
    errors: list[str] = []
    index = 0
    for resource_entry in resource_entries:
        if not isinstance(resource_entry, dict):
            raise MalformedRequest(f"each {envelope.resource_list} entry must be an object")
        scope_entries = resource_entry.get(envelope.scope_list) or []
        header = _otlpjson.resource_spans_header(resource_entry)
        if header is None:
            fields = {k: v for k, v in resource_entry.items() if k != envelope.scope_list}
            header = _header_by_json_format(trace_pb2.ResourceSpans, fields, f"{envelope.resource_list}[].resource")
        if not isinstance(scope_entries, list):
            raise MalformedRequest(f"{envelope.scope_list} must be a list")
        resource = [header]
        for scope_entry in scope_entries:
            if not isinstance(scope_entry, dict):
                raise MalformedRequest(f"each {envelope.scope_list} entry must be an object")
            items = scope_entry.get(envelope.item_list) or []
            scope_header = _otlpjson.scope_spans_header(scope_entry)
            if scope_header is None:
                fields = {k: v for k, v in scope_entry.items() if k != envelope.item_list}
                scope_header = _header_by_json_format(trace_pb2.ScopeSpans, fields, f"{envelope.scope_list}[].scope")
            if not isinstance(items, list):
                raise MalformedRequest(f"{envelope.item_list} must be a list")
            scope = [scope_header]
            for item in items:
                encoded = encode_span(item) if isinstance(item, dict) else None
                if encoded is None:
                    try:
                        encoded = _span_by_json_format(item, envelope)
                    except (ParseError, ValueError, TypeError) as exc:
                        rejected += 1
                        if len(errors) < max_errors:
                            errors.append(f"{envelope.item_noun} {index}: {exc}")
                        index += 1
                        continue
                _framed(scope, 2, encoded)
                index += 1
            _framed(resource, 2, b"".join(scope))
        _framed(request, 1, b"".join(resource))
    return JsonWire(b"".join(request), rejected, errors)


# -- one request, bounded ------------------------------------------------------------------------


@dataclass(slots=True)
class Decoded:
    converted: Converted  # rejections include the items OTLP/JSON parsing refused
    protobuf: bytes | None  # the request as protobuf when at hand (the spool stores it)
    message: Message | None  # else the parsed message


_SCANNERS: dict[str, RequestScanner] = {}


def scanner_for(message_type: type[Message]) -> RequestScanner:
    """The wire scanner of a request type (built once; immutable, shared by every thread)."""
    name = message_type.DESCRIPTOR.full_name
    scanner = _SCANNERS.get(name)
    if scanner is None:
        scanner = _SCANNERS[name] = RequestScanner(message_type.DESCRIPTOR)
    return scanner


# (signal, options.native) -> (scanner_for, decode_path): both fixed once the extensions have imported.
_CHARGING: dict[tuple[str, bool], tuple[RequestScanner, str]] = {}


def decode_path(spec: SignalSpec, options: ConvertOptions) -> str:
    """Which decoder protobuf bodies of this signal take: native (the C decoders) or upb."""
    return "native" if spec.convert_bytes is not None and options.native and spec.native_available() else "upb"


def charge_request(spec: SignalSpec, body: bytes, options: ConvertOptions) -> Charge:
    """Scan a protobuf body (decompressed) and charge `options.budget` (which must be set) for what it
    holds, before anything is decoded: decode_request's first step, which the caller may take apart
    (`charged=True`) to judge the request's size by what it holds. Raises MalformedRequest,
    LimitExceeded, MemoryBusy."""
    budget = options.budget
    assert budget is not None
    budget.set_body(len(body))
    key = (spec.name, options.native)
    charging = _CHARGING.get(key)
    if charging is None:
        charging = _CHARGING[key] = (scanner_for(spec.request_type), decode_path(spec, options))
    try:
        return charge_protobuf(budget, charging[0], bytes(body), charging[1])
    except WireFormatError as exc:
        raise malformed(spec.request_type, exc) from None


def decode_request(
    spec: SignalSpec, body: bytes, json: bool, options: ConvertOptions, *, charged: bool = False
) -> Decoded:
    """One request body (decompressed) -> rows, charging `options.budget` as it goes.

    Protobuf bodies of a signal with `convert_bytes` (the native converters) are decoded and converted
    in one step. OTLP/JSON is parsed item by item first (an unrepresentable item refuses
    only itself), then converted the same way from its protobuf serialization, so every request of
    the signal goes through one converter. Raises MalformedRequest, and LimitExceeded / MemoryBusy
    (receiver.convert.budget) past the budget's bounds. `charged`: a protobuf body whose charge_request
    was made already."""
    assert not (charged and json), "charge_request is for protobuf bodies"
    budget = options.budget
    if budget is not None and not charged:
        budget.set_body(len(body))
    scanned = False
    if json and spec.json_signal is not None and _jsonwire is not None and spec.convert_bytes is not None:
        decoded = _decode_json_transcoded(spec, body, options)
        if decoded is not None:
            return decoded
        scanned = budget is not None  # the transcoder's try charged the scan: the paths below do not again
    if json and spec.json_wire and _otlpjson is not None and spec.convert_bytes is not None:
        return _decode_json_wire(spec, body, options, scanned)
    if json:
        parsed = parse_json(spec.request_type, spec.envelope, body, budget=budget, scanned=scanned)
        converted: Converted | None = None
        protobuf = None
        if spec.convert_bytes is not None:
            protobuf = parsed.message.SerializeToString()
            try:
                converted = spec.convert_bytes(protobuf, options)
            except WireFormatError:
                # Only a limit upb's parser has and its serializer lacks (nesting depth) gets here.
                converted = None
        if converted is None:
            converted = spec.convert(parsed.message, options)
        converted.rejected += parsed.rejected
        converted.errors[:0] = parsed.errors  # parse errors first, as the items came
        untrack_rows(converted.rows, 0)
        return Decoded(converted, protobuf, parsed.message)
    if budget is not None and not charged:
        charge_request(spec, body, options)
    if spec.convert_bytes is not None:
        try:  # decode and convert in one step (the native converters)
            converted = spec.convert_bytes(body, options)
        except WireFormatError as exc:
            raise malformed(spec.request_type, exc) from None
        return Decoded(converted, body, None)
    request = parse_protobuf(spec.request_type, body)
    converted = spec.convert(request, options)
    untrack_rows(converted.rows, 0)  # rows of atoms: no full GC pass needs to walk them (pgvalues)
    return Decoded(converted, body, None)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a JSON document is decoded (if it was on).

    Why: orjson makes tens of thousands of dicts and lists per request, and every 700 new containers
    start a collection that walks them again: half the CPU of decoding a 512-span request. They hold no
    cycles (nor do the bytes and rows made of them), so there is nothing for a collection to find. The
    switch is process-wide: another thread's cycles wait for the end of this decode (tens of ms), and
    two decodes overlapping at worst re-enable it early, which costs only the time saved."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode_json_transcoded(spec: SignalSpec, body: bytes, options: ConvertOptions) -> Decoded | None:
    """OTLP/JSON bytes -> protobuf bytes in C (receiver.convert._jsonwire, without the GIL), then the
    protobuf converter; None when the transcoder leaves the request to the paths that follow (an unusual
    form or a bad value: they accept and refuse it, with their messages, exactly as before).

    The budget is charged what those paths charge: the scan of the text first, then, once the request
    is known to be whole, its items and containers (the same counts as count_json) and, for the signals
    whose path held the protobuf before (traces), its length."""
    assert spec.convert_bytes is not None and spec.json_signal is not None and _jsonwire is not None
    budget = options.budget
    if budget is not None:
        charge_json(budget, bytes(body))
    wire = _jsonwire.transcode(spec.json_signal, body)
    if wire is None:
        return None
    protobuf, items, containers = wire
    if budget is not None:
        budget.charge(items=items, containers=containers, nbytes=json_items_charge(items, containers))
        if spec.json_wire:
            budget.charge(nbytes=len(protobuf))
    try:
        converted = spec.convert_bytes(protobuf, options)
    except WireFormatError:
        # Not expected (the transcoder nests far less than upb's limit and writes valid UTF-8): the
        # reference path then, already charged.
        parsed = parse_json(spec.request_type, spec.envelope, body)
        converted = spec.convert(parsed.message, options)
        converted.rejected += parsed.rejected
        converted.errors[:0] = parsed.errors
        untrack_rows(converted.rows, 0)
        return Decoded(converted, None, parsed.message)
    untrack_rows(converted.rows, 0)
    return Decoded(converted, protobuf, None)


def _decode_json_wire(spec: SignalSpec, body: bytes, options: ConvertOptions, scanned: bool = False) -> Decoded:
    """OTLP/JSON traces: orjson, the C encoder to protobuf bytes, then the protobuf converter."""
    assert spec.convert_bytes is not None
    budget = options.budget
    with collector_paused():
        document = load_json(spec.envelope, body, budget, scanned)
        wire = encode_json_traces(document, spec.envelope)
        del document
    if budget is not None:
        budget.charge(nbytes=len(wire.protobuf))
    try:
        converted = spec.convert_bytes(wire.protobuf, options)
    except WireFormatError:
        # Only a limit upb's parser has and json_format lacks (nesting deeper than 100 messages, left to
        # json_format by the C encoder) gets here: the reference path, as before (already charged).
        parsed = parse_json(spec.request_type, spec.envelope, body)
        converted = spec.convert(parsed.message, options)
        converted.rejected += parsed.rejected
        converted.errors[:0] = parsed.errors
        untrack_rows(converted.rows, 0)
        return Decoded(converted, None, parsed.message)
    converted.rejected += wire.rejected
    converted.errors[:0] = wire.errors  # parse errors first, as the items came
    untrack_rows(converted.rows, 0)
    return Decoded(converted, wire.protobuf, None)
