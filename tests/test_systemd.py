"""systemd integration: the notify protocol as a Type=notify unit sees it, and the unit file itself.

The tests bind their own AF_UNIX datagram socket (what systemd does for $NOTIFY_SOCKET) and read what
the real receiver sends: READY=1 only once the migrations are applied and the OTLP listeners accept,
WATCHDOG=1 repeatedly from the event loop (and not while it is wedged), STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from receiver.app.config import load_config
from receiver.storage.migrate import load_migrations
from receiver.telemetry.systemd import SystemdHeartbeat, SystemdNotifier
from tests.support.process import ReceiverProcess
from tests.support.tools import REPO, require_tool

UNIT = REPO / "systemd" / "llm-observatory-receiver.service"
INSTALLED_SCRIPT = "/opt/llm-observatory/.venv/bin/llm-observatory-receiver"


def parse(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n") if line)


class NotifySocket:
    """The service manager's end: an AF_UNIX datagram socket, by path or in the abstract namespace."""

    def __init__(self, address: str) -> None:
        self.address = address  # as $NOTIFY_SOCKET spells it ('@' = abstract)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def until(self, predicate, timeout: float = 60.0) -> dict[str, str]:
        """Read messages (keeping them in order) until one satisfies `predicate`; fail at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching notify message within {timeout}s; got {self.messages}")
            try:
                datagram = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), remaining)
            except TimeoutError:
                continue
            message = parse(datagram)
            self.messages.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.sock.close()


def test_notifier_speaks_to_path_and_abstract_sockets(tmp_path):
    for address in (str(tmp_path / "notify"), f"@llmobs-test-{uuid.uuid4().hex}"):
        server = NotifySocket(address)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid()), "X": "1"}
        notifier = SystemdNotifier.from_environment(env)
        try:
            assert env == {"X": "1"}, "the variables are removed: children must not notify our unit"
            assert notifier.watchdog_interval_s == 2.0
            assert notifier.ready("ready; queue 0/10 rows")
            assert parse(server.sock.recv(4096)) == {"READY": "1", "STATUS": "ready; queue 0/10 rows"}
        finally:
            notifier.close()
            server.close()
    other_pid = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier.from_environment(other_pid).watchdog_usec is None, "the watchdog is another process's"
    assert not SystemdNotifier.from_environment({}).notify(READY=1), "outside systemd: nothing to do"


async def test_watchdog_pings_stop_while_the_event_loop_is_wedged(tmp_path):
    """The pings come from a task on the loop: a blocked loop sends none (the failure the watchdog is for)."""
    server = NotifySocket(str(tmp_path / "notify"))
    server.sock.setblocking(True)
    notifier = SystemdNotifier(server.address, watchdog_usec=100_000)  # a ping every 50 ms
    heartbeat = SystemdHeartbeat(notifier, status=lambda: "ready", starting=lambda: False)
    wedged, release = threading.Event(), threading.Event()
    received_while_wedged: list[bytes] = []

    def ping() -> dict[str, str]:  # off the loop: the heartbeat runs on it
        server.sock.settimeout(10)
        return parse(server.sock.recv(4096))

    def listen_while_wedged() -> None:
        wedged.wait(10)
        server.sock.setblocking(False)
        while True:  # drop the pings sent before the loop was wedged
            try:
                server.sock.recv(4096)
            except BlockingIOError:
                break
        server.sock.settimeout(1.0)  # 20 ping intervals; the loop is held, so none may come
        with contextlib.suppress(TimeoutError):
            received_while_wedged.append(server.sock.recv(4096))
        release.set()

    def wedge() -> None:  # runs on the event loop and holds it, as a stuck call would
        wedged.set()
        release.wait(30)

    heartbeat.start()
    try:
        assert (await asyncio.to_thread(ping)).get("WATCHDOG") == "1"
        listener = threading.Thread(target=listen_while_wedged)
        listener.start()
        asyncio.get_running_loop().call_soon(wedge)
        await asyncio.to_thread(listener.join)
        assert received_while_wedged == [], "a ping was sent while the event loop was blocked"
        assert (await asyncio.to_thread(ping)).get("WATCHDOG") == "1", "pings resume with the loop"
    finally:
        release.set()
        await heartbeat.stop()
        notifier.close()
        server.close()


async def test_receiver_notifies_ready_watchdog_and_stopping_in_order(database, tmp_path):
    server = NotifySocket(f"@llmobs-test-{uuid.uuid4().hex}")
    proc = ReceiverProcess(database.dsn, tmp_path)
    proc.extra_env = {"NOTIFY_SOCKET": server.address, "WATCHDOG_USEC": "200000"}  # WatchdogSec=0.2s
    try:
        await proc.start(wait_ready=False)
        ready = await server.until(lambda m: "READY" in m)

        # At READY=1 the migrations are applied and both OTLP listeners accept connections.
        applied = await database.fetchval("SELECT count(DISTINCT version) FROM schema_migrations")
        assert applied == len({m.version for m in load_migrations()})
        for port in (proc.grpc_port, proc.http_port):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
        status, _ = await proc.get("/health/ready")
        assert status == 200
        assert re.match(r"ready; queue 0/\d+ rows", ready["STATUS"]), ready

        at_ready = len(server.messages)
        for _ in range(3):
            await server.until(lambda m: m.get("WATCHDOG") == "1")
        assert all("READY" not in m for m in server.messages[at_ready:]), "READY=1 is sent once"

        proc.proc.send_signal(signal.SIGHUP)  # systemctl reload: RELOADING=1, then READY=1 once reloaded
        reloading = await server.until(lambda m: "RELOADING" in m)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        await server.until(lambda m: "READY" in m)

        proc.proc.send_signal(signal.SIGTERM)
        stopping = await server.until(lambda m: "STOPPING" in m)
        assert stopping["STATUS"].startswith("draining"), stopping
        assert await proc.stop() == 0
    finally:
        await proc.kill()
        server.close()

    kinds = [
        next(k for k in ("READY", "RELOADING", "STOPPING", "WATCHDOG", "STATUS") if k in m) for m in server.messages
    ]
    assert [k for k in kinds if k in ("READY", "RELOADING", "STOPPING")] == ["READY", "RELOADING", "READY", "STOPPING"]
    # While starting, each beat extends the start timeout; once ready, never again.
    assert any("EXTEND_TIMEOUT_USEC" in m for m in server.messages[: kinds.index("READY")])
    assert not any("EXTEND_TIMEOUT_USEC" in m for m in server.messages[kinds.index("READY") :])


def installed_unit(tmp_path: Path) -> Path:
    """The unit with its install path replaced by this checkout's installed console script (verify checks
    that the executables exist)."""
    script = Path(sys.executable).parent / "llm-observatory-receiver"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_SCRIPT, str(script)))
    return copy


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "verify", "--man=no", str(installed_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for directives it ignores ("Failed to parse ..., ignoring"): no output at all.
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_unit_is_notify_with_watchdog_state_directory_and_hardening():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"] and s["WatchdogSec"]
    assert "llm-observatory" in s["StateDirectory"][0].split()
    for kept in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        key, value = kept.split("=")
        assert s[key] == [value], f"hardening {kept} kept"
    # The Environment= lines name real settings, and the spool and dead letters live in the state directory.
    env = dict(line.split("=", 1) for line in s["Environment"])
    config = load_config(env={k: v.replace("%S", "/var/lib") for k, v in env.items()})
    assert config.spool.dir == "/var/lib/llm-observatory/spool"
    assert config.dead_letter.dir == "/var/lib/llm-observatory/dead-letter"
    assert s["TimeoutStopSec"] and float(s["TimeoutStopSec"][0]) > config.pipeline.shutdown_timeout_s
