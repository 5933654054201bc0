"""The floor of a request's fixed cost: server CPU per request of *trivial* handlers on the receiver's
transports (grpc.aio and aiohttp on uvloop, the fallbacks; and the receiver's own front ends, nghttp2 and
httptools, with an Ingest that accepts at once), driven like loadgen's small-request runs (1.6 KB bodies,
32 in flight), so `make bench`'s µs/request can be read against what the transports alone cost.

    python -m benchmarks.transport_floor [--requests 5000] [--in-flight 32] [--connections N]

The server runs in a subprocess; its CPU time (utime + stime from /proc) over the measured requests,
divided by their number, is printed per transport. Nothing of the receiver runs: the handler returns
the empty success response at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

BODY = os.urandom(1600)
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class _TrivialIngest:
    """What the receiver's own front ends call, answering at once: their floor, as the libraries' above."""

    authenticating = False

    async def handle(self, spec: object, body: bytes, **kwargs: object) -> object:
        from receiver.frontends.outcomes import Accepted

        return Accepted(1)


async def serve_native(transport: str, port: int) -> None:
    from receiver.frontends.grpc_native import GrpcNativeFrontend
    from receiver.frontends.http_lean import HttpLeanFrontend
    from receiver.frontends.signals import SIGNALS

    endpoint, ingest = f"127.0.0.1:{port}", _TrivialIngest()
    if transport == "grpc-native":
        frontend: object = GrpcNativeFrontend(endpoint, ingest, SIGNALS.values(), 64 << 20)  # type: ignore[arg-type]
    else:
        frontend = HttpLeanFrontend(endpoint, ingest, SIGNALS.values(), 64 << 20)  # type: ignore[arg-type]
    await frontend.start()  # type: ignore[attr-defined]
    await asyncio.Event().wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve_grpc(port: int) -> None:
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b""

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Export": handler})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_http(port: int) -> None:
    from aiohttp import web

    async def export(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def drive_grpc(port: int, requests: int, in_flight: int, connections: int) -> None:
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    calls = [c.unary_unary(f"/{SERVICE}/Export") for c in channels]
    for channel in channels:
        await channel.channel_ready()
    sent = 0

    async def loop(i: int) -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            await calls[i % len(calls)](BODY)

    await asyncio.gather(*(loop(i) for i in range(in_flight)))
    for channel in channels:
        await channel.close()


async def drive_http(port: int, requests: int, in_flight: int, connections: int) -> None:
    import aiohttp

    sent = 0
    headers = {"Content-Type": "application/x-protobuf"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def loop() -> None:
            nonlocal sent
            while sent < requests:
                sent += 1
                async with session.post(f"http://127.0.0.1:{port}/v1/traces", data=BODY, headers=headers) as r:
                    await r.read()

        await asyncio.gather(*(loop() for _ in range(in_flight)))


def measure(transport: str, requests: int, in_flight: int, connections: int) -> str:
    import uvloop

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.transport_floor", "--serve", transport, str(port)])
    try:
        drive = drive_grpc if transport.startswith("grpc") else drive_http
        deadline = time.monotonic() + 30
        while True:  # wait for the listener
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the {transport} server did not start") from None
                time.sleep(0.1)
        uvloop.run(drive(port, 500, in_flight, connections))  # warm up
        before, started = cpu_seconds(server.pid), time.monotonic()
        uvloop.run(drive(port, requests, in_flight, connections))
        cpu, wall = cpu_seconds(server.pid) - before, time.monotonic() - started
    finally:
        server.kill()
        server.wait()
    name = {
        "grpc": "OTLP/gRPC (grpc.aio)",
        "http": "OTLP/HTTP (aiohttp)",
        "grpc-native": "OTLP/gRPC (nghttp2)",
        "http-lean": "OTLP/HTTP (httptools)",
    }[transport]
    return (
        f"{name:<22} {cpu / requests * 1e6:8.1f} us/request server CPU, trivial handler ({requests / wall:,.0f}/s, "
        f"{in_flight} in flight over {connections} connection(s))"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="client connections (default: one per request in flight, as loadgen's exporters and make bench's "
        "small-request runs; figures before 2026-12-01 03:00 UTC used 4 for gRPC)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("TRANSPORT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop

        transport, port = args.serve
        if transport in ("grpc-native", "http-lean"):
            uvloop.run(serve_native(transport, int(port)))
        else:
            uvloop.run((serve_grpc if transport == "grpc" else serve_http)(int(port)))
        return 0
    for transport in ("grpc", "http", "grpc-native", "http-lean"):
        print(measure(transport, args.requests, args.in_flight, args.connections or args.in_flight), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
