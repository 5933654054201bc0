"""Least privilege in the database (migration 011): a schema owned by an ordinary login (not a superuser),
and the receiver running as a login in the `observatory_writer` role. Spans land, refused rows reach
dead_letters, keys work and record their use; the writer cannot change or delete anything else; the
native maintenance runs on the owner's connection, and its rollups refuse to guess about writers whose
transactions they cannot see."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest

from receiver.storage.api_keys import create_key
from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.telemetry.metrics import Metrics
from tests.support.otlp import export_grpc, sdk_tracer_provider, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.spans import assert_rollups_match_raw, copy_spans, span_row
from tests.support.wait import wait_until


@dataclass(frozen=True)
class Roles:
    database: str
    owner: str  # owns the schema (ran `migrate`); CREATEROLE, not a superuser
    writer: str  # LOGIN IN ROLE observatory_writer
    cluster: object

    def dsn(self, user: str) -> str:
        return f"postgresql://{user}@/{self.database}?host={self.cluster.socket_dir}&port={self.cluster.port}"


async def as_superuser(cluster, database: str, *statements: str) -> None:
    conn = await asyncpg.connect(cluster.admin_dsn(database))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def roles(pg_cluster) -> Roles:
    suffix = uuid.uuid4().hex[:8]
    roles = Roles(f"lp_{suffix}", f"owner_{suffix}", f"ingest_{suffix}", pg_cluster)
    await as_superuser(
        pg_cluster,
        "postgres",
        f"CREATE ROLE {roles.owner} LOGIN CREATEROLE",
        f"CREATE DATABASE {roles.database} OWNER {roles.owner}",
    )
    migrated = subprocess.run(  # as the owner: the migrations, the writer role (011) and the prices
        [sys.executable, "-m", "receiver", "migrate"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": roles.dsn(roles.owner)},
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 011_writer_role" in migrated.stdout and "model prices" in migrated.stdout
    await as_superuser(pg_cluster, roles.database, f"CREATE ROLE {roles.writer} LOGIN IN ROLE observatory_writer")
    return roles


async def test_the_receiver_runs_as_a_writer_login(roles, tmp_path):
    owner = await asyncpg.connect(roles.dsn(roles.owner))
    try:
        key = await create_key(owner, "Least Privilege")
        reader = await create_key(owner, "Least Privilege", scopes=("read",))
        await owner.execute("ALTER TABLE llm_traces ADD CONSTRAINT no_poison CHECK (span_name <> 'poison')")
    finally:
        await owner.close()
    # The documented set-up: the writer login for `run`, the owner's URL for the maintenance, which reads
    # the writers' transactions in pg_stat_activity.
    await as_superuser(roles.cluster, roles.database, f"GRANT pg_read_all_stats TO {roles.owner}")
    proc = ReceiverProcess(
        roles.dsn(roles.writer),
        tmp_path,
        auth__mode="api_key",
        auth__refresh_interval_s=0.5,
        maintenance__database_url=roles.dsn(roles.owner),
        maintenance__interval_s=1,
        maintenance__rollup_delay_s=0,
    )
    await proc.start()
    service = f"writer-{uuid.uuid4().hex[:6]}"
    provider = sdk_tracer_provider("grpc", proc, service, headers={"authorization": f"Bearer {key.key}"})
    tracer = provider.get_tracer("tests")
    for _ in range(3):
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            chat.set_attribute("gen_ai.usage.input_tokens", 10)
    provider.shutdown()
    poison = trace_request([span("poison"), span("fine")], service)
    await export_grpc(proc.grpc_target, poison, metadata=(("authorization", f"Bearer {key.key}"),))

    db = await asyncpg.connect(roles.dsn(roles.owner))
    try:

        async def stored() -> bool:
            spans = await db.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service)
            dead = await db.fetchval("SELECT count(*) FROM dead_letters WHERE row_data->>'span_name' = 'poison'")
            used = await db.fetchval("SELECT last_used_at IS NOT NULL FROM api_keys WHERE id = $1", key.id)
            rolled = await db.fetchval(
                "SELECT coalesce(sum(request_count), 0) FROM cost_analysis_hourly WHERE service_name = $1", service
            )
            return (spans, dead, used, rolled) == (4, 1, True, 3)

        await wait_until(stored, what="spans, the dead letter, the key's last use and the rollups")
        assert await db.fetchval("SELECT count(*) FROM model_pricing") > 0, "seeded by `migrate`"
    finally:
        await db.close()
    # The read API runs on the same writer login: spans, rollups (migration 013's grant) and prices.
    headers = {"Authorization": f"Bearer {reader.key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for path, check in (
            (f"/spans?service={service}", lambda body: len(body["spans"]) == 4),
            (f"/usage?service={service}", lambda body: sum(r["requests"] for r in body["rows"]) == 3),
            ("/models", lambda body: len(body["models"]) > 0),
        ):
            async with session.get(f"{proc.query_url}/api/v1{path}") as response:
                body = await response.json()
                assert response.status == 200 and check(body), (path, body)
    assert await proc.metric('observatory_maintenance_passes_total{outcome="ok"}') >= 1
    assert await proc.metric("observatory_maintenance_failures_total") == 0
    assert "model prices are read, not seeded" in proc.log_tail(200)
    assert await proc.stop() == 0

    writer = await asyncpg.connect(roles.dsn(roles.writer))
    try:
        for forbidden in (
            "DELETE FROM llm_traces",
            "UPDATE llm_traces SET span_name = 'x'",
            "TRUNCATE llm_logs",
            "UPDATE model_pricing SET input_price_per_million = 0",
            "UPDATE api_keys SET revoked_at = NULL",
            "DELETE FROM api_keys",
            "SELECT * FROM dead_letters",
            "DROP TABLE llm_metrics",
            "CREATE TABLE mine (x int)",
            "ALTER TABLE llm_traces ADD COLUMN x int",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await writer.execute(forbidden)
        # Partitions are the owner's: a pass as the writer says what it needs.
        as_writer = Maintenance(
            lambda: asyncpg.connect(roles.dsn(roles.writer)), "native", MaintenanceSettings(), Metrics()
        )
        report = await as_writer.run_once()
        await as_writer.shutdown()
    finally:
        await writer.close()
    problems = " ".join(report.errors.values())
    assert "permission denied" in problems and "maintenance.database_url" in problems, report.errors


async def test_rollups_refuse_to_guess_about_writers_they_cannot_see(roles):
    """A maintenance login that sees only its own sessions in pg_stat_activity cannot wait for another
    role's open COPY: the rollup step fails, naming the grant, instead of counting wrong."""
    viewer = f"maint_{uuid.uuid4().hex[:8]}"  # has the owner's privileges, and sees no other role's sessions
    await as_superuser(
        roles.cluster,
        roles.database,
        f"REVOKE pg_read_all_stats FROM {roles.owner}",
        f"CREATE ROLE {viewer} LOGIN IN ROLE {roles.owner}",
    )
    settings = MaintenanceSettings(rollup_delay_s=0.0)
    maintenance = Maintenance(lambda: asyncpg.connect(roles.dsn(viewer)), "native", settings, Metrics())
    writer = await asyncpg.connect(roles.dsn(roles.writer))
    viewer_conn = await asyncpg.connect(roles.dsn(viewer))
    try:
        open_tx = writer.transaction()
        await open_tx.start()
        await copy_spans(writer, [span_row(datetime.now(UTC))])
        report = await maintenance.run_once()
        assert f"GRANT pg_read_all_stats TO {viewer}" in report.errors.get("rollups:refresh", ""), report.errors
        assert not any(step.startswith("partitions") for step in report.errors), "the owner's steps still ran"

        await as_superuser(roles.cluster, roles.database, f"GRANT pg_read_all_stats TO {viewer}")
        report = await maintenance.run_once()
        assert report.ok, report.errors
        await open_tx.commit()
        assert (await maintenance.run_once()).ok
        await assert_rollups_match_raw(viewer_conn)  # the span of the open transaction was waited for
    finally:
        await maintenance.shutdown()
        await writer.close()
        await viewer_conn.close()


