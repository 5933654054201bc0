"""The OTLP/HTTP front end on httptools (receiver/frontends/http_lean.py) against aiohttp's.

Two real receivers, one per engine (otlp.http_engine = httptools / aiohttp), are sent the same raw bytes
over real sockets: pipelined requests, chunked bodies, Expect: 100-continue, bodies over the limit,
smuggling attempts, wrong methods, paths, media types and encodings. Both must answer with the same
statuses and content types, in order, and store the same rows. Then the lean engine's own bounds: headers
over 16 KiB, a request not read whole in time, an idle keep-alive connection. The rest of the suite's
OTLP/HTTP tests run on the default engine (auto = httptools).
"""

from __future__ import annotations

import asyncio
import gzip
import re

import pytest

from receiver.frontends import http_lean
from tests.support.otlp import span, trace_request
from tests.support.wait import wait_until

pytestmark = pytest.mark.skipif(not http_lean.available(), reason="httptools is not installed")

LIMIT = 20_000


def body(service: str = "lean", name: str = "s") -> bytes:
    return trace_request([span(name)], service).SerializeToString()


def post(payload: bytes, *, path: str = "/v1/traces", headers: str = "", length: bool = True) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: r\r\nContent-Type: application/x-protobuf\r\n{headers}"
    if length:
        head += f"Content-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload


