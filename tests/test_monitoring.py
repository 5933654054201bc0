"""Alert rules and PromQL, checked by Prometheus itself.

- promtool validates the rules and the shipped Prometheus configuration, and runs the rules' unit tests
  (tests/prometheus/alerts.test.yml: each alert fires when it should and stays quiet when it should not).
- Every alert links a section of docs/runbook.md that exists.
- A real Prometheus (Debian's binary, on a free loopback port, its own storage directory) scrapes a real
  receiver every second with the shipped rules loaded. After a known workload — spans over gRPC and HTTP,
  metric points, log records, one span the database refuses — its query API returns the exact counters,
  the provoked alert (ReceiverRowsQuarantined) fires, and every other rule is healthy and inactive.
- Every metric name (and label name) the alert rules and the "Receiver" dashboard use is one the
  receiver exports.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from receiver.telemetry.metrics import Metrics
from tests.conftest import create_database, drop_database
from tests.support import grafana
from tests.support.otlp import (
    export_grpc,
    export_http,
    gauge,
    log_record,
    log_request,
    metric_request,
    number_point,
    span,
    trace_request,
)
from tests.support.process import ReceiverProcess, free_port
from tests.support.tools import REPO, require_tool
from tests.support.wait import wait_until

RULES = REPO / "config" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "config" / "prometheus" / "prometheus.yml"
RULE_TESTS = REPO / "tests" / "prometheus" / "alerts.test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
JOB = "llm-observatory-receiver"


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0 and f"SUCCESS: {len(alert_rules())} rules found" in check.stdout, check
    config = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr
    unit = promtool("test", "rules", str(RULE_TESTS))
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr

    # Every alert has a case where it fires and one where it must stay quiet.
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']}: no test where it stays quiet"


def runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_section():
    anchors = runbook_anchors()
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor == rule["alert"].lower(), annotations["runbook_url"]
        assert anchor in anchors, f"{rule['alert']}: docs/runbook.md has no section #{anchor}"


# -- a real Prometheus scraping a real receiver --------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())  # the shipped configuration, aimed at the test
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(RULES)]
        (scrape,) = config["scrape_configs"]
        scrape["static_configs"] = [{"targets": [target]}]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.storage = workdir / "tsdb"
        self.log = workdir / "prometheus.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                require_tool("prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                stdout=log,
                stderr=log,
            )

        async def ready() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/-/ready") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=60, interval=0.2, what="prometheus ready")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def api(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/api/v1/{path}", params=params) as r:
            body = await r.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> dict[str, float]:
        """Instant query: value by the result's labels but the name (as a sorted 'k=v,...' string)."""
        data = await self.api("query", query=expr)
        return {
            ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items()) if k != "__name__"): float(item["value"][1])
            for item in data["result"]
        }

    async def wait_for(self, expr: str, expected: dict[str, float], timeout: float = 60) -> None:
        last: list[dict[str, float]] = [{}]

        async def matches() -> bool:
            last[0] = await self.query(expr)
            return last[0] == expected

        await wait_until(matches, timeout=timeout, interval=0.25, what=lambda: f"{expr} = {last[0]}, want {expected}")


@pytest.fixture(scope="module")
async def monitored(pg_cluster, tmp_path_factory):
    """A receiver, and a Prometheus scraping it every second with the shipped rules."""
    database = await create_database(pg_cluster)
    workdir = tmp_path_factory.mktemp("monitored")
    receiver = ReceiverProcess(database.dsn, workdir)
    await receiver.start()
    prometheus = Prometheus(workdir, f"127.0.0.1:{receiver.admin_port}")
    try:
        await prometheus.start()
        yield receiver, prometheus, database
    finally:
        await prometheus.stop()
        await receiver.stop()
        await drop_database(database)


