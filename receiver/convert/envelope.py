"""What the three signal converters read the same way: JSON text of a column, and the resource and
instrumentation-scope headers every item under them shares."""

from __future__ import annotations

from typing import Any

import orjson

from receiver.convert import identity
from receiver.convert.attributes import ConversionStats, clean_text, key_values
from receiver.convert.genai import as_text, provider_and_model

SERVICE_NAME_KEY = "service.name"


def json_text(value: Any) -> str:
    """A jsonb column's text (the rows carry text; PostgreSQL parses it)."""
    return orjson.dumps(value).decode()


def resource_header(
    domain: bytes, resource: Any, schema_url: str, limit: int, stats: ConversionStats, project_id: Any = None
) -> tuple[str, str | None, str | None, str | None, Any]:
    """(attributes JSON, service name, provider, model, identity hasher) of one resource of a
    metrics or logs request; the identity is the project's (`project_id`, a Uuid or None)."""
    attrs = key_values(resource.attributes, limit, stats)
    provider, model = provider_and_model(attrs)
    return (
        json_text(attrs),
        as_text(attrs.get(SERVICE_NAME_KEY)),
        provider,
        model,
        identity.resource_prefix(domain, resource, schema_url, project_id.bytes if project_id is not None else None),
    )


def scope_header(
    resource_hasher: Any, scope: Any, schema_url: str, limit: int, stats: ConversionStats
) -> tuple[str | None, str | None, Any]:
    """(name, version, identity hasher) of one instrumentation scope."""
    return (
        clean_text(scope.name, limit, stats) or None,
        clean_text(scope.version, limit, stats) or None,
        identity.scope_prefix(resource_hasher, scope, schema_url),
    )
