"""API keys: created once (the plaintext is printed, only its SHA-256 is stored), listed, revoked, and
loaded by the receiver to check the keys clients present."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

KEY_PREFIX = "lobs_"  # recognisable in logs and secret scanners
_DISPLAY_PREFIX = 12  # characters kept to tell keys apart in `keys list`

INGEST, READ = "ingest", "read"  # OTLP export needs ingest; the read API (query.endpoint) needs read
SCOPE_CHOICES: dict[str, tuple[str, ...]] = {INGEST: (INGEST,), READ: (READ,), "all": (INGEST, READ)}


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def display_prefix(key: str) -> str:
    """What `keys list`, metrics and logs show of a key: enough to recognise it, too little to use it."""
    return key[:_DISPLAY_PREFIX]


def slug_of(project: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", project.strip().lower()).strip("-")[:63]
    if not slug or not slug[0].isalnum():
        raise ValueError(f"project name {project!r} has no letters or digits to make a slug from")
    return slug


@dataclass(frozen=True)
class CreatedKey:
    id: UUID
    project_slug: str
    key: str  # shown once, never stored


async def create_key(
    conn: asyncpg.Connection,
    project: str,
    name: str | None = None,
    expires_in_days: int | None = None,
    scopes: tuple[str, ...] = (INGEST,),
    rate_items_per_s: float | None = None,
) -> CreatedKey:
    """A new key of `project` (created if new) with `scopes`; `rate_items_per_s` limits what it may send
    (spans + metric points + log records per second, a token bucket), None = no limit."""
    slug = slug_of(project)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        project_id = await conn.fetchval(
            """INSERT INTO projects (slug, name) VALUES ($1, $2)
               ON CONFLICT (slug) DO UPDATE SET updated_at = projects.updated_at RETURNING id""",
            slug,
            project.strip()[:200] or slug,
        )
        expires = None
        if expires_in_days is not None:
            expires = await conn.fetchval("SELECT now() + $1::interval", timedelta(days=expires_in_days))
        key_id = await conn.fetchval(
            """INSERT INTO api_keys (project_id, name, key_hash, key_prefix, expires_at, scopes, rate_items_per_s)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            project_id,
            name or f"{slug} key",
            hash_key(key),
            display_prefix(key),
            expires,
            list(scopes),
            rate_items_per_s,
        )
    return CreatedKey(key_id, slug, key)


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT k.id, p.slug AS project, k.name, k.key_prefix, k.scopes, k.rate_items_per_s, k.created_at,
                  k.expires_at, k.revoked_at, k.last_used_at
           FROM api_keys k JOIN projects p ON p.id = k.project_id ORDER BY k.created_at"""
    )


async def revoke_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    status = await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id)
    return status.endswith(" 1")


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What a usable key may do: the project its data belongs to, its scopes, its rate."""

    id: UUID
    project_id: UUID
    expires_at: datetime | None
    prefix: str = ""  # the first characters of the key (as in `keys list`), for metrics and logs
    scopes: frozenset[str] = frozenset({INGEST})
    rate_items_per_s: float | None = None  # None: unlimited


async def load_active_keys(conn: asyncpg.Connection) -> dict[bytes, ActiveKey]:
    """Hash -> key, for every key not revoked and not expired (expiry is re-checked per request)."""
    rows = await conn.fetch(
        """SELECT id, project_id, key_hash, key_prefix, scopes, rate_items_per_s, expires_at FROM api_keys
           WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""
    )
    return {
        bytes(r["key_hash"]): ActiveKey(
            r["id"], r["project_id"], r["expires_at"], r["key_prefix"], frozenset(r["scopes"]), r["rate_items_per_s"]
        )
        for r in rows
    }


async def mark_used(conn: asyncpg.Connection, key_ids: list[UUID]) -> None:
    if key_ids:
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])", key_ids)
