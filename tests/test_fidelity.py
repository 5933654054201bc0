"""LLM fidelity: real instrumentation libraries, driven against a fake provider, exported to a real receiver.

For each library and version (environments built by `make fidelity-envs` under var/fidelity/), a
subprocess makes real SDK calls (OpenAI, Azure OpenAI, Anthropic, AWS Bedrock, Vertex AI, LangChain,
pydantic-ai; the Vercel AI SDK in Node.js) against tests/fidelity/fake_provider.py on loopback, with the
library's instrumentation on, and exports the spans over OTLP/HTTP to the module's one receiver. The
scenarios of all libraries start together (a few processes at a time); each test waits for its own.
Every call's row must have the provider, model, operation, each token column, status and cost the call
really had — the cost as genai-prices itself computes it from the call's usage. What a library does not
report at all (a gap the receiver cannot repair) is listed in its `gaps`: those columns must then be
empty, and the call is not counted as fully right in the summary written to var/fidelity/summary.txt.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from receiver.convert.price_source import provider_id
from tests.fidelity.fake_provider import serve
from tests.support.process import REPO

ENVS = REPO / "var" / "fidelity"


@dataclass(frozen=True)
class Call:
    """What one call really was (the fake provider's fixed usage, normalized to the receiver's meaning)."""

    provider: str | None
    request: str  # the model asked for
    model: str  # the model that answered
    operation: str
    input: int | None = None  # every input token, cache included
    output: int | None = None
    cache_read: int | None = None
    cache_creation: int | None = None
    reasoning: int | None = None
    error: bool = False


OPENAI_CHAT = Call("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chat", 1200, 300, 400, None, 100)
ANTHROPIC_CHAT = Call("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", "chat", 1500, 200, 700, 300)
BEDROCK_CLAUDE = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
TRUTH: dict[str, Call] = {
    "openai_chat": OPENAI_CHAT,
    "openai_stream": replace(OPENAI_CHAT, request="gpt-4o", model="gpt-4o-2024-08-06"),
    "openai_embeddings": Call("openai", "text-embedding-3-small", "text-embedding-3-small", "embeddings", 8),
    "openai_error": Call("openai", "fail-model", "fail-model", "chat", error=True),
    "azure_chat": replace(OPENAI_CHAT, provider="azure.ai.openai", request="support-gpt4o", model="gpt-4o-2024-11-20"),
    "anthropic_chat": ANTHROPIC_CHAT,
    # Claude on Bedrock through a global inference profile (Bedrock's inputTokens 1500 leave the cache out)
    "bedrock_converse": Call(
        "aws.bedrock", BEDROCK_CLAUDE, BEDROCK_CLAUDE, "chat", 2500, 200, 700, 300
    ),
    # Gemini on Vertex AI: 1200 prompt tokens (400 cached), 200 candidates + 100 thoughts
    "vertex_gemini": Call("gcp.vertex_ai", "gemini-2.5-flash", "gemini-2.5-flash", "chat", 1200, 300, 400, None, 100),
    "langchain_chain": OPENAI_CHAT,
    # A reranker bills per search, not per token: the row names the model and carries no tokens or cost.
    "openinference_rerank": Call(None, "rerank-v3.5", "rerank-v3.5", "rerank"),
    "pydantic_ai_agent": OPENAI_CHAT,
    "pydantic_ai_anthropic": ANTHROPIC_CHAT,
}
TOKEN_FIELDS = ("input", "output", "cache_read", "cache_creation", "reasoning")
COLUMNS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_creation": "cache_creation_tokens",
    "reasoning": "reasoning_tokens",
}


@dataclass(frozen=True)
class Library:
    name: str  # scenario name (tests/fidelity/scenario.py)
    env: str  # var/fidelity/<env>
    package: str  # the distribution whose version is reported
    calls: tuple[str, ...]
    # call -> {field: what the library reports instead of the truth} (None: not reported at all;
    # "recorded": False: the library makes no span for the call)
    gaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # operations the library's other spans (not model calls) must be stored with
    operations: frozenset[str] = frozenset()
    variant: str = ""  # a second run of one library and environment, with `environ` set
    environ: dict[str, str] = field(default_factory=dict)
    # attributes every model call's row must keep (in `attributes`), e.g. the newest message attributes
    kept_attributes: tuple[str, ...] = ()
    # the GenAI event (a log record) every chat call must have in llm_logs, with its span's ids and model
    event: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}-{self.env}" + (f"-{self.variant}" if self.variant else "")


OPENAI_CALLS = ("openai_chat", "openai_stream", "openai_embeddings", "openai_error", "azure_chat")
NO_CACHE_OR_REASONING = {"cache_read": None, "reasoning": None}
LIBRARIES = [
    Library(
        "otel-genai",
        "current",
        "opentelemetry-instrumentation-openai-v2",
        OPENAI_CALLS,
        {c: NO_CACHE_OR_REASONING for c in ("openai_chat", "openai_stream", "azure_chat")},
    ),
    Library(  # the newest GenAI conventions: gen_ai.provider.name, gen_ai.input/output.messages
        "otel-genai",
        "current",
        "opentelemetry-instrumentation-openai-v2",
        OPENAI_CALLS,
        {c: NO_CACHE_OR_REASONING for c in ("openai_chat", "openai_stream", "azure_chat")},
        variant="latest",
        environ={
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_and_event",
            "FIDELITY_EVENTS": "1",
        },
        kept_attributes=("gen_ai.provider.name", "gen_ai.input.messages", "gen_ai.output.messages"),
        event="gen_ai.client.inference.operation.details",
    ),
    Library(
        "otel-genai",
        "legacy",
        "opentelemetry-instrumentation-openai-v2",
        ("openai_chat", "openai_stream", "openai_error", "azure_chat"),  # 2.0b0 does not instrument embeddings
        {c: NO_CACHE_OR_REASONING for c in ("openai_chat", "openai_stream", "azure_chat")},
    ),
    Library(
        "openllmetry",
        "current",
        "opentelemetry-instrumentation-openai",
        (*OPENAI_CALLS, "anthropic_chat", "bedrock_converse"),
        {
            "openai_stream": {"reasoning": None},
            # drops the inference profile's "global." (and so is priced as the regional model)
            "bedrock_converse": {"model": BEDROCK_CLAUDE.removeprefix("global.")},
        },
    ),
    Library(
        "openllmetry",
        "legacy",
        "opentelemetry-instrumentation-openai",
        (*OPENAI_CALLS, "anthropic_chat"),
        {
            "openai_chat": NO_CACHE_OR_REASONING,
            "openai_stream": dict.fromkeys(("input", "output", "cache_read", "reasoning")),  # 0.33: no stream usage
            "openai_error": {"recorded": False},  # 0.33 ends no span when the request fails
            "azure_chat": NO_CACHE_OR_REASONING,
            "anthropic_chat": {"operation": "text_completion"},  # llm.request.type "completion"
        },
    ),
    Library(
        "openinference",
        "current",
        "openinference-instrumentation-openai",
        (*OPENAI_CALLS, "anthropic_chat", "bedrock_converse", "vertex_gemini"),
        {"vertex_gemini": {"provider": "gcp.gemini"}},  # llm.provider "google" for Vertex AI too
    ),
    Library(
        "openinference-langchain",
        "current",
        "openinference-instrumentation-langchain",
        ("langchain_chain", "openinference_rerank"),
        operations=frozenset({"invoke_agent", "chain", "prompt", "retrieval", "execute_tool", "rerank", "chat"}),
    ),
    Library(
        "openlit",
        "current",
        "openlit",
        (*OPENAI_CALLS, "anthropic_chat", "bedrock_converse", "vertex_gemini"),
        {
            **{c: {"reasoning": None} for c in ("openai_chat", "openai_stream", "azure_chat")},
            "vertex_gemini": {"provider": "gcp.gemini"},  # "gemini", server.address the Gemini API's, for Vertex AI
        },
    ),
    Library("pydantic-ai", "current", "pydantic-ai-slim", ("pydantic_ai_agent", "pydantic_ai_anthropic")),
    Library(  # Node.js: the `ai` package's own telemetry (ai.* attributes), exported by the OTel JS SDK
        "vercel-ai-sdk",
        "node",
        "ai",
        ("openai_chat", "openai_stream", "openai_embeddings", "openai_error", "anthropic_chat"),
    ),
    Library(
        "langsmith",
        "current",
        "langsmith",
        ("langchain_chain",),
        {"langchain_chain": {**NO_CACHE_OR_REASONING, "model": "gpt-4o-mini"}},
    ),
]
SUMMARY: list[str] = []


def _version(env: Path, package: str) -> str:
    manifest = env / "node_modules" / package / "package.json"
    if manifest.exists():
        return str(orjson.loads(manifest.read_bytes())["version"])
    for info in (env / "lib").glob(f"python3*/site-packages/{package.replace('-', '_')}-*.dist-info"):
        return info.name.removesuffix(".dist-info").split("-")[1]
    return "?"


def _expected_cost(call: Call, row: Any) -> Decimal:
    from genai_prices import Usage, calc_price

    usage = {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]}
    if row["cache_read_tokens"]:
        usage["cache_read_tokens"] = row["cache_read_tokens"]
    if row["cache_creation_tokens"]:
        usage["cache_write_tokens"] = row["cache_creation_tokens"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        price = calc_price(
            Usage(**{k: v for k, v in usage.items() if v is not None}),
            model_ref=row["model"],
            provider_id=provider_id(row["provider"]),
            genai_request_timestamp=row["ts"],
        )
    return price.total_price


def _check(call_name: str, truth: Call, gaps: dict[str, Any], rows: list[Any]) -> list[str]:
    """What is wrong with the rows of one call, against the truth less the library's gaps."""
    expected = {**truth.__dict__, **gaps}
    mine = [r for r in rows if r["model"] in (truth.model, expected["model"]) or r["request_model"] == truth.request]
    if expected.get("recorded") is False:
        return [f"{len(mine)} rows for a call the library does not record"] if mine else []
    if truth.error:
        calls = [r for r in mine if r["status_code"] == "error"]
    elif any(expected[name] is not None for name in TOKEN_FIELDS):
        calls = [r for r in mine if r["input_tokens"] is not None or r["output_tokens"] is not None]
    else:  # no usage to tell the call from spans around it: the one span of its operation
        calls = [r for r in mine if r["operation"] == expected["operation"]]
    if len(calls) != 1:
        return [f"{len(calls)} rows for the call (of {len(mine)} naming its model), expected 1"]
    row = calls[0]
    problems = []
    for name, column in (("provider", "provider"), ("model", "model"), ("operation", "operation")):
        if row[column] != expected[name]:
            problems.append(f"{column} {row[column]!r}, expected {expected[name]!r}")
    for name in TOKEN_FIELDS:
        got, want = row[COLUMNS[name]], expected[name]
        if (got or 0) != (want or 0):  # a part the call did not use may be stored as 0 or NULL
            problems.append(f"{COLUMNS[name]} {got!r}, expected {want!r}")
    status_ok = row["status_code"] == "error" if truth.error else row["status_code"] in ("unset", "ok")
    if not status_ok:
        problems.append(f"status {row['status_code']!r}")
    if truth.error or not (row["input_tokens"] or row["output_tokens"]):
        if row["total_cost"] is not None and row["total_cost"] != 0:
            problems.append(f"total_cost {row['total_cost']} for a call without tokens")
    else:
        want_cost = _expected_cost(truth, row)
        if row["total_cost"] != want_cost or row["cost_source"] not in ("pricing", "span"):
            problems.append(f"total_cost {row['total_cost']} ({row['cost_source']}), genai-prices says {want_cost}")
    return problems


