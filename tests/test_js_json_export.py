"""The OTel JS SDK's OTLP/JSON exporter lands column-exact: the same spans as its protobuf exporter sends.

tests/fidelity/node/export_both.mjs makes one fixed, varied set of spans with the JS SDK (GenAI
attributes, every attribute type, events, links, an error status, every span kind, a parent and child,
a 2 KB string) and exports it twice: with exporter-trace-otlp-http (OTLP/JSON, through the receiver's C
encoder) to one receiver, with exporter-trace-otlp-proto to another. Two receivers with two databases,
because the rows share their key (ts, trace_id, span_id): in one table the second export would be
taken for a retry and skipped. So no column the receiver writes is exempt: each must be equal in every row.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from receiver.frontends import decode
from receiver.schema import TRACES_COLUMNS
from tests.conftest import create_database, drop_database
from tests.support.process import REPO, ReceiverProcess

NODE_ENV = REPO / "var" / "fidelity" / "node"
SCRIPT = REPO / "tests" / "fidelity" / "node" / "export_both.mjs"
SPANS = 7  # the spans export_both.mjs makes
SCRIPT_TIMEOUT = 120  # seconds
DATABASE_SET = {"ingested_at"}  # llm_traces columns the database fills in, not the receiver


@pytest.fixture
def node_env() -> Path:
    if not (NODE_ENV / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-http").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{NODE_ENV} is missing: `make fidelity-envs` builds it")
        pytest.skip(f"{NODE_ENV} is not built with exporter-trace-otlp-http (make fidelity-envs)")
    return NODE_ENV


def test_the_js_json_body_is_all_taken_by_the_c_encoder(node_env: Path, tmp_path: Path) -> None:
    """Every resource, scope and span the JS JSON exporter sends is encoded by the C encoder itself
    (none left to the json_format fallback), so the receiver test below compares the C encoder's work."""
    assert decode._otlpjson is not None, "the C encoder receiver.convert._otlpjson is not built (make install)"
    body = tmp_path / "body.json"
    assert _run_script(node_env, {"EXPORT_JSON_BODY": str(body)}) == f"serialized {SPANS}"
    document = orjson.loads(body.read_bytes())
    spans = 0
    for resource_spans in document["resourceSpans"]:
        assert decode._otlpjson.resource_spans_header(resource_spans) is not None, resource_spans["resource"]
        for scope_spans in resource_spans["scopeSpans"]:
            assert decode._otlpjson.scope_spans_header(scope_spans) is not None, scope_spans["scope"]
            for span in scope_spans["spans"]:
                assert decode._otlpjson.span(span) is not None, f"left to json_format: {span['name']}"
                spans += 1
    assert spans == SPANS


async def test_json_and_protobuf_exports_store_identical_rows(node_env: Path, pg_cluster: Any, tmp_path: Path) -> None:
    databases = {"json": await create_database(pg_cluster), "protobuf": await create_database(pg_cluster)}
    receivers = {name: ReceiverProcess(db.dsn, tmp_path / name) for name, db in databases.items()}
    for r in receivers.values():
        r.workdir.mkdir()
    try:
        await asyncio.gather(*(r.start() for r in receivers.values()))
        out = await asyncio.to_thread(
            _run_script,
            node_env,
            {
                "EXPORT_JSON_ENDPOINT": receivers["json"].http_url,
                "EXPORT_PROTO_ENDPOINT": receivers["protobuf"].http_url,
            },
        )
        assert out == f"exported {SPANS}"
        for name, r in receivers.items():  # a partial success is a success to the exporters
            assert await r.metric("otelcol_receiver_refused_spans") == 0, f"{name} refused spans:\n{r.log_tail()}"
        for db in databases.values():  # the export was answered once queued: wait until the rows are written
            await db.wait_for_count("SELECT count(*) FROM llm_traces", SPANS)
        rows = {name: await _rows(db) for name, db in databases.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in receivers.values()))
        for db in databases.values():
            await drop_database(db)

    json_rows, proto_rows = rows["json"], rows["protobuf"]
    # Every column the receiver writes is compared; the others the database sets (when the row was stored).
    assert set(next(iter(proto_rows.values()))) - set(TRACES_COLUMNS) == DATABASE_SET
    assert json_rows.keys() == proto_rows.keys()
    differences = [
        f"span {proto['span_name']!r} column {column}: json={json_rows[key][column]!r} protobuf={proto[column]!r}"
        for key, proto in proto_rows.items()
        for column in TRACES_COLUMNS
        if json_rows[key][column] != proto[column]
    ]
    assert not differences, "\n".join(differences)

    # The rows compared hold what was sent (not two equally empty conversions).
    by_name = {row["span_name"]: row for row in proto_rows.values()}
    chat = by_name["chat gpt-4o"]
    assert (chat["provider"], chat["request_model"], chat["model"]) == ("openai", "gpt-4o", "gpt-4o-2024-08-06")
    assert (chat["input_tokens"], chat["output_tokens"], chat["cache_read_tokens"]) == (1200, 300, 400)
    assert chat["trace_state"] == "vendor=abc,other=1:2"
    assert len(chat["attributes"]) > 2000 and chat["events"] is not None
    assert by_name["execute_tool get_weather"]["parent_span_id"] == chat["span_id"]
    assert by_name["execute_tool get_weather"]["links"] is not None
    failed = by_name["chat claude-haiku-4-5"]
    assert failed["status_message"] == "Overloaded: the provider refused (529) — retry later"
    assert failed["status_code"] == "error" and failed["scope_version"] in (None, "")
    assert len({row["span_kind"] for row in proto_rows.values()}) == 5


def _run_script(node_env: Path, environ: dict[str, str]) -> str:
    """Run export_both.mjs; its last line of output (`exported N`, `serialized N`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "EXPORT_"))}
    env |= {"FIDELITY_NODE_MODULES": str(node_env), **environ}
    done = subprocess.run(
        ["node", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"export_both.mjs exited {done.returncode}:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


async def _rows(db: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every llm_traces row by its key. The jsonb columns stay text: jsonb's text is canonical (key order,
    numbers), so equal text is equal content and a double written differently shows."""
    return {(r["ts"], r["trace_id"], r["span_id"]): dict(r) for r in await db.fetch("SELECT * FROM llm_traces")}
