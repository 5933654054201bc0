"""API-key authentication of requests (auth.mode = "api_key"), for any of the receiver's HTTP or gRPC
servers: the OTLP front ends ask for the `ingest` scope, the read API (query.endpoint) for `read`.

Clients send `Authorization: Bearer <key>` or `x-api-key: <key>` (HTTP headers or gRPC metadata; OTel
SDKs: OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer <key>"). The receiver keeps the SHA-256 of every
active key in memory, refreshed from `api_keys` every `auth.refresh_interval_s`, so checking a key costs
one hash and one dict lookup and never a database round trip: a revoked key stops working within one
refresh interval, and a database outage does not lock clients out.

`identify(headers, scope)` answers with the key (its project, scopes and rate: `ActiveKey`) or with the
refusal to send; it knows nothing of the transport, so another aiohttp server reuses it as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from uuid import UUID

from receiver.frontends.outcomes import Refusal, Refused
from receiver.storage.api_keys import ActiveKey, hash_key


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, from lower-cased header / metadata names."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    return value.strip() if value and value.strip() else None


class ApiKeyAuthenticator:
    def __init__(self, retry_after_s: float) -> None:
        self._keys: dict[bytes, ActiveKey] | None = None  # None until the first load
        self._retry_after_s = retry_after_s
        self.used: set[UUID] = set()  # flushed to api_keys.last_used_at by the refresher

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def replace_keys(self, keys: dict[bytes, ActiveKey]) -> None:
        self._keys = keys

    def active_ids(self) -> set[UUID]:
        return {key.id for key in (self._keys or {}).values()}

    def identify(self, headers: Mapping[str, str], scope: str) -> ActiveKey | Refused:
        """The key that sent the request, if it may act in `scope`; else the refusal to answer with."""
        key = presented_key(headers)
        if key is None:
            return Refused(
                Refusal.UNAUTHENTICATED,
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>' (auth.mode = api_key)",
                cause="auth_missing",
            )
        if self._keys is None:
            return Refused(
                Refusal.OVERLOADED,
                "API keys are not loaded yet (database unreachable); retry later",
                retry_after_s=self._retry_after_s,
                cause="auth_not_ready",
            )
        active = self._keys.get(hash_key(key))
        if active is None:
            return Refused(Refusal.UNAUTHENTICATED, "unknown or revoked API key", cause="auth_invalid")
        if active.expires_at is not None and active.expires_at <= datetime.now(UTC):
            return Refused(Refusal.UNAUTHENTICATED, "API key expired", cause="auth_expired")
        if scope not in active.scopes:
            return Refused(
                Refusal.FORBIDDEN,
                f"API key {active.prefix}… has scopes {', '.join(sorted(active.scopes))}; this needs {scope!r} "
                f"(create one with `keys create --project P --scope {scope}`)",
                cause="auth_forbidden",
            )
        self.used.add(active.id)
        return active