@dataclass(frozen=True)
class Run:
    service: str
    exported: int  # spans the receiver accepted from the scenario
    events: int  # log records (GenAI events) it accepted


async def _run_scenario(library: Library, receiver: Any, provider_url: str, slots: asyncio.Semaphore) -> Run:
    """One library's scenario in its own environment, exporting to the shared receiver."""
    env = ENVS / library.env
    service = f"fidelity-{library.id}-{uuid.uuid4().hex[:6]}"
    process_env = {
        # PYTHONDONTWRITEBYTECODE left out: the first scenarios cache the bytecode the others import
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OBSERVATORY_", "PYTHONDONTWRITE"))},
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url,
        "OTEL_SERVICE_NAME": service,
        "PYTHONPATH": str(REPO),
        **library.environ,
    }
    if library.env == "node":  # Node.js: the fake provider is the test's (the Python scenarios start their own)
        process_env |= {"FIDELITY_NODE_MODULES": str(env), "FIDELITY_PROVIDER_URL": provider_url}
        command = ["node", str(REPO / "tests" / "fidelity" / "node" / "scenario.mjs"), *library.calls]
    else:
        command = [str(env / "bin" / "python"), "-m", "tests.fidelity.scenario", library.name, *library.calls]
    async with slots:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=REPO, env=process_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), SCENARIO_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{library.id}: the scenario did not finish in {SCENARIO_TIMEOUT} s") from None
        finally:
            if process.returncode is None:  # timed out, or the module ended first
                process.kill()
                await process.wait()
    out = stdout.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not out or not out[-1].startswith("exported "):
        raise AssertionError(f"{library.id}: exit {process.returncode}\n{stderr.decode(errors='replace')[-3000:]}")
    counts = [int(n) for n in out[-1].split()[1:]]
    return Run(service, counts[0], counts[1] if len(counts) > 1 else 0)


