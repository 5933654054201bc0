"""otlp.workers > 1: one supervisor process and N worker processes sharing the OTLP ports.

Why processes: a receiver is one event loop on one core; the kernel spreads the connections of a port
bound with SO_REUSEPORT over the processes listening on it, so N workers use N cores.

The supervisor (the process `run` started, systemd's main PID):
1. starts the embedded database if no URL is configured (once, for all workers);
2. applies the migrations (once; workers start with database.auto_migrate off). If the database is
   unreachable, the workers start anyway and spool/queue while the supervisor keeps trying;
3. starts worker K as `run --worker-index K` with its own spool directory (spool.dir/worker-K) and
   dead-letter directory (dead_letter.dir/worker-K), and its admin endpoint on a private Unix socket;
4. serves admin.endpoint: /metrics and /health of all workers together (receiver.telemetry.aggregate);
5. replaces a worker that dies (its successor replays its spool), with a backoff if it keeps dying;
6. on SIGTERM/SIGINT forwards SIGTERM to every worker (each drains within shutdown_timeout_s), waits,
   then stops the embedded database. SIGHUP is forwarded;
7. speaks to systemd (Type=notify, NotifyAccess=main: only the main PID may): READY=1 once every worker
   serves, RELOADING=1 / READY=1 around a forwarded SIGHUP, STOPPING=1 on shutdown, STATUS= and the
   watchdog pings from its own event loop. Workers get no NOTIFY_SOCKET.
Database maintenance runs in the workers; its advisory lock lets one pass run at a time per database,
as it does between separate receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from receiver import __version__
from receiver.app.config import Config
from receiver.storage.database import Database, redact
from receiver.storage.embedded import EmbeddedPostgres
from receiver.storage.errors import describe
from receiver.storage.migrate import MigrationError, migrate
from receiver.telemetry import aggregate
from receiver.telemetry.admin import AdminServer
from receiver.telemetry.logging import get_logger
from receiver.telemetry.systemd import SystemdHeartbeat, SystemdNotifier

SCRAPE_INTERVAL_S = 5.0  # how often the supervisor keeps each worker's counters (for replaced workers)
STOP_MARGIN_S = 30.0  # beyond shutdown_timeout_s, before a worker that does not exit is killed
READY_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1
# A worker's resident memory before it holds any data (interpreter, gRPC, pools: ~90 MB measured): a
# share of limits.memory_limit_mib below this plus the queue's share leaves no room to decode requests.
WORKER_BASE_MIB = 128


def _die_with_parent() -> None:
    """In the worker before exec: SIGTERM when the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    socket: Path
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    ready_seen: bool = False
    restarts: int = 0
    last_scrape: aggregate.Scrape = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket)), timeout=aiohttp.ClientTimeout(total=5)
            )
        return self._session

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session().get(f"http://worker{path}") as response:
            return response.status, await response.read()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


@dataclass(frozen=True)
class WorkerShares:
    """One worker's part of the budgets that are the receiver's as a whole."""

    spool_bytes: int
    queue_bytes: int
    queue_rows: int
    memory_limit_mib: int  # 0 = off, as configured


