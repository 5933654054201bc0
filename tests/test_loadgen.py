"""loadgen: the bodies it builds, its exact verification against a real receiver and database, how it
counts refusals, and its report. The CLI runs as a subprocess, as a user runs it. No timed
assertions: the healthy runs pass --sustain-ratio 0.5 so a busy CI machine cannot fail them, and
the refusing receiver refuses because its table is locked, not because it is slow."""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import time
import uuid
from collections import Counter

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from llm_observatory_loadgen.bodies import build_pool
from llm_observatory_loadgen.ids import RunId, split_trace_id
from llm_observatory_loadgen.retry import RetryPolicy, retryable
from llm_observatory_loadgen.stats import SignalStats
from llm_observatory_loadgen.transport import ExportResult
from llm_observatory_loadgen.verdict import judge
from llm_observatory_loadgen.workload import CHAT_MODELS, DEFAULT_MIX, SCOPES, RequestBuilder, WorkloadSpec, parse_mix
from receiver import schema
from receiver.convert.common import ConvertOptions
from receiver.convert.price_source import GenaiPrices
from receiver.convert.pricing import PriceBook
from receiver.convert.traces import convert_traces
from receiver.convert.traces_bytes import convert_traces_bytes
from receiver.frontends.decode import parse_json
from receiver.frontends.signals import LOGS, SIGNALS, TRACES
from receiver.storage.pricing_store import default_pricing_file, read_pricing_file
from tests.support.process import REPO, ReceiverProcess


def loadgen(*args: str, timeout: float = 120) -> tuple[int, dict | None, str]:
    done = subprocess.run(
        [sys.executable, "-m", "llm_observatory_loadgen", "--quiet", *args],
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
    )
    stdout = done.stdout.decode()
    doc = orjson.loads(stdout) if "--json" in args and stdout.strip() else None
    return done.returncode, doc, done.stderr.decode()


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


# -- bodies ------------------------------------------------------------------------------------------


