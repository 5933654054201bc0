"""`db verify` and `db maintain` as an operator runs them, and the maintenance task inside a real
receiver: OTLP spans spanning several days, partitions and rollups kept, visible in /health and /metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from tests.support.otlp import export_grpc, span, trace_request
from tests.support.process import ReceiverProcess


def run_cli(dsn: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": dsn, **env},
        timeout=120,
    )


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


async def test_db_verify_passes_on_a_maintained_schema_and_fails_on_damage(database):
    assert run_cli(database.dsn, "migrate").returncode == 0
    before = run_cli(database.dsn, "db", "verify")
    assert before.returncode == 1 and "FAIL  partitions of llm_traces: no partition for" in before.stdout

    maintain = run_cli(database.dsn, "db", "maintain")
    assert maintain.returncode == 0, maintain.stdout + maintain.stderr
    assert "created partition llm_traces_p" in maintain.stdout and "pass ok" in maintain.stdout

    ok = run_cli(database.dsn, "db", "verify")
    assert ok.returncode == 0, ok.stdout
    assert fail_lines(ok.stdout) == [] and len(ok.stdout.splitlines()) >= 20
    assert all(line.startswith("PASS  ") for line in ok.stdout.splitlines())

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m%d")
    conn = await database.connect()
    try:
        await conn.execute("DROP INDEX llm_traces_user_ts_idx")
        await conn.execute(f"DROP TABLE llm_metrics_p{tomorrow}_06")  # 6-hour partitions by default
        await conn.execute("ALTER TABLE api_keys DROP CONSTRAINT api_keys_project_id_fkey")
    finally:
        await conn.close()
    broken = run_cli(database.dsn, "db", "verify")
    assert broken.returncode == 1
    failures = "\n".join(fail_lines(broken.stdout))
    assert "FAIL  indexes on llm_traces: missing llm_traces_user_ts_idx" in failures
    day = f"{tomorrow[:4]}-{tomorrow[4:6]}-{tomorrow[6:]}"
    assert f"FAIL  partitions of llm_metrics: no partition for {day} 06:00..{day} 12:00 UTC" in failures
    assert "FAIL  foreign key api_keys.project_id -> projects.id: missing" in failures
    assert len(fail_lines(broken.stdout)) == 3, broken.stdout

    # The next maintenance pass re-creates the missing day; the index and key need an operator.
    assert run_cli(database.dsn, "db", "maintain").returncode == 0
    assert len(fail_lines(run_cli(database.dsn, "db", "verify").stdout)) == 2


def test_db_maintain_refuses_an_unmigrated_database(database):
    result = run_cli(database.dsn, "db", "maintain")
    assert result.returncode == 1 and "run `llm-observatory-receiver migrate` first" in result.stderr


async def test_receiver_maintains_partitions_and_rollups_of_otlp_spans(database, tmp_path):
    """Spans of the last four days sent over OTLP land (the old ones in DEFAULT first), the receiver's own
    maintenance task moves them into daily partitions and rolls them up; /health and /metrics show it."""
    proc = ReceiverProcess(database.dsn, tmp_path, maintenance__interval_s=1, maintenance__rollup_delay_s=0)
    await proc.start()
    try:
        service = f"maint-{uuid.uuid4().hex[:6]}"
        now_ns = time.time_ns()
        spans = [
            span(
                "chat gpt-4o",
                start_ns=now_ns - days * 86_400 * 10**9 - i * 10**9,
                duration_ns=(i + 1) * 50_000_000,
                attributes={
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 10,
                },
            )
            for days in range(4)
            for i in range(5)
        ]
        await export_grpc(proc.grpc_target, trace_request(spans, service))
        await database.wait_for_count(
            "SELECT coalesce(sum(request_count), 0) FROM llm_metrics_1day WHERE service_name = $1", 20, service
        )
        rows = await database.fetch(
            "SELECT sum(request_count) AS n, sum(input_tokens) AS tokens FROM llm_metrics_1hour "
            "WHERE service_name = $1",
            service,
        )
        assert (rows[0]["n"], rows[0]["tokens"]) == (20, 4 * sum(100 + i for i in range(5)))
        # The pass after the spans arrived moved the old days out of DEFAULT into partitions of their own.
        await database.wait_for_count(
            "SELECT count(*) FROM llm_traces WHERE service_name = $1 AND tableoid <> 'llm_traces_default'::regclass",
            20,
            service,
        )

        status, body = await proc.get("/health")
        maintenance = orjson.loads(body)["maintenance"]
        assert status == 200 and maintenance["flavor"] == "native"
        assert maintenance["partitions"]["llm_traces"]["days_ahead"] == 3
        assert maintenance["consecutive_failures"] == 0 and maintenance["rollups"]["lag_s"] is not None
        assert await proc.metric('observatory_maintenance_passes_total{outcome="ok"}') >= 1
        assert await proc.metric("observatory_partition_default_rows_moved_total") >= 15
        assert await proc.metric("observatory_rollup_spans_total") >= 20
        assert "partition created" in proc.log_path.read_text()
    finally:
        assert await proc.stop() == 0
