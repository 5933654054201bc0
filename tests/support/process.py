"""The real receiver in a subprocess, configured through the environment like an operator would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReceiverProcess:
    running: set[ReceiverProcess] = set()  # noqa: RUF012 - every receiver started and not yet stopped

    def __init__(
        self,
        dsn: str,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        ports: tuple[int, int, int] | None = None,
        **settings: object,
    ) -> None:
        """`host`/`ports` (gRPC, HTTP, admin): where to listen; free loopback ports by default."""
        self.dsn = dsn
        self.workdir = workdir
        self.host = host
        self.grpc_port, self.http_port, self.admin_port = ports or (free_port(), free_port(), free_port())
        self._ports_chosen_here = ports is None and host == "127.0.0.1"  # may be chosen again (see start)
        self._started_once = False
        self.query_port = free_port()
        self.settings = settings
        self.extra_env: dict[str, str] = {}  # set before start(): e.g. systemd's NOTIFY_SOCKET
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "receiver.log"
        self._log_start = 0
        self.returncode: int | None = None

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def query_url(self) -> str:
        return f"http://{self.host}:{self.query_port}"

    def environment(self) -> dict[str, str]:
        inherited = ("OBSERVATORY__", "DB_", "NOTIFY_SOCKET", "WATCHDOG_")  # the test's own, never the runner's
        env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        env.pop("DATABASE_URL", None)
        if self.dsn:
            env["DATABASE_URL"] = self.dsn
        env.update(
            {
                "OBSERVATORY__OTLP__GRPC_ENDPOINT": self.grpc_target,
                "OBSERVATORY__OTLP__HTTP_ENDPOINT": f"{self.host}:{self.http_port}",
                "OBSERVATORY__ADMIN__ENDPOINT": f"{self.host}:{self.admin_port}",
                "OBSERVATORY__QUERY__ENDPOINT": f"{self.host}:{self.query_port}",
                "OBSERVATORY__PIPELINE__FLUSH_INTERVAL_MS": "50",
                "OBSERVATORY__SPOOL__DIR": str(self.workdir / "spool"),
                "OBSERVATORY__DEAD_LETTER__DIR": str(self.workdir / "dead-letter"),
            }
        )
        for key, value in self.settings.items():
            section, name = key.split("__", 1)
            env[f"OBSERVATORY__{section.upper()}__{name.upper()}"] = str(value)
        env.update(self.extra_env)
        return env

    async def start(self, wait_ready: bool = True) -> None:
        """Start the receiver. A free port picked at construction can be taken by another process's
        connection before the receiver binds it (tests run two at a time): on its first start, a
        receiver that exits because a port is in use gets new free ports, up to three times."""
        for attempt in range(3):
            await self._spawn()
            if not wait_ready:
                return
            try:
                await self.wait_ready()
                return
            except AssertionError:
                retry = (
                    self._ports_chosen_here
                    and not self._started_once
                    and attempt < 2
                    and self.proc is not None
                    and self.proc.returncode is not None
                    and "address already in use" in self.log_tail()
                )
                if not retry:
                    raise
                self.grpc_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
                self.query_port = free_port()
            finally:
                self._started_once = self._started_once or (self.proc is not None and self.proc.returncode is None)

    async def _spawn(self) -> None:
        log = self.log_path.open("ab")
        self._log_start = log.tell()  # this run's lines begin here (the log is appended to across restarts)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "receiver",
            "run",
            cwd=str(self.workdir),
            env=self.environment(),
            stdout=log,
            stderr=log,
        )
        log.close()
        ReceiverProcess.running.add(self)

    def _fail_if_exited(self) -> None:
        """Waiting for a receiver that has exited would only time out: say why it exited instead."""
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(f"receiver exited with {self.proc.returncode}:\n{self.log_tail()}")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def ready() -> bool:
            self._fail_if_exited()
            try:
                async with aiohttp.ClientSession() as session, session.get(f"{self.admin_url}/health/ready") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout=timeout, interval=0.1, what=lambda: f"receiver ready\n{self.log_tail()}")

    async def wait_listening(self, timeout: float = 60.0) -> None:
        """Until both OTLP front ends accept connections (the log line `receiver listening`), ready or
        not: with the database down the receiver listens (and spools) but is never ready."""

        async def listening() -> bool:
            self._fail_if_exited()
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                return b'"event": "receiver listening"' in log.read()

        await wait_until(
            listening, timeout=timeout, interval=0.1, what=lambda: f"receiver listening\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def get(self, path: str) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{self.admin_url}{path}") as r:
            return r.status, await r.text()

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples by 'name{labels}' (labels as exposed)."""
        _, text = await self.get("/metrics")
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def metric(self, name: str) -> float:
        """Sum of every sample of `name` (all label sets)."""
        total = 0.0
        for key, value in (await self.metrics()).items():
            if key == name or key.startswith(name + "{"):
                total += value
        return total

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return self.returncode or 0
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            self.returncode = await self.proc.wait()
            raise AssertionError(f"receiver did not stop within {timeout}s:\n{self.log_tail()}") from None
        self.proc = None
        ReceiverProcess.running.discard(self)
        return self.returncode

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)
