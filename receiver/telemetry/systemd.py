"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram per message to $NOTIFY_SOCKET.

A `Type=notify` unit learns from it when the receiver really serves (READY=1: migrations applied and the
OTLP listeners accepting), when it starts draining (STOPPING=1), what it is doing (STATUS=…, shown by
`systemctl status`), and — with `WatchdogSec=` — that its event loop is alive: WATCHDOG=1 comes from a
periodic task *on that loop*, so a wedged loop stops the pings and systemd restarts the unit.

Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op. A message that cannot be sent is logged
(rate-limited) and dropped: telling systemd is never a reason to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from receiver.telemetry.logging import RateLimitedLog, get_logger

STATUS_INTERVAL_S = 5.0  # how often STATUS= is refreshed when no watchdog asks for more


def _address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as a sockaddr: a path, or '@name' for the abstract namespace (a leading NUL)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. vsock: (systemd >= 254 in VMs) is not supported


class SystemdNotifier:
    """Sends notify messages; built from the environment systemd gives a Type=notify service."""

    def __init__(self, notify_socket: str | None = None, watchdog_usec: int | None = None) -> None:
        self._log = RateLimitedLog(get_logger("systemd"), interval_s=60.0)
        self._address = _address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            get_logger("systemd").warning("NOTIFY_SOCKET address not supported; not notifying", address=notify_socket)
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, env: MutableMapping[str, str] | None = None) -> SystemdNotifier:
        """Read NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID and remove them from the environment, as
        sd_notify's unset_environment does: child processes (the embedded PostgreSQL, which Debian builds
        with systemd support) must not talk to our unit's socket."""
        env = os.environ if env is None else env
        notify_socket = env.pop("NOTIFY_SOCKET", None) or None
        usec_text = env.pop("WATCHDOG_USEC", None)
        pid_text = env.pop("WATCHDOG_PID", None)
        return cls(notify_socket, _watchdog_usec(usec_text, pid_text))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the unit's WatchdogSec=, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, **fields: str | int) -> bool:
        """Send one message (`READY=1`, `STATUS=…`, … as keyword arguments, upper-cased). True if sent."""
        if self._address is None:
            return False
        payload = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
            return True
        except OSError as exc:
            self._log.warning("notify", "could not notify systemd", error=str(exc), message=payload[:80].decode())
            return False

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def reloading(self) -> bool:
        # MONOTONIC_USEC: systemd >= 253 uses it to match the reload with READY=1; older ones ignore it.
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(usec_text: str | None, pid_text: str | None) -> int | None:
    """WATCHDOG_USEC applies to us unless WATCHDOG_PID names another process (sd_watchdog_enabled(3))."""
    if not usec_text:
        return None
    if pid_text and pid_text.strip() != str(os.getpid()):
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    return usec if usec > 0 else None


class SystemdHeartbeat:
    """The periodic task on the event loop: WATCHDOG=1 (when the unit has WatchdogSec=), STATUS= when it
    changed, and while start-up waits for the database EXTEND_TIMEOUT_USEC=, so systemd does not kill
    (and lose the queue of) a receiver that is alive but waiting — a wedged one still times out."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        status: Callable[[], str],
        starting: Callable[[], bool],
        interval_s: float | None = None,
    ) -> None:
        self._notifier = notifier
        self._status = status
        self._starting = starting
        watchdog = notifier.watchdog_interval_s
        self.interval_s = interval_s or (min(watchdog, STATUS_INTERVAL_S) if watchdog else STATUS_INTERVAL_S)
        self._task: asyncio.Task[None] | None = None
        self._last_status = ""

    def start(self) -> None:
        if self._notifier.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="systemd-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def beat(self) -> None:
        fields: dict[str, str | int] = {}
        if self._notifier.watchdog_usec:
            fields["WATCHDOG"] = 1
        if self._starting():
            fields["EXTEND_TIMEOUT_USEC"] = int(self.interval_s * 3 * 1_000_000)
        status = self._status()
        if status != self._last_status:
            fields["STATUS"] = status
            self._last_status = status
        if fields:
            self._notifier.notify(**fields)

    async def _run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval_s)
