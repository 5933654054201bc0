"""The scale-out recipe: config/haproxy.cfg as shipped, in front of two receivers sharing one database.

HAProxy listens on loopback; receiver 1 on 127.0.0.1 and receiver 2 on 127.0.0.2 (the same ports, as
two hosts would have). The OpenTelemetry SDK exports through the balancer over OTLP/gRPC and OTLP/HTTP:
every span is stored once and both receivers answered requests of each protocol. Skipped where haproxy
is not installed (`make test` installs it with scripts/ensure-haproxy).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from tests.support.otlp import sdk_tracer_provider
from tests.support.process import REPO, ReceiverProcess, free_port
from tests.support.wait import wait_until

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (scripts/ensure-haproxy)")


class Balancer:
    """What sdk_tracer_provider needs to know of a receiver: where to export."""

    def __init__(self, grpc_port: int, http_port: int) -> None:
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.http_url = f"http://127.0.0.1:{http_port}"


def loopback_alias_works() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


async def served(proc: ReceiverProcess, transport: str) -> float:
    total = 0.0
    for key, value in (await proc.metrics()).items():
        if key.startswith("otelcol_receiver_requests_total{") and f'transport="{transport}"' in key:
            total += value
    return total


@pytest.mark.skipif(not loopback_alias_works(), reason="127.0.0.2 is not a loopback address here")
async def test_haproxy_spreads_both_protocols_over_two_receivers(database, tmp_path):
    ports = (free_port(), free_port(), free_port())
    receivers = []
    for i, host in enumerate(("127.0.0.1", "127.0.0.2")):
        workdir = tmp_path / f"receiver{i + 1}"
        workdir.mkdir()
        receivers.append(ReceiverProcess(database.dsn, workdir, host=host, ports=ports))
    await asyncio.gather(*(r.start() for r in receivers))

    lb_grpc, lb_http = free_port(), free_port()
    env = {
        **os.environ,
        "OTLP_GRPC_BIND": f"127.0.0.1:{lb_grpc}",
        "OTLP_HTTP_BIND": f"127.0.0.1:{lb_http}",
        "RECEIVER1": "127.0.0.1",
        "RECEIVER2": "127.0.0.2",
        "RECEIVER_GRPC_PORT": str(ports[0]),
        "RECEIVER_HTTP_PORT": str(ports[1]),
        "RECEIVER_ADMIN_PORT": str(ports[2]),
    }
    config = Path(REPO) / "config" / "haproxy.cfg"
    check = await asyncio.create_subprocess_exec(HAPROXY, "-c", "-f", str(config), env=env)
    assert await check.wait() == 0, "haproxy -c refused config/haproxy.cfg"
    log = (tmp_path / "haproxy.log").open("wb")
    haproxy = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(config), env=env, stdout=log, stderr=log)
    try:
        balancer = Balancer(lb_grpc, lb_http)
        service = f"haproxy-{uuid.uuid4().hex[:6]}"
        per_protocol = 30

        def export(protocol: str) -> None:
            provider = sdk_tracer_provider(protocol, balancer, service)
            tracer = provider.get_tracer("haproxy-test")
            for i in range(per_protocol):
                with tracer.start_as_current_span(f"chat {protocol} {i}", kind=SpanKind.CLIENT) as span:
                    span.set_attribute("gen_ai.provider.name", "openai")
                    span.set_attribute("gen_ai.request.model", "gpt-4o")
            provider.shutdown()

        async def balancer_up() -> bool:
            if haproxy.returncode is not None:
                raise AssertionError(f"haproxy exited: {(tmp_path / 'haproxy.log').read_text()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", lb_grpc), 1),
                    socket.create_connection(("127.0.0.1", lb_http), 1),
                ):
                    return True
            except OSError:
                return False

        await wait_until(balancer_up, timeout=30, what="haproxy listening")
        for protocol in ("grpc", "http"):
            await asyncio.to_thread(export, protocol)
        await database.wait_for_count(
            "SELECT count(*) FROM llm_traces WHERE service_name = $1", 2 * per_protocol, service
        )
        assert await database.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == (
            2 * per_protocol
        )
        for transport in ("grpc", "http"):
            counts = [await served(r, transport) for r in receivers]
            assert all(c > 0 for c in counts) and sum(counts) == per_protocol, (transport, counts)
    finally:
        if haproxy.returncode is None:
            haproxy.terminate()
        await haproxy.wait()
        log.close()
        for r in receivers:
            assert await r.stop() == 0
