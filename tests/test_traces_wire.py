"""What SDKs do not send but real traffic contains: hand-written OTLP/JSON, invalid spans next to
valid ones, exact retries, values PostgreSQL cannot store, and bodies that must be refused."""

from __future__ import annotations

import math
import uuid

import grpc
import orjson
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.support.idempotency import assert_retry_stored_once, duplicates_skipped
from tests.support.otlp import T0, export_grpc, new_span_id, new_trace_id, post, span, trace_request

COUNT = "SELECT count(*) FROM llm_traces WHERE service_name = $1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_otlp_json_request_with_hex_ids_string_int64_and_unknown_fields(receiver, module_database):
    service = unique("json")
    trace_id, span_id, parent_id = new_trace_id(), new_span_id(), new_span_id()
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.30.0",
                "futureField": {"ignored": True},
                "scopeSpans": [
                    {
                        "scope": {"name": "openinference.instrumentation.openai", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": trace_id.hex(),
                                "spanId": span_id.hex(),
                                "parentSpanId": parent_id.hex(),
                                "name": "ChatCompletion",
                                "kind": 3,
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": T0 + 250_000_000,
                                "attributes": [
                                    {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
                                    {"key": "llm.system", "value": {"stringValue": "anthropic"}},
                                    {"key": "llm.model_name", "value": {"stringValue": "claude-3-5-sonnet-20241022"}},
                                    {"key": "llm.token_count.prompt", "value": {"intValue": "2000"}},
                                    {"key": "llm.token_count.completion", "value": {"intValue": 100}},
                                    {"key": "llm.token_count.total", "value": {"intValue": "2100"}},
                                    {"key": "user.id", "value": {"stringValue": "alice"}},
                                    {
                                        "key": "tag.tags",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "beta"}, {"stringValue": "eu"}]}
                                        },
                                    },
                                ],
                                "status": {"code": 1},
                                "unknownSpanField": 7,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    result = await post(f"{receiver.http_url}/v1/traces", orjson.dumps(body), "application/json")
    assert result.status == 200, result.body
    assert result.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(result.body) == {}  # full success: partial_success unset
    await module_database.wait_for_count(COUNT, 1, service)
    row = (await module_database.fetch("SELECT * FROM llm_traces WHERE service_name = $1", service))[0]
    assert row["trace_id"] == uuid.UUID(bytes=trace_id)
    assert row["span_id"] == span_id.hex() and row["parent_span_id"] == parent_id.hex()
    assert row["span_kind"] == "client" and row["status_code"] == "ok"
    assert row["provider"] == "anthropic" and row["model"] == "claude-3-5-sonnet-20241022"
    assert row["operation"] == "chat"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (2000, 100, 2100)
    assert str(row["total_cost"]) == "0.0075"  # 2000 x $3/M + 100 x $15/M
    assert row["user_id"] == "alice" and row["tags"] == ["beta", "eu"]
    assert row["duration_ms"] == 250.0


