"""The protobuf wire format by hand, for tests of the native trace decoder.

SDKs always send canonical protobuf; real traffic (other languages, proxies, future versions) may not:
unknown fields, fields out of order, a singular field sent twice (protobuf merges or replaces), groups,
non-canonical varints, a field with an unexpected wire type. `encode_*` builds such bytes; `parse` and
`Perturber` turn a valid request into structurally valid variants of it, deep inside the message (random
byte flips mostly break the first bytes they touch). upb is the oracle: whatever it makes of the bytes,
the native decoder must make too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
REQUEST = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"

# message -> {field number: the field's message type, or None for scalars}
_MESSAGE_FIELDS: dict[str, dict[int, str | None]] = {}


def _message_types() -> dict[str, dict[int, str | None]]:
    if not _MESSAGE_FIELDS:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        requests = (ExportTraceServiceRequest, ExportMetricsServiceRequest, ExportLogsServiceRequest)
        pending = [request.DESCRIPTOR for request in requests]
        while pending:
            message = pending.pop()
            if message.full_name in _MESSAGE_FIELDS:
                continue
            _MESSAGE_FIELDS[message.full_name] = {
                f.number: (f.message_type.full_name if f.message_type else None) for f in message.fields
            }
            pending.extend(f.message_type for f in message.fields if f.message_type)
    return _MESSAGE_FIELDS


# -- encoding -------------------------------------------------------------------------------------


def encode_varint(value: int, pad: int = 0) -> bytes:
    """Base-128 varint of a value in [0, 2^64); `pad` extra bytes make it non-canonical (same value).

    Any padding is produced, also past what protobuf accepts: upb reads a tag or a length in at most
    5 bytes and any varint in at most 10 (e.g. a length of 0 padded to 6 bytes, 80 80 80 80 80 00,
    is "wire format was corrupt")."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    if pad:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


def encode_tag(number: int, wire_type: int, pad: int = 0) -> bytes:
    return encode_varint(number << 3 | wire_type, pad)


def field_varint(number: int, value: int) -> bytes:
    return encode_tag(number, VARINT) + encode_varint(value)


def field_len(number: int, data: bytes) -> bytes:
    return encode_tag(number, LEN) + encode_varint(len(data)) + data


def field_fixed64(number: int, value: int) -> bytes:
    return encode_tag(number, I64) + (value & ((1 << 64) - 1)).to_bytes(8, "little")


def field_fixed32(number: int, value: int) -> bytes:
    return encode_tag(number, I32) + (value & 0xFFFFFFFF).to_bytes(4, "little")


def field_group(number: int, body: bytes = b"") -> bytes:
    return encode_tag(number, SGROUP) + body + encode_tag(number, EGROUP)


def request(*resource_spans: bytes) -> bytes:
    return b"".join(field_len(1, r) for r in resource_spans)


def resource_spans(*scope_spans: bytes, resource: bytes | None = None, extra: bytes = b"") -> bytes:
    head = field_len(1, resource) if resource is not None else b""
    return head + b"".join(field_len(2, s) for s in scope_spans) + extra


def scope_spans(*spans: bytes, scope: bytes | None = None, extra: bytes = b"") -> bytes:
    head = field_len(1, scope) if scope is not None else b""
    return head + b"".join(field_len(2, s) for s in spans) + extra


T0 = 1_763_000_000_000_000_000


def span_fields(
    name: bytes = b"span",
    trace_id: bytes = b"\x01" * 16,
    span_id: bytes = b"\x02" * 8,
    start: int = T0,
    end: int = T0 + 1_500_000,
) -> bytes:
    """A minimal valid Span's fields; append more (attributes: field 9) to the returned bytes."""
    return (
        field_len(1, trace_id)
        + field_len(2, span_id)
        + field_len(5, name)
        + field_fixed64(7, start)
        + field_fixed64(8, end)
    )


def key_value(key: bytes, value: bytes | None) -> bytes:
    """A KeyValue; `value` is the AnyValue's bytes (None: no value at all)."""
    return field_len(1, key) + (field_len(2, value) if value is not None else b"")


def any_string(text: bytes) -> bytes:
    return field_len(1, text)


def any_int(value: int) -> bytes:
    return field_varint(3, value)


def any_double(value: float) -> bytes:
    import struct

    return encode_tag(4, I64) + struct.pack("<d", value)


def any_array(*values: bytes) -> bytes:
    return field_len(5, b"".join(field_len(1, v) for v in values))


def any_kvlist(*pairs: bytes) -> bytes:
    return field_len(6, b"".join(field_len(1, p) for p in pairs))


# -- parsing and perturbing ----------------------------------------------------------------------