def test_every_send_gets_new_trace_ids_with_parent_links_intact():
    run = RunId.new()
    pool = build_pool(WorkloadSpec(batch_spans=64, with_logs=True), run, "protobuf", 2, seed=7)
    seen: set[bytes] = set()
    for k in (1, 2, 3, 0x01020304):
        entry = pool.entries[k % 2]
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(entry.traces.render(k))
        spans = spans_of(request)
        assert len(spans) == 64 == pool.spans_per_request
        trace_ids = {s.trace_id for s in spans}
        assert not trace_ids & seen, "a trace id was sent twice"
        seen |= trace_ids
        for trace_id in trace_ids:
            assert trace_id[:4] == run.prefix and split_trace_id(trace_id)[1] == k
        by_trace: dict[bytes, set[bytes]] = {}
        for s in spans:
            by_trace.setdefault(s.trace_id, set()).add(s.span_id)
        for s in spans:
            assert not s.parent_span_id or s.parent_span_id in by_trace[s.trace_id]
        logs = logs_service_pb2.ExportLogsServiceRequest.FromString(entry.logs.render(k))
        records = logs.resource_logs[0].scope_logs[0].log_records
        assert records and {r.trace_id for r in records} <= trace_ids  # logs correlate with this send's spans
        assert len(entry.span_keys) == 64


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sends_are_dated_when_sent_and_keys_have_production_cardinalities(encoding):
    """Span times follow the send time (a long run spreads its spans over its duration), sessions last
    `session_turns` passes over the pool and then are new, the users' long tail rotates."""
    pool_size, turns = 2, 3
    spec = WorkloadSpec(batch_spans=64, with_logs=True, session_turns=turns)
    pool = build_pool(spec, RunId.new(), encoding, pool_size, seed=11)
    entry = pool.entries[0]

    def decode(body: bytes, message_type: type) -> object:
        if encoding == "protobuf":
            return message_type.FromString(body)
        spec_ = TRACES if message_type is trace_service_pb2.ExportTraceServiceRequest else SIGNALS["logs"]
        parsed = parse_json(spec_.request_type, spec_.envelope, body)
        assert parsed.rejected == 0, parsed.errors
        return parsed.message

    def attrs(span) -> dict[str, str]:
        return {kv.key: kv.value.string_value for kv in span.attributes}

    base = entry.traces.time_base_ns
    later = base + 3_600 * 10**9 + 123  # an hour later: times move by whole seconds
    before = spans_of(decode(entry.traces.render(1), trace_service_pb2.ExportTraceServiceRequest))
    after = spans_of(decode(entry.traces.render(1, later), trace_service_pb2.ExportTraceServiceRequest))
    for a, b in zip(before, after, strict=True):
        assert b.start_time_unix_nano - a.start_time_unix_nano == 3_600 * 10**9
        assert b.end_time_unix_nano - a.end_time_unix_nano == 3_600 * 10**9
        assert [e.time_unix_nano - 3_600 * 10**9 for e in b.events] == [e.time_unix_nano for e in a.events]
    records = decode(entry.logs.render(1, later), logs_service_pb2.ExportLogsServiceRequest)
    for record in records.resource_logs[0].scope_logs[0].log_records:
        assert record.time_unix_nano > base + 3_500 * 10**9
    # Sessions: the same for `turns` passes over the pool (k = 1, 3, 5 use entry 0), then new ones.
    def sessions(k: int) -> set[str]:
        spans = spans_of(decode(entry.traces.render(k), trace_service_pb2.ExportTraceServiceRequest))
        found = {attrs(s).get("session.id") or attrs(s).get("gen_ai.conversation.id") for s in spans}
        found.discard(None)
        found.discard("")
        assert found and not any("~" in f for f in found)
        return found

    first = sessions(1)
    assert sessions(1 + pool_size) == first == sessions(1 + 2 * pool_size)
    assert not sessions(1 + turns * pool_size) & first
    # Users: Zipf over the population, a fixed hot head and a rotating tail.
    builder = RequestBuilder(WorkloadSpec(users=5000), RunId.new(), seed=5, base_ns=base)
    drawn = Counter(builder.user_id() for _ in range(20_000))
    top, share = drawn.most_common(1)[0]
    assert top == "user-00000" and 0.07 < share / 20_000 < 0.15
    assert len(drawn) > 1000
    tail = next(u for u in drawn if u.endswith("~~u~"))
    assert tail.startswith("user-") and int(tail.split("-")[1]) >= WorkloadSpec().hot_users


def test_json_bodies_are_otlp_json_the_receiver_converts_without_rejections():
    pool = build_pool(WorkloadSpec(batch_spans=50), RunId.new(), "json", 1, seed=3)
    parsed = parse_json(TRACES.request_type, TRACES.envelope, pool.entries[0].traces.render(9))
    assert parsed.rejected == 0, parsed.errors
    converted = convert_traces(parsed.message, ConvertOptions())
    assert converted.rejected == 0 and len(converted.rows) == 50
    assert all(row[2].bytes.endswith(bytes.fromhex("00000009")) for row in converted.rows)  # k = 9


def test_json_bodies_of_every_signal_take_the_transcoder():
    """`--encoding json` measures the C transcoder (receiver.convert._jsonwire), not the paths it leaves
    unusual requests to: it answers for every body loadgen sends, with json_format's message."""
    from receiver.convert import _jsonwire

    if _jsonwire is None:
        pytest.skip("the C transcoder is not built")
    pool = build_pool(WorkloadSpec(batch_spans=50), RunId.new(), "json", 2, seed=3)
    for entry in pool.entries:
        for template, spec in ((entry.traces, TRACES), (entry.logs, LOGS)):
            if template is None:
                continue
            body = template.render(9)
            wire = _jsonwire.transcode(spec.json_signal, body)
            assert wire is not None, body[:300]
            expected = parse_json(spec.request_type, spec.envelope, body).message
            assert spec.request_type.FromString(wire[0]) == expected


