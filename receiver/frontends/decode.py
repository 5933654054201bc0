"""Request bodies -> protobuf messages: bounded gunzip, protobuf parse, OTLP/JSON parse.

OTLP/JSON differs from protobuf's canonical JSON: trace and span ids are hex, not base64. And a value
that cannot be represented must reject only its item (partial success), not the whole request, so
JSON is parsed envelope by envelope and item by item rather than in one `ParseDict` call.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError, Message


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
        raise MalformedRequest(f"body is not a valid {message_type.DESCRIPTOR.name} protobuf: {exc}") from None
    return message


@dataclass(frozen=True, slots=True)
class JsonEnvelope:
    """Where the items sit in one signal's OTLP/JSON request, and which item fields hold hex ids."""

    resource_list: str  # "resourceSpans"
    scope_list: str  # "scopeSpans"
    item_list: str  # "spans"
    item_noun: str  # "span", for error messages
    id_fields: tuple[str, ...]  # hex id fields of an item
    nested_id_lists: tuple[tuple[str, ...], ...] = ()  # paths to lists of dicts with hex ids


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_to_b64(item: dict[str, Any], field: str) -> None:
    value = item.get(field)
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{field} {value[:40]!r} is not a hex string") from None
    item[field] = base64.b64encode(raw).decode("ascii")


def _fix_ids(item: dict[str, Any], envelope: JsonEnvelope) -> None:
    for field in envelope.id_fields:
        _hex_to_b64(item, field)
    for path in envelope.nested_id_lists:
        _fix_nested(item, path)


def _fix_nested(node: Any, path: tuple[str, ...]) -> None:
    if not isinstance(node, dict):
        return
    child = node.get(path[0])
    if len(path) == 1:
        if isinstance(child, list):
            for entry in child:
                if isinstance(entry, dict):
                    for field in _ID_FIELDS:
                        _hex_to_b64(entry, field)
        return
    if isinstance(child, list):
        for entry in child:
            _fix_nested(entry, path[1:])
    else:
        _fix_nested(child, path[1:])


@dataclass(slots=True)
class JsonParse:
    message: Message
    rejected: int
    errors: list[str]


def parse_json(message_type: type[Message], envelope: JsonEnvelope, body: bytes, max_errors: int = 5) -> JsonParse:
    """OTLP/JSON body -> request message holding every item that parsed; the rest are rejected."""
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedRequest("OTLP/JSON body must be a JSON object")
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
