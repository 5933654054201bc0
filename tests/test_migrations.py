"""Migrations: ordered, recorded with checksums, idempotent, refusing edits, keeping data."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from receiver.resources import migrations_dir
from receiver.storage.migrate import MigrationError, load_migrations, migrate


async def test_migrate_twice_is_a_no_op_and_records_checksums(database):
    conn = await database.connect()
    try:
        first = await migrate(conn, "native")
        assert first.flavor == "native"
        assert first.applied[0] == "001_core_tables"
        second = await migrate(conn)
        assert second.applied == [] and second.already == len(first.applied)
        rows = await conn.fetch("SELECT version, flavor, checksum FROM schema_migrations ORDER BY version")
        expected = load_migrations()
        assert [r["version"] for r in rows] == [m.version for m in expected]
        assert all(r["checksum"] == m.checksum("native") for r, m in zip(rows, expected, strict=True))
        assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'llm_traces'") == b"p"
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(database, tmp_path):
    conn = await database.connect()
    try:
        await migrate(conn, "native")
        edited = tmp_path / "migrations"
        shutil.copytree(migrations_dir(), edited)
        path = edited / "001_core_tables.sql"
        path.write_text(path.read_text() + "\n-- a harmless-looking edit\n")
        with pytest.raises(MigrationError, match="001_core_tables was changed after it was applied"):
            await migrate(conn, migrations=load_migrations(edited))
    finally:
        await conn.close()


async def test_a_newer_version_keeps_existing_data(database, tmp_path):
    conn = await database.connect()
    try:
        await migrate(conn, "native")
        await conn.execute(
            "INSERT INTO model_pricing (provider, model, input_price_per_million, output_price_per_million) "
            "VALUES ('p', 'm', 1, 2)"
        )
        newer = tmp_path / "migrations"
        shutil.copytree(migrations_dir(), newer)
        (newer / "999_add_note.sql").write_text("ALTER TABLE model_pricing ADD COLUMN note text DEFAULT 'kept';")
        report = await migrate(conn, migrations=load_migrations(newer))
        assert report.applied == ["999_add_note"]
        row = await conn.fetchrow("SELECT input_price_per_million, note FROM model_pricing WHERE model = 'm'")
        assert (row["input_price_per_million"], row["note"]) == (1, "kept")
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back_and_named(database, tmp_path):
    conn = await database.connect()
    try:
        await migrate(conn, "native")
        broken = tmp_path / "migrations"
        shutil.copytree(migrations_dir(), broken)
        (broken / "998_broken.sql").write_text("CREATE TABLE half_done (x int); SELECT no_such_function();")
        with pytest.raises(MigrationError, match=r"migration 998_broken \(native\) failed and was rolled back"):
            await migrate(conn, migrations=load_migrations(broken))
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 998") == 0
    finally:
        await conn.close()


def test_migrate_command(database):
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "applied 001_core_tables (native)" in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
        timeout=120,
    )
    assert again.returncode == 0 and "applied" not in again.stdout and "schema up to date" in again.stdout