# What loadgen's code on main built for the default spec (two 512-span requests, seed 17, run 0badc0de):
# the `make bench` figures of the README were measured on this workload. If a change to the default
# workload is intended, say so in the README next to the figures, then update the digest.
DEFAULT_POOL_SHA256 = "d473b1ca802cfbd7b84d9ebb67ff79afd3b6a4ef9ff04a8869b0870414001307"
GENAI_KEYS = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.request.temperature",
    "gen_ai.request.max_tokens",
    "gen_ai.request.top_p",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.output.type",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.conversation.id",
    "server.address",
    "server.port",
    "user.id",
    "session.id",
}


def test_default_workload_is_unchanged_by_the_genai_shape():
    """Adding a shape must not move a single byte of the default workload (it is not in DEFAULT_MIX, and
    a trailing zero weight leaves rng.choices' draws as they were)."""
    assert "genai" not in DEFAULT_MIX
    builder = RequestBuilder(WorkloadSpec(), RunId(bytes.fromhex("0badc0de")), seed=17, base_ns=1_700_000_000 * 10**9)
    digest = hashlib.sha256()
    for index in range(2):
        digest.update(builder.build(index).traces.SerializeToString(deterministic=True))
    assert digest.hexdigest() == DEFAULT_POOL_SHA256


@functools.cache
def genai_request() -> trace_service_pb2.ExportTraceServiceRequest:
    """One 512-span request of `--mix genai=100` (seed 23), dated now so that prices resolve for today."""
    spec = WorkloadSpec(mix=parse_mix("genai=100"))
    return RequestBuilder(spec, RunId(bytes.fromhex("0badc0de")), seed=23, base_ns=time.time_ns()).build(0).traces


def test_genai_mix_is_pure_17_attribute_chat_spans_of_issue_17_size():
    """Every span of a genai-only request, the fill included, is one current-conventions chat client
    span with exactly the 17 attributes (+ error.type in error); a quarter carry the prompt event."""
    request = genai_request()
    scopes = {ss.scope.name for rs in request.resource_spans for ss in rs.scope_spans}
    assert scopes == {SCOPES["current"][0]}
    spans = spans_of(request)
    assert len(spans) == 512 and len({s.trace_id for s in spans}) == 512  # one span per trace
    prompts = errors = 0
    for s in spans:
        attrs = {kv.key: kv.value for kv in s.attributes}
        failed = s.status.code == s.status.STATUS_CODE_ERROR
        assert set(attrs) == GENAI_KEYS | ({"error.type"} if failed else set()), s.name
        assert len(s.attributes) == len(attrs)  # no key twice
        assert s.name == f"chat {attrs['gen_ai.request.model'].string_value}" and s.kind == s.SPAN_KIND_CLIENT
        assert not s.parent_span_id
        assert [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values]
        events = {e.name: e for e in s.events}
        assert set(events) <= {"gen_ai.client.inference.operation.details", "exception"}
        assert ("exception" in events) == failed
        if "gen_ai.client.inference.operation.details" in events:
            prompts += 1
            (message,) = events["gen_ai.client.inference.operation.details"].attributes
            assert message.key == "gen_ai.input.messages"
            assert 150 <= len(message.value.string_value) <= 250
            assert orjson.loads(message.value.string_value)[0]["role"] == "user"
        errors += failed
    assert 90 <= prompts <= 166  # one in four (512 * 0.25 = 128; ~3.9 standard deviations either way)
    assert 1 <= errors <= 30  # error_rate 0.02: ~10
    assert 700 <= request.ByteSize() / 512 <= 820, request.ByteSize() / 512  # B/span on the wire


def test_genai_spans_take_the_priced_genai_path():
    """The genai mix exercises what the receiver does for GenAI spans: provider, model, tokens and a
    cost from the receiver's default prices (the bundled price file in front of genai-prices). The one
    exception is CHAT_MODELS' mistral-small (4% of chat calls), which genai-prices 0.2.3 does not know:
    those rows are stored unpriced, as they are in the default workload."""
    maintained = GenaiPrices()
    book = PriceBook(read_pricing_file(default_pricing_file()), maintained, maintained.name)
    converted = convert_traces_bytes(genai_request().SerializeToString(), ConvertOptions(price_book=book))
    assert converted.rejected == 0, converted.errors
    rows = [dict(zip(schema.TRACES_COLUMNS, row, strict=True)) for row in converted.rows]
    assert len(rows) == 512
    models = {(provider, model) for provider, model, _, _ in CHAT_MODELS}
    priced = 0
    for row in rows:
        assert (row["provider"], row["request_model"]) in models and row["model"] and row["operation"] == "chat"
        assert row["input_tokens"] > 0 and row["output_tokens"] is not None
        assert row["user_id"] and row["session_id"]
        if row["total_cost"] is None:
            assert row["cost_source"] == "unpriced" and row["model"].startswith("mistral-small"), row
        else:
            assert row["total_cost"] > 0 and row["cost_source"] == "pricing", row
            priced += 1
    assert priced >= 0.9 * len(rows)


