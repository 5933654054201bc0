"""`host:port` endpoints and the error a listener raises when it cannot bind (shared by all servers)."""

from __future__ import annotations


class StartupError(Exception):
    """A component could not start; the message names the setting to change."""


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'0.0.0.0:4317' -> ('0.0.0.0', 4317); '[::]:4317' -> ('::', 4317)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
