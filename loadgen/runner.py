"""One run from start to verdict: check the target, build the pool, run the timetable, verify, judge.

Order matters for honest figures: everything that costs CPU up front (the pool, connections, the
database check) happens before the clock starts; verification happens after sending has ended, so
its queries never compete with the load it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import __version__
from .bodies import Pool, build_pool, render_rate
from .genai_metrics import MetricsBuilder
from .ids import RunId
from .ledger import Ledger
from .report import JSON_FORMAT, Progress
from .retry import RetryPolicy
from .schedule import LoadPlan, LoadRunner, Timing, clock, gzip_body
from .stats import RunStats, SignalStats, percentiles
from .transport import SIGNALS, make_exporter, probe, split_target
from .verdict import judge
from .verify import Verification, Verifier, VerifyError, check
from .workload import WorkloadSpec, describe_mix


class SetupError(Exception):
    """The run cannot start (target unreachable, bad DSN, …): one line saying what to do. Exit 2."""


@dataclass(frozen=True, slots=True)
class Settings:
    target: str
    protocol: str = "grpc"
    encoding: str = "protobuf"
    gzip: bool = False
    rate: float = 10_000.0
    duration_s: float = 60.0
    exporters: int = 4
    max_in_flight: int = 64
    timeout_s: float = 10.0
    signals: frozenset[str] = frozenset({"traces"})
    metrics_interval_s: float = 1.0
    pool_size: int = 16
    seed: int | None = None
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify_dsn: str | None = None
    verify_timeout_s: float = 60.0
    sustain_ratio: float = 0.95
    run_id: str | None = None
    progress: bool = True


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _progress_loop(progress: Progress, runner: LoadRunner) -> None:
    start = runner.timing.start
    n = 1
    while True:
        await asyncio.sleep(max(0.0, start + n - clock()))
        progress.emit(clock() - start)
        n += 1


def _say(message: str, err: TextIO) -> None:
    print(message, file=err, flush=True)


async def run(settings: Settings, err: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the load and return the report document (see report.text for its reading)."""
    host, port = split_target(settings.target, settings.protocol)
    problem = await probe(settings.protocol, host, port, settings.encoding)
    if problem is not None:
        raise SetupError(problem)
    if settings.verify_dsn:
        try:
            await check(settings.verify_dsn)
        except VerifyError as exc:
            raise SetupError(
                f"{exc} (--verify takes the receiver's database URL, e.g. the dsn in its "
                "'embedded database running' log line)"
            ) from None

    run_id = RunId.parse(settings.run_id) if settings.run_id else RunId.new()
    seed = settings.seed if settings.seed is not None else random.randrange(1 << 31)
    spec = settings.workload
    if settings.progress:
        _say(
            f"loadgen {run_id.text}: building {settings.pool_size} request bodies of {spec.batch_spans} spans "
            f"({settings.encoding})…",
            err,
        )
    pool = await asyncio.to_thread(build_pool, spec, run_id, settings.encoding, settings.pool_size, seed)
    gzip_bodies = settings.gzip and settings.protocol == "http"
    render = await asyncio.to_thread(render_rate, pool, 0.5, gzip_body if gzip_bodies else None)

    exporters = [
        make_exporter(
            settings.protocol, host, port, settings.encoding, settings.gzip, settings.timeout_s, settings.max_in_flight
        )
        for _ in range(settings.exporters)
    ]
    await asyncio.gather(*(exporter.connect() for exporter in exporters))
    metrics = [MetricsBuilder(run_id, n, pool.series(), settings.encoding, seed) for n in range(settings.exporters)]
    stats = RunStats(
        {
            name: SignalStats(name, SIGNALS[name].item_noun)
            for name in ("traces", "metrics", "logs")
            if name in settings.signals
        }
    )
    ledger = Ledger()
    plan = LoadPlan(
        rate=settings.rate,
        duration_s=settings.duration_s,
        max_in_flight=settings.max_in_flight,
        signals=settings.signals,
        metrics_interval_s=settings.metrics_interval_s,
        gzip_bodies=gzip_bodies,
    )
    runner = LoadRunner(plan, pool, exporters, settings.retry, stats, ledger, metrics, seed)
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: stop waiting for in-flight requests too
            raise KeyboardInterrupt
        interrupted = True
        _say("interrupted: ending the window, finishing requests in flight (Ctrl-C again to abort)", err)
        runner.stop()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    progress_task: asyncio.Task[None] | None = None
    if settings.progress:
        _say(
            f"loadgen {run_id.text}: sending to {settings.target} for {settings.duration_s:g} s "
            + (f"at {settings.rate:,.0f} spans/s" if settings.rate > 0 else "as fast as acknowledged"),
            err,
        )

    def started() -> None:
        nonlocal progress_task
        if settings.progress:
            progress_task = loop.create_task(_progress_loop(Progress(stats, err), runner))

    cpu_before = _cpu_seconds()
    try:
        timing = await runner.run(on_start=started)
    finally:
        if progress_task is not None:
            progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress_task
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        for exporter in exporters:
            await exporter.close()
    cpu_s = _cpu_seconds() - cpu_before

    verification: Verification | None = None
    verify_error: str | None = None
    if settings.verify_dsn:
        if settings.progress:
            _say(f"loadgen {run_id.text}: verifying in the database (up to {settings.verify_timeout_s:g} s)…", err)
        acked_other = {name: st.acked_items for name, st in stats.signals.items() if name != "traces"}
        verifier = Verifier(settings.verify_dsn, run_id, ledger, pool, acked_other)
        try:
            verification = await verifier.verify(timing.wall(timing.drained), settings.verify_timeout_s)
        except (VerifyError, OSError) as exc:
            verify_error = str(exc)
    return build_document(
        settings, run_id, seed, pool, render, stats, runner, timing, cpu_s, verification, verify_error, interrupted
    )


