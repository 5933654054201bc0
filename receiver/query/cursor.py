"""Opaque page cursors for keyset pagination, signed so they cannot be forged or moved between queries.

A cursor holds the position of the last row of a page (its time, a 16-byte id and an optional short
text id) and is bound to the query it belongs to: the MAC covers the endpoint and a digest of the
filters and the caller's project, so a cursor replayed with other filters or by another tenant is a
400, not a page of someone else's rows. (Tenant isolation does not depend on the cursor: every query
also carries the key's project. The MAC makes tampering a clear error instead of a silent jump.)

Layout (before base64url): version 1 | time as int64 µs since the Unix epoch | 16-byte id |
text id length (1 byte) + UTF-8 | HMAC-SHA256 tag, first 16 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from receiver.query.errors import BadParameter

_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TAG = 16
_MAX_TEXT = 64


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: (ts, key, text) of its last row in the endpoint's sort order."""

    ts: datetime
    key: bytes  # 16 bytes: a trace id or a metric point id
    text: str = ""  # a span id; empty where the endpoint has none


def query_digest(endpoint: str, canonical: object) -> bytes:
    """What a cursor is bound to: the endpoint and a canonical form of its filters and project."""
    return hashlib.sha256(f"{endpoint}\x00{canonical!r}".encode()).digest()


class CursorCodec:
    def __init__(self, secret: str = "") -> None:
        self._key = secret.encode() if secret else os.urandom(32)

    def _tag(self, digest: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, digest + payload, hashlib.sha256).digest()[:_TAG]

    def encode(self, digest: bytes, position: Position) -> str:
        text = position.text.encode()
        if len(position.key) != 16 or len(text) > _MAX_TEXT:
            raise ValueError("cursor position out of range")
        micros = (position.ts - _EPOCH) // timedelta(microseconds=1)
        payload = struct.pack(">Bq16sB", _VERSION, micros, position.key, len(text)) + text
        return base64.urlsafe_b64encode(payload + self._tag(digest, payload)).rstrip(b"=").decode()

    def decode(self, digest: bytes, token: str, parameter: str = "cursor") -> Position:
        invalid = BadParameter(
            parameter,
            "not a cursor of this query: pass back next_cursor unchanged, with the same filters "
            "(cursors also expire when the receiver restarts unless query.cursor_secret is set)",
        )
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise invalid from None
        if len(raw) < 26 + _TAG:
            raise invalid
        payload, tag = raw[:-_TAG], raw[-_TAG:]
        if not hmac.compare_digest(tag, self._tag(digest, payload)):
            raise invalid
        version, micros, key, length = struct.unpack(">Bq16sB", payload[:26])
        if version != _VERSION or len(payload) != 26 + length:
            raise invalid
        try:
            ts = _EPOCH + timedelta(microseconds=micros)
            text = payload[26:].decode()
        except (OverflowError, UnicodeDecodeError):
            raise invalid from None
        return Position(ts, key, text)
