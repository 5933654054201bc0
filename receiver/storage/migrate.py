"""Ordered, transactional, checksummed schema migrations in two flavors.

Files in `migrations/`: `NNN_name.sql` applies to every flavor; `NNN_name.native.sql` or
`NNN_name.timescale.sql` only to that flavor. A version may have a common file, a flavor file, or
both (common first). Each version is applied in its own transaction and recorded in
`schema_migrations` with a SHA-256 of what was applied; a recorded migration whose file has changed
since is refused (write a new migration instead). An advisory lock lets several receivers start at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from receiver.resources import migrations_dir
from receiver.storage import citus

FLAVORS = ("native", "timescale")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(native|timescale))?\.sql$")
_LOCK_KEY = 0x4C4C4D4F  # "LLMO": one advisory lock for all receivers migrating the same database


class MigrationError(Exception):
    """Migrations cannot be applied; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    common: str | None  # SQL for every flavor
    flavored: dict[str, str]  # flavor -> SQL

    def sql_for(self, flavor: str) -> str:
        parts = [self.common] if self.common else []
        if flavor in self.flavored:
            parts.append(self.flavored[flavor])
        return "\n".join(parts)

    def checksum(self, flavor: str) -> str:
        return hashlib.sha256(self.sql_for(flavor).encode("utf-8")).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found: dict[int, dict[str, object]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql or NNN_name.<flavor>.sql")
        version, name, flavor = int(match.group(1)), match.group(2), match.group(3)
        entry = found.setdefault(version, {"name": name, "common": None, "flavored": {}})
        if entry["name"] != name:
            raise MigrationError(f"version {version:03d} has two names: {entry['name']} and {name}")
        text = path.read_text(encoding="utf-8")
        if flavor:
            entry["flavored"][flavor] = text  # type: ignore[index]
        else:
            entry["common"] = text
    return [
        Migration(v, str(e["name"]), e["common"], dict(e["flavored"]))  # type: ignore[arg-type]
        for v, e in sorted(found.items())
    ]


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    flavor      text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def detect_flavor(conn: asyncpg.Connection) -> str:
    """timescale when the extension can be created here (installed and preloaded), else native."""
    available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not available:
        return "native"
    preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries', true)")
    return "timescale" if preload and "timescaledb" in preload else "native"


@dataclass(frozen=True)
class MigrationReport:
    flavor: str
    applied: list[str]
    already: int
    distributed: list[str] = field(default_factory=list)  # Citus: tables distributed by this run


async def applied_flavor(conn: asyncpg.Connection) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return None
    return await conn.fetchval("SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1")


async def migrate(
    conn: asyncpg.Connection, requested_flavor: str = "auto", migrations: list[Migration] | None = None
) -> MigrationReport:
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        recorded = {
            r["version"]: r for r in await conn.fetch("SELECT version, name, flavor, checksum FROM schema_migrations")
        }
        flavor = await applied_flavor(conn) if recorded else None
        if flavor is None:
            flavor = await detect_flavor(conn) if requested_flavor == "auto" else requested_flavor
        elif requested_flavor not in ("auto", flavor):
            raise MigrationError(
                f"this database was migrated with the {flavor} flavor; database.flavor = {requested_flavor!r} "
                "cannot change it (set it to auto or to the recorded flavor)"
            )
        if flavor == "timescale" and await detect_flavor(conn) != "timescale":
            raise MigrationError(
                "flavor timescale needs the timescaledb extension installed and in shared_preload_libraries"
            )
        applied: list[str] = []
        for migration in migrations:
            label = f"{migration.version:03d}_{migration.name}"
            checksum = migration.checksum(flavor)
            row = recorded.get(migration.version)
            if row is not None:
                if row["checksum"] != checksum:
                    raise MigrationError(
                        f"migration {label} was changed after it was applied to this database "
                        f"(recorded checksum {row['checksum'][:12]}…, file now {checksum[:12]}…). "
                        "Restore the original file and put the change in a new migration."
                    )
                continue
            sql = migration.sql_for(flavor)
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, flavor, checksum) VALUES ($1, $2, $3, $4)",
                        migration.version,
                        migration.name,
                        flavor,
                        checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {label} ({flavor}) failed and was rolled back: {exc}") from exc
            applied.append(label)
        distributed: list[str] = []
        if flavor == "native":
            try:
                distributed = await citus.distribute(conn)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"distributing the tables over the Citus cluster failed: {exc}") from exc
        return MigrationReport(flavor, applied, len(recorded), distributed)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def pending(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Labels of migrations not applied yet (readiness waits for none)."""
    migrations = load_migrations() if migrations is None else migrations
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return [f"{m.version:03d}_{m.name}" for m in migrations]
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [f"{m.version:03d}_{m.name}" for m in migrations if m.version not in done]
