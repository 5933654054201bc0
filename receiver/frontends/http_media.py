"""What an OTLP/HTTP request's Content-Type and Content-Encoding ask for, for both HTTP front ends
(http_server.py on aiohttp, http_lean.py on httptools): pure, so the two cannot drift apart."""

from __future__ import annotations

from receiver.frontends.outcomes import Refusal, Refused

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {PROTOBUF: False, "application/protobuf": False, JSON: True}
_ENCODINGS = {"": False, "identity": False, "gzip": True, "x-gzip": True}


def negotiate(content_type: str | None, content_encoding: str | None) -> tuple[bool, bool, Refused | None]:
    """(json, gzip, refusal): whether the body is OTLP/JSON (and the answer too), whether it is gzipped, and
    why it is refused when its media type or encoding is not served (answered in protobuf when even the media
    type is unknown, else in the request's own encoding). A request without Content-Type is taken as JSON."""
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    json = _CONTENT_TYPES.get(media)
    if json is None:
        return (
            False,
            False,
            Refused(Refusal.UNSUPPORTED_MEDIA, f"unsupported Content-Type {media!r}; use {PROTOBUF} or {JSON}"),
        )
    encoding = (content_encoding or "").strip().lower()
    gzip = _ENCODINGS.get(encoding)
    if gzip is None:
        return (
            json,
            False,
            Refused(Refusal.UNSUPPORTED_MEDIA, f"unsupported Content-Encoding {encoding!r}; use gzip or none"),
        )
    return json, gzip, None


def too_large_message(limit: int, declared: int | str | None = None) -> str:
    """Why a body is refused with 413 before it is read whole: by its Content-Length, or as it arrives."""
    size = f" of {declared} bytes" if declared is not None else ""
    return f"request body{size} exceeds the {limit}-byte limit (otlp.max_request_bytes)"
