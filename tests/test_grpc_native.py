"""The OTLP/gRPC front end on libnghttp2 (receiver/frontends/_h2grpc.c + grpc_native.py).

Two levels. The session alone, driven frame by frame by an independent HTTP/2 client (the `h2` library):
framing rules, bounds (message size, buffered bytes, header size), early answers, resets, garbage. Then
two real receivers, one per engine (otlp.grpc_engine = nghttp2 / grpcio), sent the same calls by grpcio's
client: same status codes, same rows. The rest of the suite's gRPC tests run on the default engine (auto =
nghttp2 where it is built).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from receiver.frontends import grpc_native
from tests.support.h2client import EXPORT, H2Client, expected_call, grpc_frame, request_headers
from tests.support.otlp import export_grpc, span, trace_request
from tests.support.wait import wait_until

pytestmark = pytest.mark.skipif(not grpc_native.available(), reason="receiver.frontends._h2grpc is not built")

if grpc_native.available():
    from receiver.frontends._h2grpc import ProtocolError, Session

MIB = 1024 * 1024


def session(max_message: int = MIB, max_buffered: int = 16 * MIB, streams: int = 100) -> Session:
    return Session(max_message, max_buffered, streams, 4 * MIB)


# -- the session, frame by frame ----------------------------------------------------------------------


def test_a_unary_call_goes_in_whole_and_its_answer_comes_back_framed():
    client = H2Client(session())
    message = b"\x0a\x03abc" * 1000
    stream_id = client.call(grpc_frame(message), request_headers(extra=(("authorization", "Bearer k"),)))
    ((sid, path, got, compressed, headers, problem),) = client.calls
    assert (sid, path, got, compressed, problem) == (stream_id, EXPORT, message, False, None)
    assert headers["authorization"] == "Bearer k" and headers["content-type"] == "application/grpc"
    assert client.session.respond(stream_id, b"\x12\x00", 0, ()) is True
    client.read_output()
    answer = client.answers[stream_id]
    assert answer.headers[":status"] == "200" and answer.headers["content-type"] == "application/grpc"
    assert answer.data == grpc_frame(b"\x12\x00")
    assert answer.trailers == {"grpc-status": "0"} and answer.ended and answer.reset is None


def test_an_error_is_one_headers_frame_with_status_message_and_details():
    client = H2Client(session())
    stream_id = client.call(grpc_frame(b""))
    trailers = grpc_native.error_trailers("queue full: 100% ✓", [("grpc-status-details-bin", b"\x08\x0e\xff")])
    client.session.respond(stream_id, None, 14, trailers)
    client.read_output()
    answer = client.answers[stream_id]
    assert answer.data == b"" and answer.trailers == {} and answer.ended
    assert answer.status == 14
    assert answer.headers["grpc-message"] == "queue full: 100%25 %E2%9C%93"
    assert answer.headers["grpc-status-details-bin"] == "CA7/"  # base64, unpadded


@pytest.mark.parametrize(
    ("method", "content_type", "body"),
    [
        ("POST", "application/grpc", grpc_frame(b"ok")),
        ("POST", "application/grpc+proto", grpc_frame(b"x" * 70_000, compressed=True)),
        ("POST", "application/grpc;charset=x", grpc_frame(b"")),
        ("GET", "application/grpc", grpc_frame(b"ok")),
        ("POST", "application/grpcx", grpc_frame(b"ok")),
        ("POST", "application/json", grpc_frame(b"ok")),
        ("POST", None, grpc_frame(b"ok")),
        ("POST", "application/grpc", b""),
        ("POST", "application/grpc", b"\x00\x00\x00"),
        ("POST", "application/grpc", grpc_frame(b"abc")[:-1]),  # truncated
        ("POST", "application/grpc", grpc_frame(b"abc") + grpc_frame(b"d")),  # two messages
        ("POST", "application/grpc", b"\x02" + grpc_frame(b"abc")[1:]),  # unknown flag
    ],
)
def test_the_framing_rules_match_the_reference(method, content_type, body):
    client = H2Client(session())
    stream_id = client.call(body, request_headers(method=method, content_type=content_type))
    ((sid, _path, message, compressed, _headers, problem),) = client.calls
    expected_message, expected_compressed, expected_reason = expected_call(method, content_type, EXPORT, body)
    assert sid == stream_id
    assert (message, compressed) == (expected_message, expected_compressed)
    assert (problem[0] if problem else None) == expected_reason
    if problem:
        assert problem[1]  # a message that says what was wrong


def test_a_message_over_the_limit_is_answered_before_its_body_ends_and_the_rest_is_discarded():
    client = H2Client(session(max_message=1000))
    stream_id = client.open()
    client.send(stream_id, grpc_frame(b"z" * 5000)[:600])
    assert client.pump() == []  # under the limit: nothing yet
    client.send(stream_id, b"z" * 600)
    ((sid, _path, message, _c, _h, problem),) = client.pump()
    assert sid == stream_id and message is None and problem[0] == "too_large"
    assert client.session.buffered == 0  # the body was dropped at once
    client.session.respond(stream_id, None, 8, grpc_native.error_trailers(problem[1]))
    client.read_output()
    answer = client.answers[stream_id]
    assert answer.status == 8 and answer.ended
    assert answer.reset == 0  # then RST_STREAM(NO_ERROR): the client may stop sending
    assert len(client.calls) == 1


def test_unfinished_bodies_of_one_connection_are_bounded_together():
    client = H2Client(session(max_message=MIB, max_buffered=100_000))
    first, second, third = client.open(), client.open(), client.open()
    for stream_id in (first, second):
        client.send(stream_id, b"a" * 45_000)
    assert client.pump() == [] and client.session.buffered == 90_000
    client.send(third, b"a" * 45_000)
    ((sid, _path, message, _c, _h, problem),) = client.pump()
    assert sid == third and message is None and problem[0] == "overloaded"
    assert client.session.buffered == 90_000
    # the other two complete normally once their bodies end
    client.send(first, b"", end_stream=True)
    ((sid, *_rest, problem),) = client.pump()
    assert sid == first and problem[0] == "malformed"  # 45,000 bytes of "a" are no gRPC frame
    assert client.session.buffered == 45_000


def test_headers_over_16_kib_are_refused():
    client = H2Client(session())
    client.call(grpc_frame(b"ok"), request_headers(extra=(("x-big", "v" * 20_000),)))
    ((_sid, _path, message, _c, _h, problem),) = client.calls
    assert message is None and problem[0] == "too_large" and "16 KiB" in problem[1]


def test_a_call_the_client_reset_is_not_answered_and_nothing_breaks():
    client = H2Client(session())
    stream_id = client.call(grpc_frame(b"ok"))
    client.conn.reset_stream(stream_id)
    client.pump()
    assert client.session.respond(stream_id, b"", 0, ()) is False
    assert client.session.respond(stream_id, None, 14, ()) is False
    second = client.call(grpc_frame(b"again"))
    assert client.session.respond(second, b"", 0, ()) is True


def test_many_calls_on_one_connection_are_answered_in_any_order():
    client = H2Client(session())
    ids = [client.open() for _ in range(50)]
    for stream_id in ids:
        client.send(stream_id, grpc_frame(b"m%d" % stream_id), end_stream=True)
    client.pump()
    assert [call[0] for call in client.calls] == ids
    assert [call[2] for call in client.calls] == [b"m%d" % i for i in ids]
    for stream_id in reversed(ids):
        client.session.respond(stream_id, b"r%d" % stream_id, 0, ())
    client.read_output()
    assert all(client.answers[i].data == grpc_frame(b"r%d" % i) and client.answers[i].status == 0 for i in ids)


def test_bytes_that_are_not_http2_are_a_protocol_error():
    s = session()
    with pytest.raises(ProtocolError, match="protocol error"):
        s.receive(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")


def test_shutdown_notice_then_goaway_names_the_last_call_and_lets_it_finish():
    from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame

    client = H2Client(session())
    stream_id = client.call(grpc_frame(b"ok"))
    client.session.shutdown_notice()  # "stop opening streams soon": GOAWAY with the largest stream id
    client.read_output()
    assert client.goaway.last_stream_id == 2**31 - 1 and client.goaway.error_code == 0
    # (h2 takes any GOAWAY as the end of the connection; the frames after it are read here directly)
    assert client.session.respond(stream_id, b"", 0, ()) is True
    client.session.goaway()
    out, frames = client.session.output(), []
    while out:
        frame, length = Frame.parse_frame_header(out[:9])
        frame.parse_body(memoryview(out[9 : 9 + length]))
        frames.append(frame)
        out = out[9 + length :]
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert [(f.last_stream_id, f.error_code) for f in goaways] == [(stream_id, 0)]
    answer = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == stream_id]
    assert len(answer) == 2 and "END_STREAM" in answer[-1].flags  # response headers, then the trailers


def test_session_bounds_are_checked():
    for bad in [(0, 1, 1, MIB), (MIB, 0, 1, MIB), (MIB, 1, 0, MIB), (MIB, 1, 1, 1000), (2**31, 1, 1, MIB)]:
        with pytest.raises(ValueError):
            Session(*bad)


# -- two receivers, one per engine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
async def engines(module_database, tmp_path_factory):
    from tests.support.process import ReceiverProcess

    procs = {}
    for engine in ("nghttp2", "grpcio"):
        proc = ReceiverProcess(
            module_database.dsn,
            tmp_path_factory.mktemp(engine),
            otlp__grpc_engine=engine,
            otlp__max_request_bytes=20_000,
        )
        await proc.start()
        procs[engine] = proc
    yield procs
    for proc in procs.values():
        assert await proc.stop() == 0


def _cases() -> dict[str, tuple[str, bytes, grpc.Compression | None]]:
    good = trace_request([span("ok")], "engines").SerializeToString()
    big = trace_request([span("big", attributes={"blob": "z" * 30_000})], "engines").SerializeToString()
    return {
        "valid": (EXPORT, good, None),
        "valid, gzip": (EXPORT, good, grpc.Compression.Gzip),
        "not protobuf": (EXPORT, b"\xff\xff\xff", None),
        "over otlp.max_request_bytes": (EXPORT, big, None),
        "inflates over otlp.max_request_bytes": (EXPORT, big, grpc.Compression.Gzip),
        "unknown method": ("/opentelemetry.proto.collector.trace.v1.TraceService/Nope", good, None),
        "unknown service": ("/no.Such/Export", good, None),
    }


async def _code(target: str, method: str, body: bytes, compression: grpc.Compression | None) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await channel.unary_unary(method)(body, timeout=30, compression=compression)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("case", list(_cases()))
async def test_both_engines_answer_alike(engines, case):
    method, body, compression = _cases()[case]
    codes = {name: await _code(proc.grpc_target, method, body, compression) for name, proc in engines.items()}
    assert codes["nghttp2"] == codes["grpcio"], codes
    assert codes["nghttp2"] is not grpc.StatusCode.UNAVAILABLE  # a real answer, not a broken connection


async def test_both_engines_store_the_same_rows_and_answer_health_checks(engines, module_database):
    for name, proc in engines.items():
        request = trace_request([span(f"row-{i}") for i in range(5)], f"engine-{name}")
        await export_grpc(proc.grpc_target, request)
        await export_grpc(proc.grpc_target, request, compression=grpc.Compression.Gzip)
        async with grpc.aio.insecure_channel(proc.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as excinfo:
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND
    conn = await module_database.connect()
    try:
        for name in engines:
            query = "SELECT count(*) FROM llm_traces WHERE service_name = $1"
            service = f"engine-{name}"

            async def stored(query: str = query, service: str = service) -> bool:
                return await conn.fetchval(query, service) == 5

            await wait_until(stored, what=f"5 rows of {service}")
            names = await conn.fetch(
                "SELECT span_name FROM llm_traces WHERE service_name = $1 ORDER BY span_name", f"engine-{name}"
            )
            assert [r[0] for r in names] == [f"row-{i}" for i in range(5)]  # the gzip copy deduplicated
    finally:
        await conn.close()


async def test_the_nghttp2_engine_counts_its_early_refusals(engines):
    proc = engines["nghttp2"]
    before = await proc.metrics()
    big = b"\x00" * 30_000  # refused on its size before a byte of it is decoded
    assert await _code(proc.grpc_target, EXPORT, big, None) is grpc.StatusCode.RESOURCE_EXHAUSTED
    after = await proc.metrics()
    key = 'observatory_refused_requests_total{reason="too_large",signal="traces",transport="grpc"}'
    assert after.get(key, 0) == before.get(key, 0) + 1, [k for k in after if "refused" in k]


async def test_the_engine_is_named_where_the_receiver_says_it_listens(engines):
    for name, proc in engines.items():
        line = next(line for line in proc.log_tail(400).splitlines() if '"receiver listening"' in line)
        assert f"{name})" in line


async def test_a_stalled_call_does_not_hold_the_engines_other_connections(engines):
    """A client that sends half a body and stops holds only its own stream."""
    proc = engines["nghttp2"]
    host, port = proc.grpc_target.rsplit(":", 1)
    _reader, writer = await asyncio.open_connection(host, int(port))
    client = _RawClient()
    stream_id = client.open()
    client.send(stream_id, grpc_frame(b"z" * 500)[:100])
    writer.write(client.conn.data_to_send())
    await writer.drain()
    request = trace_request([span("while-stalled")], "engines-stall")
    await export_grpc(proc.grpc_target, request)  # answered while the other stream waits
    writer.close()


class _RawClient:
    def __init__(self) -> None:
        import h2.config
        import h2.connection

        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()

    def open(self) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, request_headers())
        return stream_id

    def send(self, stream_id: int, data: bytes) -> None:
        self.conn.send_data(stream_id, data)


async def test_a_connection_closed_on_a_protocol_error_is_counted(engines):
    proc = engines["nghttp2"]
    before = await proc.metrics()
    host, port = proc.grpc_target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not HTTP/2: nghttp2 answers GOAWAY, we close
    await writer.drain()
    await asyncio.wait_for(reader.read(), 10)  # to EOF
    writer.close()
    after = await proc.metrics()
    key = 'observatory_refused_requests_total{reason="protocol_error",signal="unknown",transport="grpc"}'
    assert after.get(key, 0) == before.get(key, 0) + 1


async def test_health_watch_is_unimplemented_on_the_nghttp2_engine(engines):
    """A stream, which this engine does not serve: a clear UNIMPLEMENTED, not a hang."""
    async with grpc.aio.insecure_channel(engines["nghttp2"].grpc_target) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await call.read()
        assert excinfo.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_burst_of_calls_in_one_read_is_answered_over_several_turns_of_the_loop():
    """One callback dispatches at most MAX_CALLS_PER_TURN of the calls a read finished (a connection may
    finish MAX_STREAMS in one read), so one connection cannot hold the event loop; reading pauses until
    the rest, dispatched on the next turns, are answered."""
    import h2.config
    import h2.connection
    import h2.events

    from receiver.frontends.signals import SIGNALS

    frontend = grpc_native.GrpcNativeFrontend("127.0.0.1:0", None, SIGNALS.values(), MIB)  # type: ignore[arg-type]
    await frontend.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", frontend.port)

        async def connected() -> bool:
            return len(frontend.connections) == 1

        await wait_until(connected, what="the connection")
        (connection,) = frontend.connections
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        client.initiate_connection()
        burst = 2 * grpc_native.MAX_CALLS_PER_TURN + 7  # answered before Ingest: an unknown method
        for _ in range(burst):
            stream_id = client.get_next_available_stream_id()
            client.send_headers(stream_id, request_headers(path="/no.Such/Method"))
            client.send_data(stream_id, grpc_frame(b""), end_stream=True)
        connection.data_received(client.data_to_send())
        assert len(connection._finished) == burst - grpc_native.MAX_CALLS_PER_TURN  # the rest: next turns
        assert connection._reading_paused
        ended: dict[int, str] = {}
        while len(ended) < burst:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "the connection closed before every call was answered"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    ended[event.stream_id] = dict(event.headers).get("grpc-status", "")
            writer.write(client.data_to_send())
        assert set(ended.values()) == {"12"}  # UNIMPLEMENTED, every one
        assert not connection._finished and not connection._deferred and not connection._reading_paused
        writer.close()
    finally:
        await frontend.stop(1.0)
