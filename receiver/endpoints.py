"""`host:port` endpoints and the error a listener raises when it cannot bind (shared by all servers)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any


class StartupError(Exception):
    """A component could not start; the message names the setting to change."""


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'0.0.0.0:4317' -> ('0.0.0.0', 4317); '[::]:4317' -> ('::', 4317)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(endpoint: str) -> bool:
    """Does `endpoint` listen on this machine's loopback interface only? Names are resolved: a name
    that does not resolve, or resolves to any other address, counts as reachable from other hosts."""
    host, _port = split_endpoint(endpoint)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%", 1)[0]).is_loopback for info in infos)


UNIX_PREFIX = "unix:"  # an endpoint that is a Unix socket path (a worker's private admin endpoint)


async def serve_http(
    app: Any,
    endpoint: str,
    what: str,
    setting: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
    **runner_options: Any,
) -> tuple[Any, int]:
    """Start an aiohttp app on `endpoint` (host:port, or unix:PATH; TLS with `ssl_context`); returns (runner,
    bound port, 0 for a Unix socket). `reuse_port`: SO_REUSEPORT, so worker processes share the port. A bind
    failure becomes a StartupError naming the setting (and its environment variable) to change."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options)
    await runner.setup()
    site: Any
    if endpoint.startswith(UNIX_PREFIX):
        host, port = "", 0
        site = web.UnixSite(runner, endpoint[len(UNIX_PREFIX) :])
    else:
        host, port = split_endpoint(endpoint)
        site = web.TCPSite(
            runner, host, port, backlog=1024, reuse_address=True, reuse_port=reuse_port or None, ssl_context=ssl_context
        )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        env = "OBSERVATORY__" + setting.upper().replace(".", "__")
        raise StartupError(
            f"cannot listen for {what} on {endpoint} ({exc.strerror or exc}); change {setting} (env {env})"
        ) from None
    if endpoint.startswith(UNIX_PREFIX):
        return runner, 0
    sockets = site._server.sockets if site._server else []
    return runner, (sockets[0].getsockname()[1] if sockets else port)


async def listen_tcp(
    endpoint: str,
    protocol: Callable[[], asyncio.BaseProtocol],
    what: str,
    setting: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
) -> tuple[asyncio.AbstractServer, int]:
    """An asyncio server for `protocol` on `endpoint` (host:port; TLS with `ssl_context`); returns it and
    its bound port. Port 0 binds one ephemeral port on the first address the name resolves to (not one per
    address). `reuse_port`: SO_REUSEPORT, for worker processes. A bind failure becomes a StartupError
    naming the setting (and its environment variable), as serve_http's."""
    host, port = split_endpoint(endpoint)
    loop = asyncio.get_running_loop()
    if port == 0:
        infos = await loop.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
        host = infos[0][4][0]
    try:
        server = await loop.create_server(
            protocol, host, port, ssl=ssl_context, reuse_address=True, reuse_port=reuse_port or None, backlog=1024
        )
    except OSError as exc:
        env = "OBSERVATORY__" + setting.upper().replace(".", "__")
        raise StartupError(
            f"cannot listen for {what} on {endpoint} ({exc.strerror or exc}); if another process uses the port, "
            f"change {setting} (env {env})"
        ) from None
    return server, server.sockets[0].getsockname()[1]
