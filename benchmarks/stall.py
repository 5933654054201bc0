"""Does one hostile request stall the receiver? `python -m benchmarks.stall` prints, per case, how long the
request took to be answered and with what, the slowest /health/live answer while it was worked on, the
receiver's peak memory growth (VmHWM, reset before each case) and CPU seconds.

The receiver runs as a subprocess with its default configuration and a database that is not there
(`database.url` points at a closed port): the OTLP front ends and the admin endpoint serve anyway, and
decoding is all that is measured. A poller asks /health/live every 10 ms during each case.
`--pythonpath DIR` runs another checkout's receiver (e.g. the code before a change) with this venv.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Queue

import aiohttp
import grpc

from tests.support.hostile import SHAPES

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Case:
    name: str
    shape: str
    size: int
    transport: str  # http or grpc
    gzip: bool


CASES = [
    Case("16 MiB of 0a 00, HTTP gzip", "empty_resources", 16 * MIB, "http", True),
    Case("16 MiB of 0a 00, gRPC gzip", "empty_resources", 16 * MIB, "grpc", True),
    Case("16 MiB of empty events, HTTP gzip", "empty_events", 16 * MIB, "http", True),
    Case("16 MiB of empty KeyValues, HTTP gzip", "empty_attributes", 16 * MIB, "http", True),
    Case("16 MiB nested 100 deep, HTTP gzip", "deep_nesting", 16 * MIB, "http", True),
    Case("16 MiB of JSON {}, HTTP gzip", "json_empty_resources", 16 * MIB, "http", True),
    Case("64 MiB of valid spans, HTTP", "valid_spans", 64 * MIB, "http", False),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def poll(url: str, stop: Event, results: Queue) -> None:
    """In a process of its own (the client's own work must not delay it): GET /health/live every 10 ms
    until `stop`; puts (slowest answer in seconds, answers)."""
    slowest, answers = 0.0, 0
    while not stop.is_set():
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=900) as response:
            response.read()
        slowest = max(slowest, time.monotonic() - started)
        answers += 1
        time.sleep(0.01)
    results.put((slowest, answers))


async def send(case: Case, body: bytes, http_port: int, grpc_port: int) -> str:
    """Send a body (compressed already for HTTP gzip: the client's own work must not delay its poller)."""
    if case.transport == "http":
        headers = {"Content-Type": "application/json" if SHAPES[case.shape].json else "application/x-protobuf"}
        if case.gzip:
            headers["Content-Encoding"] = "gzip"
        timeout = aiohttp.ClientTimeout(total=900)
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
            session.post(f"http://127.0.0.1:{http_port}/v1/traces", data=body, headers=headers) as response,
        ):
            text = (await response.read())[:200]
            return f"HTTP {response.status} {text!r}"
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 256 * MIB)]
    ) as channel:
        call = channel.unary_unary(TRACE_EXPORT)
        try:
            await call(body, timeout=600, compression=grpc.Compression.Gzip if case.gzip else None)
            return "gRPC OK"
        except grpc.aio.AioRpcError as exc:
            return f"gRPC {exc.code().name} {exc.details()[:120]!r}"


async def run_case(case: Case, pid: int, http_port: int, grpc_port: int, admin_port: int) -> dict[str, object]:
    body = SHAPES[case.shape].build(case.size)
    if case.gzip and case.transport == "http":
        body = gzip.compress(body, 6)
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    poller = multiprocessing.Process(target=poll, args=(f"http://127.0.0.1:{admin_port}/health/live", stop, results))
    await asyncio.sleep(0.5)
    rss_before = status_kib(pid, "VmRSS")
    reset_peak(pid)
    cpu_before = cpu_seconds(pid)
    poller.start()
    await asyncio.sleep(0.2)
    started = time.monotonic()
    answer = await send(case, body, http_port, grpc_port)
    elapsed = time.monotonic() - started
    stop.set()
    slowest, answers = await asyncio.to_thread(results.get)
    poller.join()
    return {
        "case": case.name,
        "answer": answer,
        "seconds": elapsed,
        "health_slowest_s": slowest,
        "health_answers": answers,
        "peak_growth_mb": (status_kib(pid, "VmHWM") - rss_before) / 1024,
        "cpu_s": cpu_seconds(pid) - cpu_before,
    }


async def main_async(args: argparse.Namespace) -> None:
    ports = {name: free_port() for name in ("grpc", "http", "admin")}
    workdir = Path(tempfile.mkdtemp(prefix="stall-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVATORY__")}
    env.update(
        {
            "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
            "OBSERVATORY__OTLP__GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
            "OBSERVATORY__OTLP__HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
            "OBSERVATORY__ADMIN__ENDPOINT": f"127.0.0.1:{ports['admin']}",
            "OBSERVATORY__LOGGING__LEVEL": "error",
        }
    )
    for setting in args.set:
        key, _, value = setting.partition("=")
        section, name = key.split(".", 1)
        env[f"OBSERVATORY__{section.upper()}__{name.upper()}"] = value
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    log = (workdir / "receiver.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "receiver", "run"], cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", ports["http"]), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "receiver.log").read_text()[-2000:]
                    raise SystemExit(f"receiver did not start:\n{tail}") from None
                await asyncio.sleep(0.2)
        cases = [c for c in CASES if not args.case or any(a in c.name for a in args.case)]
        for case in cases:
            r = await run_case(case, proc.pid, ports["http"], ports["grpc"], ports["admin"])
            print(
                f"{r['case']:38} answered in {r['seconds']:6.2f} s: {r['answer'][:70]}\n"
                f"{'':38} slowest /health/live {r['health_slowest_s']:6.3f} s ({r['health_answers']} answers), "
                f"peak +{r['peak_growth_mb']:,.0f} MB, {r['cpu_s']:.2f} CPU s",
                flush=True,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="run the cases whose name contains this (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--pythonpath", help="run the receiver of another checkout (PYTHONPATH)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