@pytest.mark.parametrize("transport", ["grpc", "http-protobuf", "http-json-gzip"])
async def test_invalid_spans_are_rejected_by_partial_success_and_valid_ones_land(receiver, module_database, transport):
    service = unique(f"mixed-{transport}")
    good = [span(f"good-{i}") for i in range(3)]
    bad = [
        span("short-trace-id", trace_id=b"\x01" * 8),
        span("zero-span-id", span_id=bytes(8)),
        span("ends-before-start", duration_ns=0),
    ]
    bad[2].end_time_unix_nano = bad[2].start_time_unix_nano - 1
    request = trace_request([good[0], bad[0], good[1], bad[1], bad[2], good[2]], service)

    if transport == "grpc":
        response = await export_grpc(receiver.grpc_target, request)
        partial = response.partial_success
    else:
        json = transport == "http-json-gzip"
        if json:
            from google.protobuf.json_format import MessageToDict

            document = MessageToDict(request)
            for resource in document["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for item in scope["spans"]:  # OTLP/JSON ids are hex, not protobuf-JSON base64
                        for key in ("traceId", "spanId"):
                            item[key] = __import__("base64").b64decode(item[key]).hex()
            body = orjson.dumps(document)
        else:
            body = request.SerializeToString()
        result = await post(
            f"{receiver.http_url}/v1/traces", body, "application/json" if json else "application/x-protobuf", gzip=json
        )
        assert result.status == 200
        response = trace_service_pb2.ExportTraceServiceResponse()
        if json:
            from google.protobuf.json_format import ParseDict

            ParseDict(orjson.loads(result.body), response)
        else:
            response.ParseFromString(result.body)
        partial = response.partial_success

    assert partial.rejected_spans == 3
    message = partial.error_message
    assert "3 span(s) rejected" in message
    assert "trace_id has 8 bytes, expected 16" in message
    assert "span_id is all zeros" in message
    assert "end_time_unix_nano is before start_time_unix_nano" in message
    await module_database.wait_for_count(COUNT, 3, service)
    names = {
        r["span_name"]
        for r in await module_database.fetch("SELECT span_name FROM llm_traces WHERE service_name = $1", service)
    }
    assert names == {"good-0", "good-1", "good-2"}


async def test_json_item_with_unrepresentable_value_rejects_only_that_span(receiver, module_database):
    service = unique("json-bad-item")
    good_id, bad_id = new_span_id(), new_span_id()
    spans = [
        {
            "traceId": new_trace_id().hex(),
            "spanId": good_id.hex(),
            "name": "ok",
            "startTimeUnixNano": str(T0),
            "endTimeUnixNano": str(T0 + 1),
        },
        {
            "traceId": "not-hex-at-all-not-hex-at-all-00",
            "spanId": bad_id.hex(),
            "name": "bad-hex",
            "startTimeUnixNano": str(T0),
            "endTimeUnixNano": str(T0 + 1),
        },
        {
            "traceId": new_trace_id().hex(),
            "spanId": new_span_id().hex(),
            "name": "bad-int",
            "startTimeUnixNano": "yesterday",
            "endTimeUnixNano": str(T0 + 1),
        },
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    result = await post(f"{receiver.http_url}/v1/traces", orjson.dumps(body), "application/json")
    assert result.status == 200
    partial = orjson.loads(result.body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "traceId 'not-hex-at-all-not-hex-at-all-00' is not a hex string" in partial["errorMessage"]
    assert "span 2" in partial["errorMessage"]
    await module_database.wait_for_count(COUNT, 1, service)


async def test_same_request_exported_twice_is_stored_once(receiver, module_database):
    service = unique("retry")
    request = trace_request([span(f"s{i}", attributes={"i": i}) for i in range(50)], service)
    before = await duplicates_skipped(receiver, "llm_traces")
    await export_grpc(receiver.grpc_target, request)
    await module_database.wait_for_count(COUNT, 50, service)
    # The client retries the very same request (its first answer was lost, say) over HTTP this time.
    result = await post(f"{receiver.http_url}/v1/traces", request.SerializeToString())
    assert result.status == 200
    await assert_retry_stored_once(receiver, module_database, "llm_traces", "span_id", service, 50, before)


async def test_duplicate_spans_inside_one_request_are_stored_once(receiver, module_database):
    service = unique("dup-in-request")
    one = span("twice")
    request = trace_request([one, one, span("once")], service)
    response = await export_grpc(receiver.grpc_target, request)
    assert not response.HasField("partial_success")
    await module_database.wait_for_count(COUNT, 2, service)
    rows = await module_database.fetch("SELECT span_name FROM llm_traces WHERE service_name = $1", service)
    assert sorted(r["span_name"] for r in rows) == ["once", "twice"]


async def test_nul_bytes_and_non_finite_numbers_never_fail_a_batch(receiver, module_database):
    service = unique("nul-nan")
    weird = span(
        "nul\x00name",
        attributes={
            "prompt": "before\x00after",
            "key\x00with-nul": "v",
            "nan": math.nan,
            "inf": math.inf,
            "ninf": -math.inf,
            "nested": {"deep": ["a\x00b", math.nan]},
        },
    )
    request = trace_request([weird, span("plain")], service)
    await export_grpc(receiver.grpc_target, request)
    await module_database.wait_for_count(COUNT, 2, service)
    row = (
        await module_database.fetch(
            "SELECT * FROM llm_traces WHERE service_name = $1 AND span_name <> 'plain'", service
        )
    )[0]
    assert row["span_name"] == "nul\ufffdname"
    attributes = orjson.loads(row["attributes"])
    assert attributes["prompt"] == "before\ufffdafter"
    assert attributes["key\ufffdwith-nul"] == "v"
    assert (attributes["nan"], attributes["inf"], attributes["ninf"]) == ("NaN", "Infinity", "-Infinity")
    assert attributes["nested"] == {"deep": ["a\ufffdb", "NaN"]}
    assert await receiver.metric("observatory_conversion_altered_values_total") >= 5


async def test_oversized_attribute_is_truncated_with_a_marker(module_database, tmp_path):
    from tests.support.process import ReceiverProcess

    proc = ReceiverProcess(module_database.dsn, tmp_path, limits__max_attribute_value_bytes=1000)
    await proc.start()
    try:
        service = unique("truncate")
        await export_grpc(proc.grpc_target, trace_request([span("big", attributes={"prompt": "é" * 5000})], service))
        await module_database.wait_for_count(COUNT, 1, service)
        value = orjson.loads(
            (await module_database.fetch("SELECT attributes FROM llm_traces WHERE service_name = $1", service))[0][
                "attributes"
            ]
        )["prompt"]
        assert value.startswith("é" * 500)
        assert value.endswith("…[truncated 9000 bytes]")
    finally:
        assert await proc.stop() == 0


async def test_chunked_http_body_without_content_length(receiver, module_database):
    service = unique("chunked")
    request = trace_request([span(f"c{i}", attributes={"blob": "y" * 500}) for i in range(30)], service)
    result = await post(f"{receiver.http_url}/v1/traces", request.SerializeToString(), chunked=True)
    assert result.status == 200
    await module_database.wait_for_count(COUNT, 30, service)


async def test_malformed_bodies_are_refused_as_bad_requests(receiver):
    result = await post(f"{receiver.http_url}/v1/traces", b"\xff\xfe not protobuf")
    assert result.status == 400
    status = status_pb2.Status.FromString(result.body)
    assert "not a valid ExportTraceServiceRequest protobuf" in status.message

    result = await post(f"{receiver.http_url}/v1/traces", b"{not json", "application/json")
    assert result.status == 400
    assert "not valid JSON" in orjson.loads(result.body)["message"]

    result = await post(
        f"{receiver.http_url}/v1/traces", b"\x1f\x8b garbage", gzip=False, content_type="application/x-protobuf"
    )
    assert result.status == 400

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        async with grpc.aio.insecure_channel(receiver.grpc_target) as channel:
            await channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(b"\xff\xff\xff")
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unsupported_media_type_and_encoding_are_415(receiver):
    result = await post(f"{receiver.http_url}/v1/traces", b"x", "text/plain")
    assert result.status == 415
    assert "unsupported Content-Type 'text/plain'" in status_pb2.Status.FromString(result.body).message
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{receiver.http_url}/v1/traces",
            data=b"x",
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
        ) as response,
    ):
        assert response.status == 415


async def test_body_over_the_limit_is_413_and_resource_exhausted(module_database, tmp_path):
    from tests.support.process import ReceiverProcess

    proc = ReceiverProcess(module_database.dsn, tmp_path, otlp__max_request_bytes=20_000)
    await proc.start()
    try:
        request = trace_request([span("big", attributes={"blob": "z" * 30_000})], unique("big"))
        body = request.SerializeToString()
        result = await post(f"{proc.http_url}/v1/traces", body)
        assert result.status == 413
        assert "otlp.max_request_bytes" in status_pb2.Status.FromString(result.body).message
        # A small gzip body that inflates past the limit is refused too (no decompression bombs).
        result = await post(f"{proc.http_url}/v1/traces", body, gzip=True)
        assert result.status == 413
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await export_grpc(proc.grpc_target, request)
        assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        assert await proc.stop() == 0


async def test_empty_request_is_a_full_success(receiver):
    response = await export_grpc(receiver.grpc_target, trace_service_pb2.ExportTraceServiceRequest())
    assert not response.HasField("partial_success")
    result = await post(f"{receiver.http_url}/v1/traces", b"")
    assert result.status == 200


def edge_case_spans(service: str) -> trace_service_pb2.ExportTraceServiceRequest:
    """Spans that exercise every conversion rule: NUL, NaN, truncation, nesting, duplicates, events,
    links, LLM attributes and prices, invalid spans next to valid ones."""
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    from tests.support.otlp import attr

    spans = [
        span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.provider.name": "OpenAI",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.input.messages": "é\x00" * 800,  # NUL, and over the 1000-byte limit below
                "ratio": math.nan,
                "big": 1e16,
                "nested": {"list": [1, 2.5, None, b"\x00\xff", {"deep": '\x01"\\'}]},
            },
            kind=3,
            trace_state="k=v",
        ),
        span("invalid", trace_id=b"\x01" * 15),
        span("tool", attributes={"tags": ["a", "b"], "user.id": 7}, parent_span_id=bytes(8)),
    ]
    spans[0].attributes.append(attr("ratio", -math.inf))  # a duplicate key: the later value wins
    spans[0].events.append(trace_pb2.Span.Event(time_unix_nano=5, name="e\x00", attributes=[attr("x", 1)]))
    spans[0].links.append(trace_pb2.Span.Link(trace_id=b"\x02" * 16, span_id=b"\x03" * 8, trace_state="s"))
    spans[0].status.CopyFrom(trace_pb2.Status(code=2, message="boom"))
    request = trace_request(spans, service)
    request.resource_spans[0].resource.attributes.append(attr("deployment.environment", "staging"))
    request.resource_spans[0].scope_spans[0].scope.CopyFrom(common_pb2.InstrumentationScope(name="s", version="1"))
    return request