@dataclass
class Field:
    number: int
    wire_type: int
    value: int | bytes | list[Field]  # int: varint/fixed; bytes: LEN; list: parsed message or group


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos


def parse(data: bytes, message: str = REQUEST) -> list[Field]:
    """Canonical protobuf bytes -> fields; length-delimited fields of message type are parsed too."""
    types = _message_types().get(message, {})
    fields: list[Field] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
            fields.append(Field(number, VARINT, value))
        elif wire_type == I64:
            fields.append(Field(number, I64, int.from_bytes(data[pos : pos + 8], "little")))
            pos += 8
        elif wire_type == I32:
            fields.append(Field(number, I32, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        elif wire_type == LEN:
            size, pos = _read_varint(data, pos)
            chunk = data[pos : pos + size]
            pos += size
            sub = types.get(number)
            fields.append(Field(number, LEN, parse(chunk, sub) if sub else chunk))
        else:
            raise ValueError(f"unexpected wire type {wire_type} in canonical bytes")
    return fields


class Perturber:
    """Re-encodes parsed fields with random deviations that protobuf allows or tolerates."""

    def __init__(self, rng: random.Random, rate: float = 0.15) -> None:
        self.rng = rng
        self.rate = rate

    def _chance(self) -> bool:
        return self.rng.random() < self.rate

    def _pad(self) -> int:
        if not self._chance():
            return 0
        if self.rng.random() < 0.05:  # now and then past upb's limits (tags and lengths: 5 bytes, varints: 10)
            return self.rng.randint(4, 9)
        return self.rng.choice((0, 0, 1, 2, 3))

    def unknown_field(self, depth: int = 0) -> bytes:
        rng = self.rng
        number = rng.choice((17, 99, 1000, 536870911, rng.randint(17, 5000)))
        kind = rng.choice((VARINT, I64, LEN, I32, SGROUP)) if depth < 3 else VARINT
        if kind == VARINT:
            return encode_tag(number, VARINT) + encode_varint(rng.getrandbits(rng.choice((1, 7, 35, 64))))
        if kind == I64:
            return field_fixed64(number, rng.getrandbits(64))
        if kind == I32:
            return field_fixed32(number, rng.getrandbits(32))
        if kind == LEN:
            return field_len(number, rng.randbytes(rng.randint(0, 6)))
        return field_group(number, b"".join(self.unknown_field(depth + 1) for _ in range(rng.randint(0, 2))))

    def encode(self, fields: list[Field]) -> bytes:
        rng = self.rng
        items = list(fields)
        if len(items) > 1 and self._chance():
            rng.shuffle(items)  # fields out of order (relative order of repeated fields may change too)
        out = bytearray()
        for item in items:
            if self._chance():
                out += self.unknown_field()
            out += self.encode_field(item)
            if self._chance():
                out += self.encode_field(item)  # a field twice: last wins, merged, or one more element
        if self._chance():
            out += self.unknown_field()
        return bytes(out)

    def encode_field(self, item: Field) -> bytes:
        rng = self.rng
        number, wire_type, value = item.number, item.wire_type, item.value
        if isinstance(value, list):
            if len(value) > 1 and self._chance():
                # One message sent as two occurrences: protobuf merges them.
                cut = rng.randint(1, len(value) - 1)
                return self.encode_field(Field(number, LEN, value[:cut])) + self.encode_field(
                    Field(number, LEN, value[cut:])
                )
            body = self.encode(value)
            return encode_tag(number, LEN, self._pad()) + encode_varint(len(body), self._pad()) + body
        if wire_type == VARINT:
            if self._chance():  # a varint field sent length-delimited ("packed"): upb ignores it
                return encode_tag(number, LEN) + encode_varint(len(encode_varint(value))) + encode_varint(value)
            return encode_tag(number, VARINT, self._pad()) + encode_varint(value, self._pad())
        if wire_type == I64:
            if self._chance():  # a fixed64 field sent as a varint: upb ignores it
                return encode_tag(number, VARINT) + encode_varint(value)
            return field_fixed64(number, value)
        if wire_type == I32:
            return field_fixed32(number, value)
        assert isinstance(value, bytes)
        return encode_tag(number, LEN, self._pad()) + encode_varint(len(value), self._pad()) + value


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Random byte-level damage: flips, overwrites, insertions, deletions, truncation, splices."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 8))
            continue
        pos = rng.randrange(len(buf))
        op = rng.randrange(7)
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.choice((0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 4))
        elif op == 3:
            del buf[pos : pos + rng.randint(1, 4)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos:end]
        else:
            buf[pos] = (buf[pos] & 0xF8) | rng.randrange(8)  # another wire type, where a tag was
    return bytes(buf)