def chunked(payload: bytes, size: int = 700) -> bytes:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def exchange(port: int, data: bytes, answers: int, *, split: int = 0) -> list[tuple[int, dict[str, str], bytes]]:
    """Send `data` (in two writes at `split`, if given); read `answers` responses (fewer if the server
    closes). Each: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if split:
            writer.write(data[:split])
            await writer.drain()
            await asyncio.sleep(0)
            writer.write(data[split:])
        else:
            writer.write(data)
        await writer.drain()
        out = []
        while len([o for o in out if o[0] != 100]) < answers:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                break
            status = int(line.split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if status == 100:
                out.append((100, headers, b""))
                continue
            payload = await reader.readexactly(int(headers.get("content-length", "0")))
            out.append((status, headers, payload))
        return out
    finally:
        writer.close()


@pytest.fixture(scope="module")
async def engines(module_database, tmp_path_factory):
    from tests.support.process import ReceiverProcess

    procs = {}
    for engine in ("httptools", "aiohttp"):
        proc = ReceiverProcess(
            module_database.dsn,
            tmp_path_factory.mktemp(engine),
            otlp__http_engine=engine,
            otlp__max_request_bytes=LIMIT,
        )
        await proc.start()
        procs[engine] = proc
    yield procs
    for proc in procs.values():
        assert await proc.stop() == 0


def _cases() -> dict[str, tuple[bytes, int]]:
    """name -> (raw bytes, responses expected at most)."""
    big = trace_request([span("big", attributes={"blob": "z" * 30_000})], "lean").SerializeToString()
    ok = body()
    return {
        "one request": (post(ok), 1),
        "three pipelined": (post(ok) * 3, 3),
        "chunked": (post(b"", headers="Transfer-Encoding: chunked\r\n", length=False) + chunked(ok), 1),
        "expect 100-continue": (post(ok, headers="Expect: 100-continue\r\n"), 1),
        "gzip": (post(gzip.compress(ok), headers="Content-Encoding: gzip\r\n"), 1),
        "json": (
            b"POST /v1/traces HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            1,
        ),
        "Content-Length over the limit": (post(big), 1),
        "chunked over the limit": (post(b"", headers="Transfer-Encoding: chunked\r\n", length=False) + chunked(big), 1),
        "gzip inflating over the limit": (post(gzip.compress(big), headers="Content-Encoding: gzip\r\n"), 1),
        "not protobuf": (post(b"\xff\xff\xff"), 1),
        "GET": (b"GET /v1/traces HTTP/1.1\r\nHost: r\r\n\r\n", 1),
        "unknown path": (post(ok, path="/v1/nope"), 1),
        "query string": (post(ok, path="/v1/traces?x=1"), 1),
        "text/plain": (post(ok).replace(b"application/x-protobuf", b"text/plain"), 1),
        "brotli": (post(ok, headers="Content-Encoding: br\r\n"), 1),
        "request line garbage": (b"\x16\x03\x01\x02\x00 nonsense\r\n\r\n", 1),
        "Content-Length and chunked (smuggling)": (
            post(ok, headers="Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
            2,
        ),
        "two Content-Lengths": (post(ok, headers=f"Content-Length: {len(ok) + 5}\r\n"), 1),
        "HTTP/1.0": (post(ok).replace(b"HTTP/1.1", b"HTTP/1.0"), 2),
        "Connection: close": (post(ok, headers="Connection: close\r\n"), 2),
        "data after Connection: close": (post(ok, headers="Connection: close\r\n") + post(ok), 2),
    }


@pytest.mark.parametrize("case", list(_cases()))
async def test_both_engines_answer_alike(engines, case):
    data, answers = _cases()[case]
    results = {}
    for name, proc in engines.items():
        got = await exchange(proc.http_port, data, answers)
        results[name] = [(status, h.get("content-type", "").split(";")[0]) for status, h, _ in got]
    assert results["httptools"] == results["aiohttp"], results
    assert results["httptools"], "no answer at all"


async def test_a_request_split_anywhere_is_read_whole(engines):
    data = post(body()) * 2
    port = engines["httptools"].http_port
    for split in (1, 10, 30, len(data) // 2, len(data) - 1):
        got = await exchange(port, data, 2, split=split)
        assert [status for status, _h, _b in got] == [200, 200], split


async def test_a_body_over_the_limit_is_refused_while_it_is_still_arriving(engines):
    """Bounded memory: the answer comes before the body ends (which it never does here)."""
    for proc in engines.values():
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.http_port)
        writer.write(
            post(b"", headers="Transfer-Encoding: chunked\r\n", length=False) + chunked(b"z" * (LIMIT + 5000))[:-5]
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        assert line.startswith(b"HTTP/1.1 413 "), line
        writer.close()


async def test_both_engines_store_the_same_rows(engines, module_database):
    for name, proc in engines.items():
        payloads = [body(f"lean-{name}", f"row-{i}") for i in range(4)]
        data = b"".join(post(p) for p in payloads[:2])
        data += post(b"", headers="Transfer-Encoding: chunked\r\n", length=False) + chunked(payloads[2])
        data += post(gzip.compress(payloads[3]), headers="Content-Encoding: gzip\r\n")
        got = await exchange(proc.http_port, data, 4)
        assert [status for status, _h, _b in got] == [200] * 4, (name, got)
    conn = await module_database.connect()
    try:
        for name in engines:

            async def stored(service: str = f"lean-{name}") -> bool:
                return await conn.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == 4

            await wait_until(stored, what=f"4 rows of lean-{name}")
    finally:
        await conn.close()


async def test_an_answer_says_what_was_wrong(engines):
    from google.rpc import status_pb2

    port = engines["httptools"].http_port
    ((status, headers, payload),) = await exchange(port, post(b"x" * 30_000), 1)
    assert status == 413 and headers["content-type"] == "application/x-protobuf"
    assert "otlp.max_request_bytes" in status_pb2.Status.FromString(payload).message
    ((status, headers, _),) = await exchange(
        port, post(body(), path="/v1/traces", headers="X-Big: " + "v" * 17_000 + "\r\n"), 1
    )
    assert status == 431 and "connection" in headers  # closed after it
    ((status, headers, payload),) = await exchange(port, post(body()).replace(b"x-protobuf", b"xml"), 1)
    assert status == 415 and "Content-Type" in status_pb2.Status.FromString(payload).message
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", headers["date"])


# -- the lean engine's timeouts, on a real socket, with the clock passed in -----------------------------


@pytest.fixture
async def bare_frontend():
    """An HttpLeanFrontend with no pipeline behind it: enough for what is answered before Ingest."""
    from receiver.frontends.signals import SIGNALS

    frontend = http_lean.HttpLeanFrontend("127.0.0.1:0", None, SIGNALS.values(), LIMIT)  # type: ignore[arg-type]
    await frontend.start()
    yield frontend
    await frontend.stop()


async def test_a_request_not_read_whole_in_time_is_answered_408_and_closed(bare_frontend):
    reader, writer = await asyncio.open_connection("127.0.0.1", bare_frontend.port)
    writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\nhalf")
    await writer.drain()

    async def one_connection_reading() -> bool:
        return any(c.request_started for c in bare_frontend.connections)

    await wait_until(one_connection_reading, what="the request to have started")
    (connection,) = bare_frontend.connections
    connection.close_if_stale(connection.request_started + http_lean.REQUEST_TIMEOUT_S - 1)
    assert not connection._closing  # not yet
    connection.close_if_stale(connection.request_started + http_lean.REQUEST_TIMEOUT_S + 1)
    answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closed
    assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(bare_frontend):
    reader, writer = await asyncio.open_connection("127.0.0.1", bare_frontend.port)
    writer.write(b"GET /nowhere HTTP/1.1\r\nHost: r\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 404 ")
    (connection,) = bare_frontend.connections
    connection.close_if_stale(connection.last_activity + http_lean.IDLE_TIMEOUT_S - 1)
    assert not connection._closing and connection._transport is not None
    connection.close_if_stale(connection.last_activity + http_lean.IDLE_TIMEOUT_S + 1)
    rest = await asyncio.wait_for(reader.read(), 10)  # the rest of the 404, then EOF
    assert rest.endswith(b"404: Not Found")
    writer.close()


async def test_requests_refused_before_they_were_read_are_counted(engines):
    proc = engines["httptools"]
    before = await proc.metrics()
    await exchange(proc.http_port, post(body(), headers="X-Big: " + "v" * 17_000 + "\r\n"), 1)
    await exchange(proc.http_port, b"\x16\x03\x01 nonsense\r\n\r\n", 1)
    after = await proc.metrics()
    for labels in (
        'reason="too_large",signal="traces",transport="http"',
        'reason="malformed",signal="unknown",transport="http"',
    ):
        key = f"observatory_refused_requests_total{{{labels}}}"
        assert after.get(key, 0) == before.get(key, 0) + 1, key


async def test_a_burst_of_pipelined_requests_is_answered_over_several_turns_of_the_loop(bare_frontend):
    """One callback answers at most MAX_REQUESTS_PER_TURN of them, so one connection's burst cannot hold
    the event loop; the rest follow, in order, on the next turns."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bare_frontend.port)

    async def connected() -> bool:
        return len(bare_frontend.connections) == 1

    await wait_until(connected, what="the connection")
    (connection,) = bare_frontend.connections
    burst = 3 * http_lean.MAX_REQUESTS_PER_TURN + 5
    connection.data_received(b"".join(b"GET /nowhere/%d HTTP/1.1\r\nHost: r\r\n\r\n" % i for i in range(burst)))
    assert len(connection._ready) == burst - http_lean.MAX_REQUESTS_PER_TURN  # the rest wait for the next turn
    for _ in range(burst):
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 404 ")
        while (await reader.readline()) != b"\r\n":
            pass
        assert await reader.readexactly(len(b"404: Not Found")) == b"404: Not Found"
    assert not connection._ready and not connection._deferred
    writer.close()