def test_retry_rules_follow_the_otlp_specification():
    assert retryable(ExportResult(False, "UNAVAILABLE", "UNAVAILABLE"))
    assert retryable(ExportResult(False, "HTTP 503", 503)) and retryable(ExportResult(False, "HTTP 429", 429))
    assert not retryable(ExportResult(False, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"))
    assert retryable(ExportResult(False, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", has_retry_info=True))
    assert not retryable(ExportResult(False, "INVALID_ARGUMENT", "INVALID_ARGUMENT"))
    assert not retryable(ExportResult(False, "HTTP 400", 400)) and not retryable(ExportResult(False, "HTTP 404", 404))
    policy = RetryPolicy(max_elapsed_s=3.0)
    busy = ExportResult(False, "UNAVAILABLE", "UNAVAILABLE", retry_after=1.0, has_retry_info=True)
    rng = __import__("random").Random(0)
    assert policy.next_delay(busy, 1, 0.0, rng) == 1.0  # the server's RetryInfo, as given
    assert policy.next_delay(busy, 3, 2.5, rng) is None  # would start after the 3 s budget
    assert RetryPolicy(enabled=False).next_delay(busy, 1, 0.0, rng) is None


def test_rate_rule_counts_acknowledgements_that_arrive_after_the_window():
    """A receiver at 90% of the rate acknowledges its backlog after the window: it must still fail."""
    st = SignalStats("traces", "spans", offered_items=600_000, acked_items=600_000)
    slow = judge({"traces": st}, True, 60.0, 66.7, 0.95, None, None, None, False)
    assert slow.rate_sustained is False and not slow.ok
    healthy = judge({"traces": st}, True, 60.0, 60.05, 0.95, None, None, None, False)
    assert healthy.rate_sustained is True and healthy.ok


# -- against a real receiver ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transport",
    # OTLP/JSON costs the receiver ~10x the CPU of protobuf per span: a lower rate, so that a busy CI
    # machine still sustains it (the test is about exact verification, not throughput).
    [("grpc", "protobuf", False, 1500), ("http", "json", True, 500)],
    ids=["grpc-protobuf", "http-json-gzip"],
)
async def test_verified_run_counts_exactly_what_the_database_holds(receiver, module_database, transport):
    protocol, encoding, gzip, rate = transport
    target = receiver.grpc_target if protocol == "grpc" else receiver.http_url
    code, doc, stderr = loadgen(
        "--target", target, "--protocol", protocol, "--encoding", encoding, *(["--gzip"] if gzip else []),
        "--rate", str(rate), "--duration", "3", "--batch-spans", "100", "--exporters", "2", "--pool", "4",
        "--sustain-ratio", "0.5", "--verify", module_database.dsn, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert doc is not None and doc["ok"] is True
    traces = doc["signals"]["traces"]
    assert traces["offered"] == traces["requests"]["offered"] * 100
    stored = await module_database.fetchval(
        "SELECT count(*) FROM llm_traces WHERE resource_attributes->>'loadgen.run_id' = $1", doc["run_id"]
    )
    v = doc["verification"]
    assert v["ok"] and v["lost"] == 0 and v["duplicated"] == 0 and v["unexpected"] == 0
    assert v["found"] == v["acknowledged"] == traces["acknowledged"] == stored
    assert v["complete_after_s"] is not None
    services = await module_database.fetch(
        "SELECT DISTINCT service_name FROM llm_traces WHERE resource_attributes->>'loadgen.run_id' = $1",
        doc["run_id"],
    )
    assert services and all(doc["run_id"] in r["service_name"] for r in services)
    # The JSON report's shape: what scripts (make bench, CI) read.
    assert {
        "format",
        "run_id",
        "ok",
        "config",
        "workload",
        "run",
        "signals",
        "generator",
        "verification",
        "verdict",
    } <= set(doc)
    assert {"p50", "p95", "p99", "max", "count"} <= set(traces["latency_ms"]["rpc"])
    assert {"rate_sustained", "verified", "rule", "problems", "acknowledged_to_offered"} <= set(doc["verdict"])
    assert doc["verdict"]["rate_sustained"] is True and doc["verdict"]["verified"] is True
    assert traces["refusals"] == {} and traces["requests"]["retries"] == 0


async def test_refusals_are_counted_by_status_and_fail_the_run(database, tmp_path):
    """A receiver whose table is locked fills its tiny queue and then refuses (UNAVAILABLE / 503)."""
    proc = ReceiverProcess(database.dsn, tmp_path, pipeline__queue_max_rows=300, pipeline__retry_after_s=0.5)
    await proc.start()
    lock = await database.connect()
    transaction = lock.transaction()
    await transaction.start()
    try:
        await lock.execute("LOCK TABLE llm_traces IN ACCESS EXCLUSIVE MODE")
        for protocol, target, status in (
            ("grpc", proc.grpc_target, "UNAVAILABLE"),
            ("http", proc.http_url, "HTTP 503"),
        ):
            code, doc, stderr = loadgen(
                "--target", target, "--protocol", protocol, "--rate", "1000", "--duration", "2",
                "--batch-spans", "100", "--pool", "2", "--retry-max-elapsed", "2.5", "--json",
            )  # fmt: skip
            assert code == 1, stderr
            assert doc is not None
            traces = doc["signals"]["traces"]
            assert traces["refusals"].get(status, 0) > 0, traces["refusals"]
            assert traces["requests"]["retries"] > 0  # retried after RetryInfo / Retry-After, then gave up
            assert traces["failed"] > 0 and traces["acknowledged"] < traces["offered"]
            assert doc["verdict"]["rate_sustained"] is False and doc["ok"] is False
    finally:
        await transaction.rollback()
        await lock.close()
        await proc.stop()


def test_unreachable_target_is_one_line_naming_it_and_the_fix():
    code, _, stderr = loadgen("--target", "127.0.0.1:9", "--duration", "1")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "--target" in lines[0], stderr


def test_bad_verify_dsn_fails_before_sending(receiver):
    dsn = f"postgresql://nobody@/nowhere?host=/nonexistent-{uuid.uuid4().hex[:6]}"
    code, _, stderr = loadgen("--target", receiver.grpc_target, "--duration", "1", "--verify", dsn)
    assert code == 2 and "--verify" in stderr and len(stderr.strip().splitlines()) == 1, stderr


async def test_metrics_and_logs_are_verified_by_count_and_logs_join_their_spans(receiver, module_database):
    code, doc, stderr = loadgen(
        "--target", receiver.grpc_target, "--signals", "traces,metrics,logs", "--rate", "500", "--duration", "1.5",
        "--batch-spans", "50", "--pool", "2", "--metrics-interval", "0.5", "--exporters", "1",
        "--sustain-ratio", "0.5", "--verify", module_database.dsn, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert doc is not None
    for name in ("metrics", "logs"):
        s = doc["signals"][name]
        assert s["offered"] > 0 and s["acknowledged"] == s["offered"], s
        assert doc["verification"]["signals"][name] == {"acknowledged": s["acknowledged"], "stored": s["acknowledged"]}
    orphans = await module_database.fetchval(
        "SELECT count(*) FROM llm_logs l WHERE l.resource_attributes->>'loadgen.run_id' = $1 AND NOT EXISTS "
        "(SELECT 1 FROM llm_traces t WHERE t.trace_id = l.trace_id AND t.span_id = l.span_id)",
        doc["run_id"],
    )
    assert orphans == 0  # every log record carries the ids of a span sent in the same run