SCENARIO_TIMEOUT = 240  # seconds for one scenario process, started concurrently with the others


@pytest.fixture(scope="module")
async def scenario_runs(receiver: Any, request: pytest.FixtureRequest) -> AsyncIterator[dict[str, asyncio.Task[Run]]]:
    """The selected libraries' scenarios, started at once against the one receiver (a few processes at a
    time: they mostly import Python), so the module takes about the CPU time of all of them over the cores."""
    selected = {
        item.callspec.params["library"].id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "library" in item.callspec.params
    }
    slots = asyncio.Semaphore(max(2, (os.cpu_count() or 2) + 1))
    provider, provider_url = serve()
    runs = {
        library.id: asyncio.create_task(_run_scenario(library, receiver, provider_url, slots))
        for library in LIBRARIES
        if library.id in selected and (ENVS / library.env / ".built").exists()
    }
    yield runs
    for task in runs.values():
        task.cancel()
    await asyncio.gather(*runs.values(), return_exceptions=True)
    provider.shutdown()


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda lib: lib.id)
async def test_library_calls_are_stored_as_they_happened(library, scenario_runs, module_database):
    env = ENVS / library.env
    if library.id not in scenario_runs:
        if os.environ.get("CI"):
            pytest.fail(f"{env} is missing: `make fidelity-envs` builds it")
        pytest.skip(f"{env} is not built (make fidelity-envs)")
    run = await scenario_runs[library.id]
    # The scenario exits after the receiver accepted every span: wait until each is a row.
    await module_database.wait_for_count(
        "SELECT count(*) FROM llm_traces WHERE service_name = $1", run.exported, run.service
    )
    rows = await module_database.fetch("SELECT * FROM llm_traces WHERE service_name = $1", run.service)
    version = _version(env, library.package)
    failures = {}
    right = 0
    for call in library.calls:
        gaps = library.gaps.get(call, {})
        problems = _check(call, TRUTH[call], gaps, rows)
        if problems:
            failures[call] = problems
        elif not gaps:
            right += 1
    missing = library.operations - {r["operation"] for r in rows}
    if missing:
        failures["operations"] = [f"no span stored as {sorted(missing)}"]
    chats = [r for r in rows if r["operation"] == "chat" and r["status_code"] != "error" and r["input_tokens"]]
    for key in library.kept_attributes:
        if not chats or any(key not in orjson.loads(r["attributes"]) for r in chats):
            failures.setdefault("attributes", []).append(f"{key} not kept on every chat call")
    if library.event:
        await module_database.wait_for_count(
            "SELECT count(*) FROM llm_logs WHERE service_name = $1", run.events, run.service
        )
        events = {
            (e["trace_id"], e["span_id"]): e
            for e in await module_database.fetch(
                "SELECT * FROM llm_logs WHERE service_name = $1 AND event_name = $2", run.service, library.event
            )
        }
        for chat in chats:
            event = events.get((chat["trace_id"], chat["span_id"]))
            if event is None or (event["provider"], event["model"]) != (chat["provider"], chat["model"]):
                found = event and (event["provider"], event["model"])
                failures.setdefault("events", []).append(f"{library.event} of {chat['model']}: {found}")
    name = f"{library.name} {library.variant}".strip()
    line = f"{name} ({library.package} {version}): {right}/{len(library.calls)} calls fully right"
    if library.gaps:
        line += "; library gaps: " + "; ".join(f"{c} {sorted(g)}" for c, g in library.gaps.items())
    if library.operations:
        line += f"; other spans: {', '.join(sorted(library.operations))}"
    if library.event:
        line += f"; {run.events} {library.event} events"
    SUMMARY.append(line)
    ENVS.mkdir(parents=True, exist_ok=True)
    (ENVS / "summary.txt").write_text("\n".join(SUMMARY) + "\n")
    assert not failures, failures
