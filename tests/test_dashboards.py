"""Grafana dashboards (config/grafana): every SQL panel query of "LLM usage" and every variable query,
expanded as Grafana would (tests/support/grafana.py says how), run against a migrated database holding
spans and refreshed rollups — native flavor, and timescale where TimescaleDB is installed — as the
read-only role docker-compose gives Grafana (config/compose/initdb/10-grafana-reader.sql), created before
the migrations as compose does. The provisioning files name the data sources the dashboards use. (The
"Receiver" dashboard's PromQL is checked against a real scrape in tests/test_monitoring.py.)
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import yaml

from receiver.storage.maintenance import Maintenance, MaintenanceSettings
from receiver.storage.migrate import migrate
from receiver.telemetry.metrics import Metrics
from tests.conftest import create_database, drop_database
from tests.support import grafana
from tests.support.spans import copy_spans, varied_rows

PROVISIONING = Path(__file__).resolve().parents[1] / "config" / "grafana" / "provisioning"
GRAFANA_READER = Path(__file__).resolve().parents[1] / "config" / "compose" / "initdb" / "10-grafana-reader.sql"
NOW = datetime.now(UTC)
START = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
TIME_FROM, TIME_TO = START - timedelta(days=1), NOW + timedelta(days=1)
SPANS = varied_rows(START, days=3, count=900, seed=7)


async def populate(conn, flavor: str, database) -> None:
    await conn.execute(GRAFANA_READER.read_text())  # as compose: the role first, the receiver's tables after
    await migrate(conn, flavor)
    await copy_spans(conn, SPANS)
    if flavor == "native":
        maintenance = Maintenance(database.connect, "native", MaintenanceSettings(rollup_delay_s=0.0), Metrics())
        try:
            report = await maintenance.run_once()
        finally:
            await maintenance.shutdown()
        assert report.ok, report.errors
    else:
        await conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        )
        from receiver.storage import rollups as rollup_passes  # (a local below is named rollups)

        while not (await rollup_passes.refresh(conn, 0.0)).caught_up:
            pass


async def run_usage_dashboard(conn) -> None:
    dashboard = grafana.load("llm-usage.json")
    variables = grafana.variables(dashboard)
    multi = [name for name, v in variables.items() if v.get("multi")]
    rollups = [o["value"] for o in variables["rollup"]["options"]]
    all_values = dict.fromkeys(multi)  # every multi-valued variable on "All"

    # Variable queries first: their values feed the "one value selected" runs below.
    chosen = {}
    for name in multi:
        sql = grafana.render_sql(
            grafana.variable_query(variables[name]), TIME_FROM, TIME_TO, {"rollup": rollups[0], **all_values}, variables
        )
        values = [r[0] for r in await conn.fetch(sql)]
        assert values, f"variable ${name} lists no values"
        chosen[name] = [values[0]]

    queries = [q for q in grafana.queries(dashboard) if q.kind == "sql"]
    assert len(queries) >= 15
    for query, rollup in itertools.product(queries, rollups):
        for selection in (all_values, chosen):
            sql = grafana.render_sql(query.text, TIME_FROM, TIME_TO, {"rollup": rollup, **selection}, variables)
            try:
                rows = await conn.fetch(sql)
            except Exception as exc:
                raise AssertionError(f"panel {query.panel!r} ({rollup}) fails: {exc}\n{sql}") from exc
            if selection is all_values:
                assert rows, f"panel {query.panel!r} ({rollup}) shows nothing over data it should show\n{sql}"
                if query.format == "time_series":
                    assert all(r["time"] is not None for r in rows), query.panel

    # The figures are right, not only well-formed: the stat panels against the raw spans.
    llm = [s for s in SPANS if s[_col("provider")] is not None or s[_col("model")] is not None]
    expected = {
        "Requests": len(llm),
        "Cost": float(sum((s[_col("total_cost")] or Decimal(0)) for s in llm)),
        "Tokens": sum(s[_col("total_tokens")] or 0 for s in llm),
    }
    for query in queries:
        if query.panel in expected:
            for rollup in rollups:
                sql = grafana.render_sql(query.text, TIME_FROM, TIME_TO, {"rollup": rollup, **all_values}, variables)
                assert float(await conn.fetchval(sql)) == pytest.approx(expected[query.panel], rel=1e-9), (
                    query.panel,
                    rollup,
                )


def _col(name: str) -> int:
    from receiver.schema import TRACES_COLUMNS

    return TRACES_COLUMNS.index(name)


async def as_grafana(database):
    return await asyncpg.connect(database.dsn.replace("postgresql://observatory@", "postgresql://grafana_reader@"))


async def test_usage_dashboard_queries_run_on_the_native_flavor(database):
    conn = await database.connect()
    try:
        await populate(conn, "native", database)
    finally:
        await conn.close()
    grafana_conn = await as_grafana(database)
    try:
        await run_usage_dashboard(grafana_conn)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await grafana_conn.execute("DELETE FROM dead_letters")
    finally:
        await grafana_conn.close()


@pytest.mark.timescale
async def test_usage_dashboard_queries_run_on_the_timescale_flavor(timescale_cluster):
    database = await create_database(timescale_cluster)
    conn = await database.connect()
    try:
        await populate(conn, "timescale", database)
        grafana_conn = await as_grafana(database)
        try:
            await run_usage_dashboard(grafana_conn)
        finally:
            await grafana_conn.close()
    finally:
        await conn.close()
        await drop_database(database)


def test_dashboards_use_the_provisioned_data_sources_and_are_provisioned():
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "observatory.yml").read_text())["datasources"]
    provisioned = {d["uid"]: d["type"] for d in datasources}
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "observatory.yml").read_text())["providers"]
    assert providers and all(p["type"] == "file" for p in providers)
    uids = set()
    for path in sorted(grafana.DASHBOARDS.glob("*.json")):
        dashboard = grafana.load(path.name)
        uids.add(dashboard["uid"])
        refs = [p["datasource"] for p in grafana.panels(dashboard) if "datasource" in p]
        refs += [t["datasource"] for p in grafana.panels(dashboard) for t in p.get("targets", [])]
        refs += [v["datasource"] for v in grafana.variables(dashboard).values() if "datasource" in v]
        for ref in refs:
            assert provisioned.get(ref["uid"]) == ref["type"], f"{path.name}: data source {ref} is not provisioned"
        for panel in grafana.panels(dashboard):
            assert panel["type"] == "row" or panel.get("targets"), f"{path.name}: panel {panel['title']!r} has no query"
    assert uids == {"llm-observatory-receiver", "llm-observatory-usage"}