def _share(section: Any, name: str, count: int) -> int:
    """1/count of a setting's value, never below the minimum the setting itself accepts (its `min` in
    receiver.app.config), so a worker given the share always starts."""
    floor = next(f.metadata["min"] for f in fields(section) if f.name == name)
    return max(int(floor), getattr(section, name) // count)


def worker_shares(config: Config, count: int) -> WorkerShares:
    """Split the receiver's budgets evenly over `count` workers.

    The disk and the memory are the host's (or the container's): an operator who sets
    `limits.memory_limit_mib = 1024` to fit a 1 GiB container means the receiver, not each of N
    processes. So spool.max_bytes, pipeline.queue_max_bytes / queue_max_rows and limits.memory_limit_mib
    are all divided; each share is kept at or above the setting's own minimum.
    """
    memory = config.limits.memory_limit_mib  # its minimum is 0 = off: a limit that is on stays on
    return WorkerShares(
        spool_bytes=_share(config.spool, "max_bytes", count),
        queue_bytes=_share(config.pipeline, "queue_max_bytes", count),
        queue_rows=_share(config.pipeline, "queue_max_rows", count),
        memory_limit_mib=0 if memory == 0 else max(1, memory // count),
    )


class Supervisor:
    def __init__(
        self, config: Config, config_path: str | None, count: int, notifier: SystemdNotifier | None = None
    ) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier()
        self.announced = False  # READY=1 sent (once every worker served for the first time)
        self.heartbeat = SystemdHeartbeat(self.notifier, self.status_line, lambda: not self.announced)
        self.config_path = config_path
        self.count = count
        self.log = get_logger("supervisor")
        self.embedded: EmbeddedPostgres | None = None
        self.dsn = config.database.url
        self.rundir = Path(tempfile.mkdtemp(prefix="observatory-workers-"))
        self.workers = [Worker(k, self.rundir / f"worker-{k}.sock") for k in range(count)]
        self.retired = aggregate.Retired()
        self.restarts = 0
        self.stopping = False
        self.failed: str | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.admin: AdminServer | None = None
        self.all_ready = asyncio.Event()

    # -- start -----------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        self.heartbeat.start()
        try:
            await self._start()
            await self._stop.wait()
        finally:
            await self._shutdown()
        if self.failed:
            print(f"error: {self.failed}", file=sys.stderr)
            return 1
        return 0

    async def _start(self) -> None:
        cfg = self.config
        self._warn_small_memory_share()
        if not self.dsn:
            self.embedded = EmbeddedPostgres(cfg.database.embedded_dir)
            self.dsn = await asyncio.to_thread(self.embedded.start)
            self.log.info("embedded database running", data_dir=str(self.embedded.root), dsn=self.dsn)
        self.admin = AdminServer(cfg.admin.endpoint, self, self.health_report, self.readiness)  # type: ignore[arg-type]
        await self.admin.start()
        if cfg.database.auto_migrate and not await self._migrate():
            self._spawn(self._migrate_until_done(), "migrate")
        if self.failed:
            self._stop.set()
            return
        for worker in self.workers:
            await self._start_worker(worker)
        self.log.info(
            "workers starting",
            workers=self.count,
            version=__version__,
            grpc=cfg.otlp.grpc_endpoint,
            http=cfg.otlp.http_endpoint,
            admin=f"{cfg.admin.endpoint} (port {self.admin.port})",
            database=redact(self.dsn),
        )
        for worker in self.workers:
            self._spawn(self._watch(worker), f"watch-worker-{worker.index}")
        self._spawn(self._scrape_loop(), "scrape-workers")
        self._spawn(self._announce_ready(), "announce-ready")

    async def _migrate(self) -> bool:
        """Apply pending migrations once; False while the database cannot be reached."""
        try:
            conn = await Database(self.dsn, self.config.database.connect_timeout_s).connect("supervisor")
            try:
                report = await migrate(conn, self.config.database.flavor)
            finally:
                await conn.close()
        except MigrationError as exc:
            self.failed = str(exc)
            self.log.error("cannot continue", error=str(exc))
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self.log.warning("database not reachable for migrations; workers start and retry", error=describe(exc))
            return False
        if report.applied:
            self.log.info("migrations applied", flavor=report.flavor, applied=report.applied)
        if report.distributed:
            self.log.info("citus: tables distributed", tables=report.distributed)
        return True

    async def _migrate_until_done(self) -> None:
        delay = 0.5
        while not self.stopping and not await self._migrate():
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)
        if self.failed:
            self.request_stop()

    def _warn_small_memory_share(self) -> None:
        shares = worker_shares(self.config, self.count)
        needed = WORKER_BASE_MIB + shares.queue_bytes // (1024 * 1024)
        if 0 < shares.memory_limit_mib < needed:
            self.log.warning(
                "limits.memory_limit_mib is shared by the workers and each share is too small: a worker "
                "will refuse data (retryable) whenever its queue holds rows; raise limits.memory_limit_mib "
                "or lower otlp.workers",
                memory_limit_mib=self.config.limits.memory_limit_mib,
                workers=self.count,
                share_mib=shares.memory_limit_mib,
                needed_mib=needed,
            )

    def _worker_env(self, worker: Worker) -> dict[str, str]:
        cfg = self.config
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # systemd talks to the supervisor
        shares = worker_shares(cfg, self.count)
        env.update(
            {
                "OBSERVATORY__SPOOL__MAX_BYTES": str(shares.spool_bytes),
                "OBSERVATORY__SPOOL__SEGMENT_BYTES": str(min(cfg.spool.segment_bytes, shares.spool_bytes)),
                "OBSERVATORY__PIPELINE__QUEUE_MAX_BYTES": str(shares.queue_bytes),
                "OBSERVATORY__PIPELINE__QUEUE_MAX_ROWS": str(shares.queue_rows),
                "OBSERVATORY__LIMITS__MEMORY_LIMIT_MIB": str(shares.memory_limit_mib),
                "DATABASE_URL": self.dsn,
                "OBSERVATORY__DATABASE__AUTO_MIGRATE": "false",  # the supervisor migrates, once
                "OBSERVATORY__OTLP__WORKERS": "1",
                "OBSERVATORY__SPOOL__DIR": str(Path(cfg.spool.dir) / f"worker-{worker.index}"),
                "OBSERVATORY__DEAD_LETTER__DIR": str(Path(cfg.dead_letter.dir) / f"worker-{worker.index}"),
            }
        )
        return env

    async def _start_worker(self, worker: Worker) -> None:
        worker.socket.unlink(missing_ok=True)
        command = [sys.executable, "-m", "receiver", "run", "--worker-index", str(worker.index)]
        command += ["--admin-socket", str(worker.socket)]
        if self.config_path:
            command += ["--config", self.config_path]
        worker.process = await asyncio.create_subprocess_exec(
            *command, env=self._worker_env(worker), preexec_fn=_die_with_parent
        )
        worker.started_at = time.monotonic()
        self.log.info("worker started", worker=worker.index, pid=worker.process.pid)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- supervise -------------------------------------------------------------------------------

    async def _watch(self, worker: Worker) -> None:
        """Wait for the worker to exit; unless stopping, replace it (it replays its own spool)."""
        backoff = 0.5
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self.stopping:
                return
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            if not worker.ready_seen and worker.restarts == 0 and code > 0:
                # The first start failed (a port in use, a bad setting): replacing it would fail again.
                self.failed = f"worker {worker.index} could not start ({how}); see its log lines above"
                self.request_stop()
                return
            lived = time.monotonic() - worker.started_at
            backoff = 0.5 if lived > 30 else min(30.0, backoff * 2)
            self.log.error(
                "worker died; replacing it",
                worker=worker.index,
                pid=worker.process.pid,
                cause=how,
                lived_s=round(lived, 1),
                restart_in_s=backoff,
            )
            self.retired.add(worker.last_scrape)
            worker.last_scrape = {}
            worker.ready_seen = False
            worker.restarts += 1
            self.restarts += 1
            self.all_ready.clear()
            await worker.close()
            await asyncio.sleep(backoff)
            if self.stopping:
                return
            await self._start_worker(worker)

    async def _scrape_loop(self) -> None:
        while not self.stopping:
            await asyncio.gather(*(self._scrape(w) for w in self.workers))
            await asyncio.sleep(SCRAPE_INTERVAL_S)

    async def _scrape(self, worker: Worker) -> aggregate.Scrape | None:
        if not worker.running:
            return None
        try:
            status, body = await worker.get("/metrics")
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None
        if status != 200:
            return None
        worker.last_scrape = aggregate.parse(body.decode())
        return worker.last_scrape

    async def _worker_health(self, worker: Worker) -> dict[str, Any] | None:
        if not worker.running:
            return None
        try:
            _status, body = await worker.get("/health")
            report: dict[str, Any] = orjson.loads(body)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None
        if report.get("ready"):
            worker.ready_seen = True
        return report

    async def _announce_ready(self) -> None:
        """Log `ready` once every worker is (and again after a replaced worker is)."""
        while not self.stopping:
            ready, _ = await self._all_ready()
            if ready and not self.all_ready.is_set():
                self.all_ready.set()
                self.log.info("ready", workers=self.count, restarts=self.restarts)
                if not self.announced:  # systemd: the service is up (a replaced worker later is not news)
                    self.announced = True
                    self.notifier.ready(self.status_line())
            await asyncio.sleep(READY_POLL_S if not ready else 1.0)

    async def _all_ready(self) -> tuple[bool, str]:
        reports = await asyncio.gather(*(self._worker_health(w) for w in self.workers))
        missing = [str(w.index) for w, r in zip(self.workers, reports, strict=True) if r is None]
        if missing:
            return False, f"workers {', '.join(missing)} not running"
        waiting = [r for r in reports if r is not None and not r.get("ready")]
        if waiting:
            return False, waiting[0].get("reason") or "a worker is not ready"
        return True, ""

    # -- admin endpoint --------------------------------------------------------------------------

    async def render(self) -> bytes:
        """/metrics: every worker's series combined, plus the supervisor's own."""
        scrapes = await asyncio.gather(*(self._scrape(w) for w in self.workers))
        merged = self.retired.combine([s for s in scrapes if s is not None])
        own = {
            "observatory_workers": aggregate.Family(
                "observatory_workers", "gauge", "worker processes configured (otlp.workers)"
            ),
            "observatory_workers_running": aggregate.Family(
                "observatory_workers_running", "gauge", "worker processes running now"
            ),
            "observatory_worker_restarts": aggregate.Family(
                "observatory_worker_restarts", "counter", "workers replaced after they died"
            ),
            "observatory_worker_requests": aggregate.Family(
                "observatory_worker_requests",
                "counter",
                "export requests answered, per worker process since it started (shows the kernel's spread)",
            ),
        }
        own["observatory_workers"].samples[("observatory_workers", ())] = self.count
        running = sum(1 for w in self.workers if w.running)
        own["observatory_workers_running"].samples[("observatory_workers_running", ())] = running
        own["observatory_worker_restarts"].samples[("observatory_worker_restarts_total", ())] = self.restarts
        for worker, scrape in zip(self.workers, scrapes, strict=True):
            if scrape is not None:
                key = ("observatory_worker_requests_total", (("worker", str(worker.index)),))
                own["observatory_worker_requests"].samples[key] = aggregate.total(scrape, "otelcol_receiver_requests")
        merged.update(own)
        return aggregate.render(merged)

    async def health_report(self) -> dict[str, Any]:
        reports = await asyncio.gather(*(self._worker_health(w) for w in self.workers))
        scrapes = await asyncio.gather(*(self._scrape(w) for w in self.workers))
        processes = []
        for worker, report, scrape in zip(self.workers, reports, scrapes, strict=True):
            processes.append(
                {
                    "worker": worker.index,
                    "pid": worker.process.pid if worker.running and worker.process else None,
                    "status": report.get("status") if report else "not running",
                    "ready": bool(report and report.get("ready")),
                    "requests": int(aggregate.total(scrape, "otelcol_receiver_requests")) if scrape else 0,
                    "restarts": worker.restarts,
                    "rss_bytes": ((report or {}).get("memory") or {}).get("rss_bytes"),
                }
            )
        live = [r for r in reports if r is not None]
        merged = aggregate.merge_health(live, processes, self.count)
        if self.stopping:
            merged["ready"] = False
            merged["reason"] = "draining: shutting down"
        merged["workers"]["restarts"] = self.restarts
        merged["pid"] = os.getpid()
        return merged

    def status_line(self) -> str:
        """systemd's STATUS= (`systemctl status`): how many workers run and serve."""
        running = sum(1 for w in self.workers if w.running)
        if self.stopping:
            return f"draining: {running} of {self.count} workers still running"
        state = "ready" if self.all_ready.is_set() else "starting"
        return f"{state}: {running} of {self.count} workers running, {self.restarts} replaced"

    def readiness(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "draining: shutting down"
        if not self.all_ready.is_set():
            return False, "waiting for every worker to be ready"
        return True, ""

    # -- stop ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def _reload(self) -> None:
        """SIGHUP (systemctl reload): RELOADING=1, forward it, READY=1 once every worker serves again."""
        self.notifier.reloading()
        self._forward(signal.SIGHUP)
        self._spawn(self._ready_after_reload(), "ready-after-reload")

    async def _ready_after_reload(self) -> None:
        while not self.stopping:
            ready, _ = await self._all_ready()
            if ready:
                self.notifier.ready(self.status_line())
                return
            await asyncio.sleep(READY_POLL_S)

    def _forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.running and worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)

    async def _shutdown(self) -> None:
        started = time.monotonic()
        self.stopping = True
        self.notifier.stopping(self.status_line())
        self.log.info("shutting down: every worker drains", workers=sum(1 for w in self.workers if w.running))
        self._forward(signal.SIGTERM)
        limit = self.config.pipeline.shutdown_timeout_s + STOP_MARGIN_S
        codes = []
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                codes.append(
                    await asyncio.wait_for(worker.process.wait(), max(0.1, limit - (time.monotonic() - started)))
                )
            except TimeoutError:
                self.log.error("worker did not stop in time; killing it", worker=worker.index, pid=worker.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                codes.append(await worker.process.wait())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            await worker.close()
        if self.admin is not None:
            await self.admin.stop()
        if self.embedded is not None and self.embedded.started_here:
            await asyncio.to_thread(self.embedded.stop)
        shutil.rmtree(self.rundir, ignore_errors=True)
        if any(code != 0 for code in codes) and not self.failed:
            self.failed = f"worker exit codes {codes}; see the workers' log lines"
        self.log.info("stopped", seconds=round(time.monotonic() - started, 2), worker_exit_codes=codes)
        await self.heartbeat.stop()
        self.notifier.notify(STATUS=f"stopped: worker exit codes {codes}")
        self.notifier.close()