def build_document(
    settings: Settings,
    run_id: RunId,
    seed: int,
    pool: Pool,
    render_spans_per_s: float,
    stats: RunStats,
    runner: LoadRunner,
    timing: Timing,
    cpu_s: float,
    verification: Verification | None,
    verify_error: str | None,
    interrupted: bool,
) -> dict[str, Any]:
    window_s, elapsed_s = timing.window_s, timing.elapsed_s
    lag = percentiles(stats.dispatch_lags)
    spans_sent = stats.signals["traces"].offered_items - stats.signals["traces"].dropped_items
    capacity = spans_sent / cpu_s if cpu_s > 0 else None
    verdict = judge(
        stats.signals,
        settings.rate > 0,
        window_s,
        elapsed_s,
        settings.sustain_ratio,
        verification,
        verify_error,
        lag.get("p99") if lag.get("count") else None,  # type: ignore[arg-type]
        interrupted,
        capacity,
        settings.rate,
    )
    signals: dict[str, Any] = {}
    for name, st in stats.signals.items():
        summary = st.summary(window_s, elapsed_s)
        summary["examples"] = {status: msg for (sig, status), msg in runner.examples.items() if sig == name}
        signals[name] = summary
    spec = settings.workload
    doc: dict[str, Any] = {
        "format": JSON_FORMAT,
        "loadgen_version": __version__,
        "run_id": run_id.text,
        "ok": verdict.ok,
        "config": {
            "target": settings.target,
            "protocol": settings.protocol,
            "encoding": settings.encoding,
            "gzip": settings.gzip,
            "rate": settings.rate,
            "duration_s": settings.duration_s,
            "exporters": settings.exporters,
            "batch_spans": spec.batch_spans,
            "max_in_flight": settings.max_in_flight,
            "timeout_s": settings.timeout_s,
            "signals": sorted(settings.signals),
            "sustain_ratio": settings.sustain_ratio,
            "retry": {
                "enabled": settings.retry.enabled,
                "initial_s": settings.retry.initial_s,
                "max_delay_s": settings.retry.max_delay_s,
                "max_elapsed_s": settings.retry.max_elapsed_s,
            },
            "seed": seed,
        },
        "workload": {
            "pool_bodies": len(pool.entries),
            "pool_build_s": round(pool.build_s, 3),
            "body_bytes": pool.body_bytes,
            "bytes_per_span": pool.bytes_per_span,
            "mix": describe_mix(spec.mix),
            "legacy_share": spec.legacy_share,
            "large_share": spec.large_share,
            "large_bytes": spec.large_bytes,
            "error_rate": spec.error_rate,
            "log_ratio": spec.log_ratio if "logs" in settings.signals else None,
        },
        "run": {
            "started_at": round(timing.start_wall, 3),
            "sending_ended_at": round(timing.wall(timing.drained), 3),
            "window_s": round(window_s, 3),
            "elapsed_s": round(elapsed_s, 3),
            "last_ack_s": round(timing.last_ack - timing.start, 3) if timing.last_ack else None,
            "drained_s": round(timing.drained - timing.start, 3),
            "peak_in_flight": stats.peak_in_flight,
            "interrupted": interrupted,
        },
        "signals": signals,
        "generator": {
            "cpu_s": round(cpu_s, 3),
            "cpu_us_per_span": round(cpu_s / spans_sent * 1e6, 2) if spans_sent else None,
            "capacity_spans_per_s": round(capacity) if capacity is not None else None,
            "render_spans_per_s": round(render_spans_per_s),
            "dispatch_lag_ms": lag,
        },
        "verification": None,
        "verdict": verdict.as_dict(settings.sustain_ratio),
    }
    if verify_error is not None:
        doc["verification"] = {"ok": False, "error": verify_error}
    elif verification is not None:
        doc["verification"] = verification.as_dict()
    return doc


def run_sync(settings: Settings, err: TextIO = sys.stderr) -> dict[str, Any]:
    """Run on uvloop (the receiver's loop too), falling back to asyncio's own."""
    try:
        import uvloop

        return uvloop.run(run(settings, err))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(run(settings, err))
