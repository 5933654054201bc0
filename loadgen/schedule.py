"""Putting requests on the wire: an open-loop timetable (or a closed loop), the in-flight bound, retries.

Open loop (`rate` > 0). Trace request i is due at start + i × batch_spans / rate, whatever happened to
the requests before it, and goes to exporter i mod N. A slow receiver therefore shows as latency, as
refusals and as a growing number of requests in flight — never as a lower offered rate. In flight is
bounded (`max_in_flight`, all signals together, retries included): a request that falls due while the
bound is reached is dropped and counted, as an SDK's full export queue drops a batch. If the generator
itself falls behind its timetable, a request leaves late; its lateness is recorded (dispatch lag) and
its `ack` latency is measured from when it was due.

Closed loop (`rate` = 0, "as fast as possible"): each exporter sends its next request when the
previous one is acknowledged (or given up), like an SDK exporter with one export at a time.

Either way the window is `duration_s`; requests still in flight when it ends are finished (their
retries included, bounded by the retry policy) before the run ends: that is the drain.

Per request the hot path is: render the pre-serialized body with k in its trace ids (one bytes.join,
bodies.Template.render), optionally gzip it (in a worker thread, for OTLP/HTTP), send it.
Logs of the same traces go as their own request right after; metrics go on their own per-exporter
timetable every `metrics_interval_s`.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .bodies import Pool
from .genai_metrics import MetricsBuilder
from .ledger import Ledger
from .retry import RetryPolicy
from .stats import RunStats
from .transport import Exporter

# One clock for timetable and latencies: perf_counter has sub-microsecond resolution, where uvloop's
# loop.time() ticks in milliseconds. Sleeps still wake with the loop's (millisecond) precision.
clock = time.perf_counter

_NO_ANSWER = frozenset({"TIMEOUT", "DEADLINE_EXCEEDED", "CANCELLED", "CONNECTION_ERROR"})


@dataclass(frozen=True, slots=True)
class LoadPlan:
    rate: float  # spans per second; 0 = closed loop
    duration_s: float
    max_in_flight: int
    signals: frozenset[str]
    metrics_interval_s: float = 1.0
    gzip_bodies: bool = False  # compress bodies here (OTLP/HTTP); gRPC compresses in its own core


@dataclass(slots=True)
class Timing:
    """Instants on `clock` (seconds) and the wall-clock time of `start`."""

    start: float = 0.0
    start_wall: float = 0.0
    window_end: float = 0.0  # when the timetable (or closed loop) stopped producing requests
    last_ack: float = 0.0
    drained: float = 0.0  # when the last in-flight request finished

    @property
    def window_s(self) -> float:
        return self.window_end - self.start

    @property
    def elapsed_s(self) -> float:
        """From the first due request to the last acknowledgement (or the window end, if later)."""
        return max(self.last_ack, self.window_end) - self.start

    def wall(self, instant: float) -> float:
        return self.start_wall + (instant - self.start)


def gzip_body(body: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: the generator's CPU is the receiver's too
    return compressor.compress(body) + compressor.flush()


class LoadRunner:
    def __init__(
        self,
        plan: LoadPlan,
        pool: Pool,
        exporters: Sequence[Exporter],
        policy: RetryPolicy,
        stats: RunStats,
        ledger: Ledger,
        metrics: Sequence[MetricsBuilder] = (),
        seed: int = 0,
    ) -> None:
        self.plan = plan
        self.pool = pool
        self.exporters = list(exporters)
        self.policy = policy
        self.stats = stats
        self.ledger = ledger
        self.metrics = list(metrics)
        self.timing = Timing()
        self.examples: dict[tuple[str, str], str] = {}  # (signal, status) -> first message seen
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._stopped_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._traces = stats.signals["traces"]
        self._logs_on = "logs" in plan.signals

    def stop(self) -> None:
        """End the window now (Ctrl-C): in-flight requests still finish and the report is printed."""
        if not self._stop.is_set():
            self._stopped_at = clock()
        self._stop.set()

    # -- one request -------------------------------------------------------------------------------

    async def _send(self, signal: str, exporter: Exporter, body: bytes, items: int, due: float, k: int = 0) -> None:
        """Send one request until it is acknowledged, refused for good, or out of retry budget."""
        st = self.stats.signals[signal]
        timing = self.timing
        if self.plan.gzip_bodies:
            body = await asyncio.to_thread(gzip_body, body)
        first = clock()
        if k:
            self.ledger.sent(k, timing.wall(first))
        attempt = 0
        while True:
            attempt += 1
            st.attempts += 1
            sent_at = clock()
            result = await exporter.export(signal, body)
            now = clock()
            if result.ok:
                rejected = min(result.rejected, items)
                st.ack(items, rejected, int(now - timing.start), now - sent_at, now - due)
                if now > timing.last_ack:
                    timing.last_ack = now
                if k:
                    self.ledger.acked(k, rejected)
                if rejected and (signal, "partial_success") not in self.examples:
                    self.examples[(signal, "partial_success")] = result.message
                return
            st.refusals[result.status] += 1
            self.examples.setdefault((signal, result.status), result.message)
            wait = self.policy.next_delay(result, attempt, now - first, self._rng)
            if wait is None:
                st.failed_requests += 1
                st.failed_items += items
                if result.status in _NO_ANSWER:  # it may have landed: verification reports such spans apart
                    st.unanswered_requests += 1
                return
            st.retries += 1
            await asyncio.sleep(wait)

    def _spawn(self, signal: str, exporter: Exporter, body: bytes, items: int, due: float, k: int = 0) -> None:
        stats = self.stats
        stats.in_flight += 1
        if stats.in_flight > stats.peak_in_flight:
            stats.peak_in_flight = stats.in_flight
        task = self._loop.create_task(self._send(signal, exporter, body, items, due, k))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.stats.in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            # A defect in the generator must not pass silently as "receiver did not answer".
            self._loop.call_exception_handler({"message": "loadgen send task failed", "exception": task.exception()})

    def _room(self) -> bool:
        return self.stats.in_flight < self.plan.max_in_flight

    def _traces_request(self, i: int) -> tuple[int, bytes, int]:
        """(k, body, spans) of trace request number i (0-based)."""
        entries = self.pool.entries
        index = i % len(entries)
        k = self.ledger.next(index)
        template = entries[index].traces
        return k, template.render(k, time.time_ns()), template.items

    def _offer_traces(self, i: int, due: float) -> None:
        """Open loop: request i falls due now; send it or drop it (in-flight bound)."""
        st = self._traces
        exporter = self.exporters[i % len(self.exporters)]
        spans = self.pool.spans_per_request
        st.offered_requests += 1
        st.offered_items += spans
        if not self._room():
            st.dropped_requests += 1
            st.dropped_items += spans
            self._offer_logs_dropped(i)
            return
        k, body, spans = self._traces_request(i)
        self._spawn("traces", exporter, body, spans, due, k)
        if self._logs_on:
            self._offer_logs(i, k, exporter, due)

    def _offer_logs(self, i: int, k: int, exporter: Exporter, due: float) -> None:
        logs = self.pool.entries[i % len(self.pool.entries)].logs
        if logs is None or not logs.items:
            return
        st = self.stats.signals["logs"]
        st.offered_requests += 1
        st.offered_items += logs.items
        if not self._room():
            st.dropped_requests += 1
            st.dropped_items += logs.items
            return
        self._spawn("logs", exporter, logs.render(k, time.time_ns()), logs.items, due)

    def _offer_logs_dropped(self, i: int) -> None:
        if not self._logs_on:
            return
        logs = self.pool.entries[i % len(self.pool.entries)].logs
        if logs is None or not logs.items:
            return
        st = self.stats.signals["logs"]
        st.offered_requests += 1
        st.offered_items += logs.items
        st.dropped_requests += 1
        st.dropped_items += logs.items

    # -- timetables --------------------------------------------------------------------------------

    async def _open_loop(self) -> None:
        plan = self.plan
        interval = self.pool.spans_per_request / plan.rate
        start = self.timing.start
        end = start + plan.duration_s
        lags = self.stats.dispatch_lags
        i = 0
        while not self._stop.is_set():
            due = start + i * interval
            if due >= end:
                break
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
                if self._stop.is_set():
                    break
            lags.append(max(0.0, clock() - due))
            self._offer_traces(i, due)
            i += 1

    async def _closed_loop_worker(self, exporter: Exporter, counter: list[int], end: float) -> None:
        st = self._traces
        while not self._stop.is_set() and clock() < end:
            i = counter[0]
            counter[0] += 1
            due = clock()
            k, body, spans = self._traces_request(i)
            st.offered_requests += 1
            st.offered_items += spans
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
            sends = [self._send("traces", exporter, body, spans, due, k)]
            logs = self.pool.entries[i % len(self.pool.entries)].logs if self._logs_on else None
            if logs is not None and logs.items:
                ls = self.stats.signals["logs"]
                ls.offered_requests += 1
                ls.offered_items += logs.items
                sends.append(self._send("logs", exporter, logs.render(k, time.time_ns()), logs.items, due))
            try:
                await asyncio.gather(*sends)
            finally:
                self.stats.in_flight -= 1

    async def _metrics_timetable(self, exporter: Exporter, builder: MetricsBuilder, offset: float) -> None:
        """One exporter's metric reader: an export every interval, on the clock, until the window ends."""
        interval = self.plan.metrics_interval_s
        start = self.timing.start + offset
        end = self.timing.start + self.plan.duration_s
        st = self.stats.signals["metrics"]
        previous_wall_ns = int(self.timing.start_wall * 1e9)
        n = 1
        while not self._stop.is_set():
            due = start + n * interval
            if due > end:
                break
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
                if self._stop.is_set():
                    break
            now_ns = max(time.time_ns(), previous_wall_ns + 1)
            body, points = builder.build(previous_wall_ns, now_ns)
            previous_wall_ns = now_ns
            st.offered_requests += 1
            st.offered_items += points
            if self._room():
                self._spawn("metrics", exporter, body, points, due)
            else:
                st.dropped_requests += 1
                st.dropped_items += points
            n += 1

    # -- the run -------------------------------------------------------------------------------------

    async def run(self, on_start: Callable[[], None] | None = None) -> Timing:
        timing = self.timing
        timing.start = clock()
        timing.start_wall = time.time()
        if on_start is not None:
            on_start()
        producers: list[asyncio.Task[None]] = []
        if "metrics" in self.plan.signals:
            for n, (exporter, builder) in enumerate(zip(self.exporters, self.metrics, strict=False)):
                offset = self.plan.metrics_interval_s * n / max(1, len(self.exporters))
                producers.append(self._loop.create_task(self._metrics_timetable(exporter, builder, offset)))
        if self.plan.rate > 0:
            await self._open_loop()
        else:
            counter = [0]
            end = timing.start + self.plan.duration_s
            await asyncio.gather(*(self._closed_loop_worker(e, counter, end) for e in self.exporters))
        # The window is the nominal duration (the timetable's last request is due just before its end),
        # shorter only when the run was interrupted.
        nominal_end = timing.start + self.plan.duration_s
        timing.window_end = min(nominal_end, self._stopped_at) if self._stopped_at is not None else nominal_end
        self._stop.set()  # ends the metric timetables too
        await asyncio.gather(*producers)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        timing.drained = clock()
        return timing
