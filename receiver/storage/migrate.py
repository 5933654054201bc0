"""Ordered, transactional, checksummed schema migrations in two flavors.

Files in `migrations/`: `NNN_name.sql` applies to every flavor; `NNN_name.native.sql` or
`NNN_name.timescale.sql` only to that flavor. A version may have a common file, a flavor file, or
both (common first). Each version is applied in its own transaction and recorded in
`schema_migrations` with a SHA-256 of what was applied; a recorded migration whose file has changed
since is refused (write a new migration instead). An advisory lock lets several receivers start at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from receiver.resources import migrations_dir
from receiver.storage import citus

FLAVORS = ("native", "timescale")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(native|timescale))?\.sql$")
_LOCK_KEY = 0x4C4C4D4F  # "LLMO": one advisory lock for all receivers migrating the same database


class MigrationError(Exception):
    """Migrations cannot be applied; the message says what is wrong and what to do."""


_OTHER_FLAVOR = (
    "this database was migrated with the {flavor} flavor; database.flavor = {requested!r} cannot change it "
    "(set it to auto or to the recorded flavor)"
)
_NOT_OWNER = (
    "role {user} may not change the schema ({exc}): apply migrations as the schema's owner "
    "(`llm-observatory-receiver migrate` with the owner's DATABASE_URL); a receiver that runs as a writer "
    "role waits until they are applied"
)


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
    try:
        preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries', true)")
    except asyncpg.InsufficientPrivilegeError:
        # An ordinary owner (not a superuser, no pg_read_all_settings) cannot read the setting: the
        # extension already created here says it is loaded; otherwise database.flavor = timescale forces it.
        return (
            "timescale"
            if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
            else "native"
        )
    return "timescale" if preload and "timescaledb" in preload else "native"


# Background workers running one of this database's policy jobs (ids from 1000; TimescaleDB's own
# housekeeping jobs, below 1000, touch nothing a migration changes).
_JOB_WORKERS = """
SELECT application_name FROM pg_stat_activity
WHERE datname = current_database() AND backend_type <> 'client backend'
  AND substring(application_name FROM '\\[([0-9]+)\\]$')::bigint >= 1000
