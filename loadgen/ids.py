"""The trace-id layout that makes every sent span unique and every stored span attributable.

    trace_id = run prefix (4 bytes) | template part (8 bytes) | send number k (4 bytes, big-endian)

Request bodies are serialized once, before the clock starts, with a placeholder (`SLOT`) where k goes.
Sending request number k puts k into every placeholder at once (bodies.Template.render: one C-level
join, no protobuf work, nothing per span in Python). Because k is new for every send (a retry re-sends
the same bytes), no span is ever sent twice except as a retry, however often a pool body is reused.
Span ids stay as built: they only need to be unique within their trace, and the trace id already is.

The run prefix first means all trace ids of a run fall into one range of the `llm_traces` primary
key (trace_id, span_id, ts): verification counts the run with an index range scan. Below the prefix
the ids are random, so inserts still land all over the run's part of the index, as real traffic does.

The placeholder starts with 0xFE, a byte that never occurs in UTF-8 text; random id bytes are drawn
without it, so the placeholder can only be found where it was put (bodies.py checks the count anyway).
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass

SLOT = b"\xfe\xed\xfa\xce"  # protobuf: the 4 bytes of k, before patching
SLOT_HEX = b'feedface"'  # OTLP/JSON: the last 8 hex digits of a traceId string (and its closing quote)
# Text placeholders inside user and session ids (valid UTF-8, the same in protobuf and JSON; '~' never
# occurs in the generated text). Each is replaced by as many hex digits as it has bytes, so lengths
# and protobuf length prefixes stay as they are.
SESSION_SLOT = b"~~sess~~"  # 8 hex digits: which conversation turn block this send belongs to
USER_SLOT = b"~~u~"  # 4 hex digits: which rotation of the long tail of users
_FE = 0xFE


def random_id_bytes(rng: random.Random, n: int) -> bytes:
    """n random bytes, never 0xFE (so no placeholder can appear by accident), never all zero."""
    while True:
        raw = rng.randbytes(n).replace(b"\xfe", b"\xfd")
        if any(raw):
            return raw


@dataclass(frozen=True, slots=True)
class RunId:
    """The run's identity: 4 random bytes, shown as 8 hex digits (`loadgen.run_id`)."""

    prefix: bytes

    @classmethod
    def new(cls) -> RunId:
        return cls(os.urandom(4).replace(b"\xfe", b"\xfd"))

    @classmethod
    def parse(cls, text: str) -> RunId:
        raw = bytes.fromhex(text)
        if len(raw) != 4 or _FE in raw:
            raise ValueError(f"run id {text!r} must be 8 hex digits without an 'fe' byte")
        return cls(raw)

    @property
    def text(self) -> str:
        return self.prefix.hex()

    def template_trace_id(self, middle: bytes) -> bytes:
        """A trace id as it sits in a template: k is still the placeholder."""
        return self.prefix + middle + SLOT

    def trace_id_range(self) -> tuple[uuid.UUID, uuid.UUID]:
        """Smallest and largest trace id (as uuid) this run can produce: an index range scan."""
        return uuid.UUID(bytes=self.prefix + bytes(12)), uuid.UUID(bytes=self.prefix + b"\xff" * 12)


def split_trace_id(trace_id: bytes) -> tuple[bytes, int]:
    """Stored trace id -> (template part, send number k)."""
    return trace_id[4:12], int.from_bytes(trace_id[12:16], "big")