@pytest.mark.timescale
async def test_a_writer_login_on_the_timescale_flavor(timescale_cluster, tmp_path):
    """Hypertables take a writer's rows (new chunks included: they are the hypertable owner's); the
    maintenance task, which keeps the rollups in this flavor too (migration 015), runs with the owner's
    URL as documented."""
    from tests.conftest import create_database, drop_database

    database = await create_database(timescale_cluster)
    writer = f"ingest_{uuid.uuid4().hex[:8]}"
    try:
        migrated = subprocess.run(
            [sys.executable, "-m", "receiver", "migrate"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
        )
        assert migrated.returncode == 0 and "(timescale)" in migrated.stdout, migrated.stderr
        await as_superuser(timescale_cluster, database.name, f"CREATE ROLE {writer} LOGIN IN ROLE observatory_writer")
        dsn = (
            f"postgresql://{writer}@/{database.name}?host={timescale_cluster.socket_dir}&port={timescale_cluster.port}"
        )
        proc = ReceiverProcess(dsn, tmp_path, maintenance__database_url=database.dsn, maintenance__interval_s=1)
        await proc.start()
        service = f"ts-writer-{uuid.uuid4().hex[:6]}"
        yesterday = int((datetime.now(UTC).timestamp() - 86_400) * 1e9)  # a chunk of its own
        await export_grpc(proc.grpc_target, trace_request([span("now"), span("then", start_ns=yesterday)], service))
        await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)
        status, text = await proc.get("/health")
        health = json.loads(text)
        assert status == 200 and health["status"] == "healthy", health
        assert health["database"]["postgres"]["flavor"] == "timescale"
        assert await proc.metric('observatory_maintenance_passes_total{outcome="ok"}') >= 1
        assert await proc.metric("observatory_maintenance_failures_total") == 0
        assert await proc.stop() == 0
    finally:
        await drop_database(database)


async def test_a_writer_login_cannot_migrate_and_is_told_who_can(roles, tmp_path):
    import shutil

    from receiver.resources import migrations_dir
    from receiver.storage.migrate import MigrationError, load_migrations, migrate

    newer = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), newer)
    (newer / "999_more.sql").write_text("CREATE TABLE more (x int);")
    writer = await asyncpg.connect(roles.dsn(roles.writer))
    try:
        assert (await migrate(writer)).applied == [], "nothing pending: no DDL, no error (a writer's `run`)"
        with pytest.raises(
            MigrationError, match=f"role {roles.writer} may not change the schema.*as the schema's owner"
        ):
            await migrate(writer, migrations=load_migrations(newer))
    finally:
        await writer.close()