"""
QUIESCE_TIMEOUT_S = 120.0


async def _pause_timescale_jobs(conn: asyncpg.Connection) -> list[tuple[int, Any]]:
    """Hold TimescaleDB's background jobs back and wait until none runs; returns (job id, next start)
    of each job held, to resume it.

    A migration's transaction cannot stop a job (the scheduler sees a change only once it is committed),
    and a refresh or compression job running while a migration drops or alters what it works on makes
    one of the two fail ("tuple concurrently deleted", deadlocks: migration 010 met them in a third of
    its runs). So the jobs' next start is moved out of reach in a committed step of its own, and a run
    in progress is let finish (unscheduling would cancel it, and leave it recorded as failed)."""
    if not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
        return []
    held = [
        (r["job_id"], r["next_start"])
        for r in await conn.fetch(
            "SELECT j.job_id, s.next_start FROM timescaledb_information.jobs j "
            "LEFT JOIN timescaledb_information.job_stats s USING (job_id) "
            "WHERE j.scheduled AND j.job_id >= 1000 AND coalesce(s.next_start, now()) < 'infinity'"
        )
    ]
    for job_id, _ in held:
        await conn.execute("SELECT alter_job($1, next_start => 'infinity')", job_id)
    deadline = time.monotonic() + QUIESCE_TIMEOUT_S
    while running := [r["application_name"] for r in await conn.fetch(_JOB_WORKERS)]:
        if time.monotonic() > deadline:
            await _resume_timescale_jobs(conn, held)
            raise MigrationError(
                f"TimescaleDB job(s) {', '.join(running)} still running {QUIESCE_TIMEOUT_S:.0f} s after every "
                "job was held back; a migration waits for them. Nothing was migrated: retry once they are done "
                "(timescaledb_information.job_stats)"
            )
        await asyncio.sleep(0.1)
    return held


async def _resume_timescale_jobs(conn: asyncpg.Connection, held: list[tuple[int, Any]]) -> None:
    """Give the held jobs that still exist (a migration may have removed some) their next start back."""
    for job_id, next_start in held:
        if await conn.fetchval("SELECT count(*) FROM timescaledb_information.jobs WHERE job_id = $1", job_id):
            await conn.execute(
                "SELECT alter_job($1, next_start => greatest(coalesce($2::timestamptz, now()), now()))",
                job_id,
                next_start,
            )


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
    # Nothing to do, and no DDL: a writer role (011) may call this too. A Citus database whose tables are
    # not all distributed yet (the extension created after the migrations) takes the locked path below.
    if not await pending(conn, migrations) and not await citus.undistributed(conn):
        await verify_checksums(conn, migrations)
        flavor = await applied_flavor(conn) or requested_flavor
        if requested_flavor not in ("auto", flavor):
            raise MigrationError(_OTHER_FLAVOR.format(flavor=flavor, requested=requested_flavor))
        return MigrationReport(flavor, [], len(migrations))
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        try:
            await conn.execute(_BOOKKEEPING)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise MigrationError(_NOT_OWNER.format(user=await conn.fetchval("SELECT current_user"), exc=exc)) from exc
        recorded = {
            r["version"]: r for r in await conn.fetch("SELECT version, name, flavor, checksum FROM schema_migrations")
        }
        flavor = await applied_flavor(conn) if recorded else None
        if flavor is None:
            flavor = await detect_flavor(conn) if requested_flavor == "auto" else requested_flavor
        elif requested_flavor not in ("auto", flavor):
            raise MigrationError(_OTHER_FLAVOR.format(flavor=flavor, requested=requested_flavor))
        if flavor == "timescale" and await detect_flavor(conn) != "timescale":
            raise MigrationError(
                "flavor timescale needs the timescaledb extension installed and in shared_preload_libraries"
            )
        paused: list[tuple[int, Any]] = []

        async def before_each() -> None:  # jobs a previous migration created are paused too
            if flavor == "timescale":
                paused.extend(await _pause_timescale_jobs(conn))

        try:
            report = await _apply(conn, migrations, recorded, flavor, before_each)
        finally:
            if paused:
                await _resume_timescale_jobs(conn, paused)
        if flavor == "native":
            try:
                report.distributed.extend(await citus.distribute(conn))
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"distributing the tables over the Citus cluster failed: {exc}") from exc
        return report
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _apply(
    conn: asyncpg.Connection,
    migrations: list[Migration],
    recorded: dict[int, Any],
    flavor: str,
    before_each: Callable[[], Awaitable[None]],
) -> MigrationReport:
    """Apply every migration not recorded yet, each in its own transaction."""
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
        await before_each()
        try:
            async with conn.transaction():
                if sql.strip():  # a migration of the other flavor only is recorded here, with nothing to run
                    await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavor, checksum) VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.name,
                    flavor,
                    checksum,
                )
        except asyncpg.InsufficientPrivilegeError as exc:
            user = await conn.fetchval("SELECT current_user")
            raise MigrationError(f"migration {label}: " + _NOT_OWNER.format(user=user, exc=exc)) from exc
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {label} ({flavor}) failed and was rolled back: {exc}") from exc
        applied.append(label)
    return MigrationReport(flavor, applied, len(recorded))


async def verify_checksums(conn: asyncpg.Connection, migrations: list[Migration]) -> None:
    """Refuse a database whose applied migrations differ from the files (an edited migration)."""
    recorded = {r["version"]: r for r in await conn.fetch("SELECT version, flavor, checksum FROM schema_migrations")}
    for migration in migrations:
        row = recorded.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum(row["flavor"]):
            label = f"{migration.version:03d}_{migration.name}"
            raise MigrationError(
                f"migration {label} was changed after it was applied to this database "
                f"(recorded checksum {row['checksum'][:12]}…, file now {migration.checksum(row['flavor'])[:12]}…). "
                "Restore the original file and put the change in a new migration."
            )


async def pending(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Labels of migrations not applied yet (readiness waits for none)."""
    migrations = load_migrations() if migrations is None else migrations
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return [f"{m.version:03d}_{m.name}" for m in migrations]
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [f"{m.version:03d}_{m.name}" for m in migrations if m.version not in done]
