"""Deterministic row identities (point_id, record_id) that make metric points and log records
idempotent under retry and replay.

The identity is a 16-byte BLAKE2b hash over what makes an item distinct: its resource, its scope,
(for metrics) the metric's name, description, unit, type and aggregation, and the serialized item
itself. A client retry — even one that switches from protobuf to OTLP/JSON — hashes the same bytes
and meets the primary key of the row stored the first time; two different series never collide.
Each level's prefix is hashed once and `.copy()`-ed per item, so an item costs one serialization and
one short hash update. Every prefix part is length-framed so that no two splits of the same bytes
give the same hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

METRICS_DOMAIN = b"llm_metrics/1"
LOGS_DOMAIN = b"llm_logs/1"


def _frame(hasher: Any, data: bytes) -> None:
    hasher.update(len(data).to_bytes(8, "little"))
    hasher.update(data)


def resource_prefix(domain: bytes, resource: Any, schema_url: str, project: bytes | None = None) -> Any:
    """Hasher primed with one resource (its attributes and schema URL) of one project (16-byte id, the
    hash's salt): two tenants' byte-identical points are two rows. No project (auth off) hashes as before
    projects existed (salt of zeros), so ids computed before and after the upgrade still meet."""
    if project is None:
        hasher = hashlib.blake2b(digest_size=16, person=domain)
    else:
        hasher = hashlib.blake2b(digest_size=16, person=domain, salt=project)
    _frame(hasher, resource.SerializeToString(deterministic=True))
    _frame(hasher, schema_url.encode("utf-8", "surrogatepass"))
    return hasher


def scope_prefix(resource_hasher: Any, scope: Any, schema_url: str) -> Any:
    """Copy of the resource hasher primed with one instrumentation scope."""
    hasher = resource_hasher.copy()
    _frame(hasher, scope.SerializeToString(deterministic=True))
    _frame(hasher, schema_url.encode("utf-8", "surrogatepass"))
    return hasher


def extend(hasher: Any, *parts: str) -> Any:
    """Copy of `hasher` primed with more text parts (metric name, unit, type, ...)."""
    hasher = hasher.copy()
    for part in parts:
        _frame(hasher, part.encode("utf-8", "surrogatepass"))
    return hasher


def item_id(prefix: Any, item: Any) -> bytes:
    """The 16-byte identity of one data point / log record under its prefix."""
    hasher = prefix.copy()
    hasher.update(item.SerializeToString(deterministic=True))
    return hasher.digest()