async def test_prometheus_counts_the_workload_and_fires_the_provoked_alert(monitored):
    receiver, prometheus, database = monitored
    instance = f"instance=127.0.0.1:{receiver.admin_port},job={JOB}"
    conn = await database.connect()
    try:
        await conn.execute("ALTER TABLE llm_traces ADD CONSTRAINT no_poison CHECK (span_name <> 'poison')")
    finally:
        await conn.close()
    # The dead-letter counter is scraped at 0 before anything happens, so increase() sees the step.
    quarantined = f'otelcol_exporter_send_failed_spans_total{{job="{JOB}", reason="quarantined"}}'
    await prometheus.wait_for(quarantined, {f"{instance},reason=quarantined": 0})

    grpc_spans = [span(f"chat-{i}", attributes={"gen_ai.request.model": "gpt-4o"}) for i in range(20)]
    grpc_spans[7] = span("poison")  # the database refuses it: quarantined, the other 19 land
    await export_grpc(receiver.grpc_target, trace_request(grpc_spans, "monitored-grpc"))
    http_spans = [span(f"h-{i}") for i in range(10)]
    result, _ = await export_http(receiver.http_url, trace_request(http_spans, "monitored-http"))
    assert result.status == 200
    points = [number_point(i, attributes={"k": str(i)}) for i in range(3)]
    await export_grpc(receiver.grpc_target, metric_request([gauge("queue.depth", points)], "monitored-grpc"))
    result, _ = await export_http(receiver.http_url, log_request([log_record("a"), log_record("b")], "monitored-http"))
    assert result.status == 200
    await database.wait_for_count("SELECT count(*) FROM llm_traces", 29)
    await database.wait_for_count("SELECT count(*) FROM dead_letters", 1)

    expected = {
        f'sum by (transport) (otelcol_receiver_accepted_spans_total{{job="{JOB}"}})': {
            "transport=grpc": 20,
            "transport=http": 10,
        },
        f'sum(otelcol_exporter_sent_spans_total{{job="{JOB}"}})': {"": 29},
        f'sum by (table) (storage_items_written_total{{job="{JOB}"}})': {
            "table=llm_traces": 29,
            "table=llm_metrics": 3,
            "table=llm_logs": 2,
        },
        f'sum(otelcol_exporter_send_failed_spans_total{{job="{JOB}", reason="quarantined"}})': {"": 1},
        f'sum(otelcol_receiver_accepted_metric_points_total{{job="{JOB}"}})': {"": 3},
        f'sum(otelcol_receiver_accepted_log_records_total{{job="{JOB}"}})': {"": 2},
        f'sum by (outcome) (otelcol_receiver_requests_total{{job="{JOB}"}})': {"outcome=success": 4},
        f'up{{job="{JOB}"}}': {instance: 1},
    }
    for expr, values in expected.items():
        await prometheus.wait_for(expr, values)
        print(f"{expr} -> {values}")

    async def provoked_alert_fires() -> bool:
        alerts = (await prometheus.api("alerts"))["alerts"]
        return any(a["labels"]["alertname"] == "ReceiverRowsQuarantined" and a["state"] == "firing" for a in alerts)

    await wait_until(provoked_alert_fires, timeout=60, interval=0.25, what="ReceiverRowsQuarantined firing")
    alerts = (await prometheus.api("alerts"))["alerts"]
    assert [(a["labels"]["alertname"], a["state"], a["labels"]["instance"]) for a in alerts] == [
        ("ReceiverRowsQuarantined", "firing", f"127.0.0.1:{receiver.admin_port}")
    ]
    summary = alerts[0]["annotations"]["summary"]
    assert summary == f"127.0.0.1:{receiver.admin_port} quarantined rows the database refused"
    rules = [r for g in (await prometheus.api("rules"))["groups"] for r in g["rules"]]
    assert len(rules) == len(alert_rules())
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    states = {r["name"]: r["state"] for r in rules}
    print("rule states:", states)
    assert states.pop("ReceiverRowsQuarantined") == "firing"
    assert set(states.values()) == {"inactive"}, states


# -- metric and label names ----------------------------------------------------------------------------


def exported_families(scrape: str) -> dict[str, str]:
    """Metric family name -> type, from the exposition's # TYPE lines (labelled families without a
    sample yet are declared too)."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", scrape, flags=re.MULTILINE))


def sample_names(families: dict[str, str]) -> set[str]:
    names = set(families) | {"up"}  # `up` is Prometheus's own, per target
    for name, kind in families.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def declared_labels() -> dict[str, set[str]]:
    """Label names of every metric the receiver declares, by the names a scrape shows."""
    out: dict[str, set[str]] = {}
    metrics = Metrics()
    collectors = [
        collector
        for value in vars(metrics).values()
        for collector in (value.values() if isinstance(value, dict) else [value])
    ]
    for collector in collectors:
        name, kind = getattr(collector, "_name", None), getattr(collector, "_type", None)
        if name is None:
            continue
        labels = set(collector._labelnames) | {"job", "instance"}
        names = {f"{name}_total"} if kind == "counter" else {name}
        if kind == "histogram":
            names = {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            labels.add("le")
        for n in names:
            out[n] = labels
    return out


def promql_expressions() -> list[tuple[str, str]]:
    exprs = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    dashboard = grafana.load("receiver.json")
    exprs += [(f"panel {q.panel!r}", q.text) for q in grafana.queries(dashboard) if q.kind == "promql"]
    for name, variable in grafana.variables(dashboard).items():
        # Grafana's label_values(selector, label): the selector is PromQL; the label must be one it has.
        selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", grafana.variable_query(variable)).groups()
        exprs.append((f"variable ${name}", f"sum by ({label}) ({selector})"))
    return exprs


def receiver_string_literals() -> str:
    return "\n".join(p.read_text() for p in (REPO / "receiver").rglob("*.py"))


async def test_alerts_and_dashboard_use_only_what_the_receiver_exports(monitored):
    receiver, _, _ = monitored
    _, scrape = await receiver.get("/metrics")
    names = sample_names(exported_families(scrape))
    labels = declared_labels()
    source = receiver_string_literals()
    for where, expr in promql_expressions():
        used = grafana.metric_names(expr)
        assert used, f"{where}: no metric found in {expr!r}"
        assert used <= names, f"{where}: not exported by the receiver: {sorted(used - names)}"
        known = set().union(*(labels.get(n, {"job", "instance"}) for n in used))
        for metric, label, _op, value in grafana.label_matchers(expr):
            assert label in labels.get(metric, {"job", "instance"}), f"{where}: {metric} has no label {label!r}"
            if label in ("job", "instance") or value.startswith("$"):
                continue
            for alternative in value.split("|"):  # every value matched is one the receiver emits
                assert f'"{alternative}"' in source, f"{where}: {label}={alternative!r} is never emitted"
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            for label in filter(None, (part.strip() for part in clause.split(","))):
                assert label in known, f"{where}: grouping by {label!r}, which none of {sorted(used)} has"