async def test_pure_python_switch_stores_the_same_rows_as_the_native_converter(pg_cluster, tmp_path):
    """convert.native = false (OBSERVATORY__CONVERT__NATIVE) takes the reference converter: same rows,
    same partial-success answer as the default native path. Each receiver has its own database (the
    same spans twice in one database would be one row: (trace_id, span_id, ts) is the key)."""
    from receiver.convert.traces_bytes import trace_converter
    from tests.conftest import create_database
    from tests.support.process import ReceiverProcess

    receivers = {}
    for name, native in (("pure", "false"), ("native", "true")):
        database = await create_database(pg_cluster)
        (tmp_path / name).mkdir()
        proc = ReceiverProcess(
            database.dsn, tmp_path / name, convert__native=native, limits__max_attribute_value_bytes=1000
        )
        await proc.start()
        receivers[name] = (proc, database)
    try:
        assert "python (convert.native = false)" in receivers["pure"][0].log_tail(200)
        assert f'"trace_converter": "{trace_converter(True)}"' in receivers["native"][0].log_tail(200)
        request = edge_case_spans("switch")
        answers, rows = {}, {}
        for name, (proc, database) in receivers.items():
            response = await export_grpc(proc.grpc_target, request)
            answers[name] = (response.partial_success.rejected_spans, response.partial_success.error_message)
            await database.wait_for_count(COUNT, 2, "switch")
            rows[name] = [dict(r) for r in await database.fetch("SELECT * FROM llm_traces ORDER BY span_name")]
        assert answers["pure"] == answers["native"] and answers["pure"][0] == 1
        assert len(rows["pure"]) == len(rows["native"])
        for pure, native in zip(rows["pure"], rows["native"], strict=True):
            # ingested_at is the database's clock at COPY time: the only column a converter does not set
            differing = {k: (pure[k], native[k]) for k in pure if pure[k] != native[k] and k != "ingested_at"}
            assert differing == {}, f"span {pure['span_name']}: columns differ (pure, native)"
        chat = rows["native"][0]
        assert chat["provider"] == "openai" and chat["total_cost"] is not None and chat["environment"] == "staging"
        assert orjson.loads(chat["attributes"])["ratio"] == "-Infinity"
    finally:
        for proc, _ in receivers.values():
            assert await proc.stop() == 0


async def test_invalid_utf8_in_a_protobuf_string_is_a_bad_request(receiver):
    body = trace_request([span("ok", attributes={"k": "placeholder"})], unique("utf8")).SerializeToString()
    body = body.replace(b"placeholder", b"placehold\xc3\x28")  # same length: still well-formed protobuf
    result = await post(f"{receiver.http_url}/v1/traces", body)
    assert result.status == 400
    message = status_pb2.Status.FromString(result.body).message
    assert message.startswith("body is not a valid ExportTraceServiceRequest protobuf: ")
    assert "UTF-8" in message  # native: "invalid UTF-8 in a string field at byte N"; upb: "bad UTF-8"
