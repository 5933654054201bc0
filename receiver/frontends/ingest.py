"""The transport-independent path of one export request: limits, decode, convert, admit.

Both front ends call `Ingest.handle` with the raw body and get an `Outcome`; they only differ in how
they read bodies and how they write the answer (`status.py`). Cheap refusals come first: a body that
is too large or cannot fit the queue is refused before a single byte of it is decoded. Then the body
is decoded in the decode pool (a worker thread, off the event loop) under its budget: a request over
one of its limits is refused at once, with the limit's config key in the message (`decode.py`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.convert.budget import DecodeBudget, DecodeLimits, LimitExceeded, MemoryBusy, MemoryPool
from receiver.convert.common import Converted, ConvertOptions
from receiver.convert.window import TimeWindow
from receiver.frontends.auth import ApiKeyAuthenticator, presented_key
from receiver.frontends.decode import (
    Decoded,
    MalformedRequest,
    RequestTooLarge,
    charge_request,
    decode_request,
    gunzip_bounded,
)
from receiver.frontends.decode_pool import DecodePool
from receiver.frontends.outcomes import Accepted, Outcome, Refusal, Refused
from receiver.frontends.ratelimit import KeyRateLimiter
from receiver.frontends.signals import SIGNALS, SignalSpec
from receiver.pipeline.pipeline import Admission, Pipeline
from receiver.pipeline.spool import MaterializeLater
from receiver.storage.api_keys import INGEST, ActiveKey, display_prefix
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Children, Metrics

# Reasons of items refused for their time (receiver.convert.window), as metric labels.
REASON_TOO_OLD = "older_than_retention"
REASON_TOO_NEW = "beyond_future_skew"
FOOTPRINT_WEIGHT = 0.2  # weight of the newest request in the rows-per-byte estimate
MEMORY_MESSAGE = "receiver memory is above limits.memory_limit_mib; retry later"
RELEASE_STEP = 2048  # rows freed at once when a decoded request is dropped (the GIL is free in between)
# Small requests are decoded on the event loop, not in the decode pool: the thread round trip (two
# wake-ups, the GIL handed over twice) cost more CPU than decoding them (OTLP/HTTP 1-span requests:
# 506-537 -> 410-444 µs of receiver CPU each), and they do not wait behind a large request's decode.
# "Small" is judged by what decoding will cost, not by size: an uncompressed protobuf body of up to
# INLINE_SCAN_MAX_BYTES is scanned on the loop (the scan does not read inside strings: ~0.2 ms for the
# densest 64 KiB) and decoded there when its charge, the memory decoding will make, is at most
# INLINE_DECODE_MAX_CHARGE: the slowest kind of body per charged byte (one-value attributes) then holds
# the loop ~0.2 ms, while an LLM span with a 16 KiB prompt (charge ~20 KB) no longer pays the round trip.
# By size alone a 16 KiB body of empty log records (charge 10 MB) had held it ~2-3 ms. JSON bodies: by
# size (INLINE_DECODE_MAX_BYTES).
INLINE_DECODE_MAX_BYTES = 16 * 1024
INLINE_SCAN_MAX_BYTES = 64 * 1024
INLINE_DECODE_MAX_CHARGE = 64 * 1024
# Decode memory a body that may be decoded on the loop takes without reserving it from the memory pool
# (DecodeBudget's unpooled_bytes): a 1-span request charges ~10 KB. Decodes run one on the loop and one
# per decode thread, so what the pool does not see is at most (1 + otlp.decode_threads) x this. (A small
# body sent on to the pool keeps the part of its scan's charge past this reserved while it waits.)
INLINE_UNPOOLED_BYTES = 256 * 1024
DISK_FULL_MESSAGE = "receiver spool's disk is full (or below spool.min_free_bytes); retry later"


def release_rows(rows: list[Any]) -> None:
    """Free the rows of a refused request a slice at a time: freeing tens of thousands of rows in one
    go holds the GIL for hundreds of ms."""
    while rows:
        del rows[-RELEASE_STEP:]


async def release_rows_async(rows: list[Any]) -> None:
    """release_rows on the event loop, letting other tasks run between slices."""
    while rows:
        del rows[-RELEASE_STEP:]
        await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_request_bytes: int = 64 * 1024 * 1024
    row_overhead_bytes: int = 1024  # memory a converted row costs beyond its share of the body
    retry_after_s: float = 1.0  # what backpressure refusals ask clients to wait
    decode: DecodeLimits = field(default_factory=DecodeLimits)  # items, containers, memory per request


class Ingest:
    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        limits: IngestLimits,
        options: Callable[[], ConvertOptions],
        authenticator: ApiKeyAuthenticator | None = None,
        rate_limiter: KeyRateLimiter | None = None,
        decode_pool: DecodePool | None = None,
        memory_pool: MemoryPool | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._authenticator = authenticator
        self.rate_limiter = rate_limiter or KeyRateLimiter(burst_s=2.0)
        self._metrics = metrics
        self._limits = limits
        self._options = options  # called per request: pricing can be reloaded (SIGHUP)
        self._decode_pool = decode_pool or DecodePool(1)
        self._memory_pool = memory_pool  # decode memory shared by the requests in flight
        # Rows per body byte, per (signal, OTLP/JSON?), a moving average: the pre-decode room check.
        self._rows_per_byte: dict[tuple[str, bool], float] = {}
        # What the requests being decoded are expected to need in each table's lane (bytes, rows): they
        # decode concurrently, so each room check counts the others' rows as if already queued.
        self._in_flight: dict[str, tuple[int, int]] = {}
        self._log = get_logger("ingest")
        self._limited = RateLimitedLog(self._log)
        # Labelled children looked up once (the per-request path counts every request).
        self._requests = Children(metrics.requests)
        self._refused_requests = Children(metrics.refused_requests)
        self._accepted = {signal: Children(counter) for signal, counter in metrics.accepted.items()}
        self._refused = {signal: Children(counter) for signal, counter in metrics.refused.items()}

    @property
    def authenticating(self) -> bool:
        """True with auth.mode = api_key: only then do the front ends collect the request headers."""
        return self._authenticator is not None

    def authenticate(self, spec: SignalSpec, headers: Mapping[str, str], transport: str) -> ActiveKey | Refused | None:
        """The request's API key (auth.mode = api_key), checked for the ingest scope before the body is
        even read: the key, a refusal, or None when auth is off."""
        if self._authenticator is None:
            return None
        found = self._authenticator.identify(headers, INGEST)
        if isinstance(found, Refused):
            self._metrics.auth_refused.labels(found.label).inc()
            if found.reason is Refusal.FORBIDDEN:  # a known key without the scope
                self._metrics.key_refused.labels(display_prefix(presented_key(headers) or ""), found.label).inc()
            self._count(spec, transport, found)
        return found

    async def handle(
        self, spec: SignalSpec, body: bytes, *, json: bool, gzip: bool, transport: str, key: ActiveKey | None = None
    ) -> Outcome:
        received_unix_nanos = time.time_ns()
        try:
            outcome = await self._handle(
                spec, body, json=json, gzip=gzip, transport=transport, received=received_unix_nanos, key=key
            )
        except Exception as exc:  # a defect must cost one request, never the process
            self._log.exception("request failed inside the receiver", signal=spec.name, transport=transport)
            outcome = Refused(Refusal.INTERNAL, f"internal error while handling the request: {exc}")
        self._count(spec, transport, outcome)
        return outcome

    def _refuse_busy(self, reason: Refusal, message: str, items: int = 0, cause: str = "") -> Refused:
        retry_after = max(self._limits.retry_after_s, self._pipeline.breaker.cooldown_remaining())
        return Refused(reason, message, items, retry_after_s=retry_after, cause=cause)

    def _over_rate(self, key: ActiveKey) -> Refused | None:
        """The key's rate limit (it has one), checked before decoding: refused while its token bucket is
        empty."""
        assert key.rate_items_per_s is not None
        wait = self.rate_limiter.admit(key.id, key.rate_items_per_s)
        if wait is None:
            return None
        refused = Refused(
            Refusal.RATE_LIMITED,
            f"API key {key.prefix}… is over its rate limit of {key.rate_items_per_s:g} items/s; "
            f"retry in {math.ceil(wait)} s",
            retry_after_s=max(self._limits.retry_after_s, wait),
            cause="rate_limited",
        )
        self._metrics.key_refused.labels(key.prefix, refused.label).inc()
        return refused

    async def _handle(
        self,
        spec: SignalSpec,
        body: bytes,
        *,
        json: bool,
        gzip: bool,
        transport: str,
        received: int,
        key: ActiveKey | None = None,
    ) -> Outcome:
        limits = self._limits
        if self._pipeline.closed:
            return self._refuse_busy(Refusal.SHUTTING_DOWN, "receiver is shutting down; retry later")
        if len(body) > limits.max_request_bytes:
            return Refused(
                Refusal.TOO_LARGE,
                f"request body of {len(body)} bytes exceeds the {limits.max_request_bytes}-byte limit "
                "(otlp.max_request_bytes); send smaller batches",
            )
        if key is not None and key.rate_items_per_s is not None:
            over_rate = self._over_rate(key)
            if over_rate is not None:
                return over_rate
        expected = self._expected(spec, body, json)
        if not self._room_for_expected(spec, expected):
            return self._refuse_no_room()
        if self._pipeline.memory_exhausted():
            return self._refuse_busy(Refusal.OVERLOADED, MEMORY_MESSAGE, cause="memory")
        # The receive time and the tenant go in through the options: conversion stays pure (logs without
        # any time use the receive time; every row carries the key's project).
        project = key.project_id if key is not None else None
        # Where to decode (gzip: its size says nothing, the pool): protobuf by what its scan finds, which
        # the loop can afford for a body of up to INLINE_SCAN_MAX_BYTES; JSON by its size.
        small = not gzip and len(body) <= (INLINE_DECODE_MAX_BYTES if json else INLINE_SCAN_MAX_BYTES)
        budget = DecodeBudget(limits.decode, self._memory_pool, INLINE_UNPOOLED_BYTES if small else 0)
        self._hold(spec.table, expected, 1)
        try:
            options = self._options().for_request(received, project, budget)
            try:
                inline, charged = small, False
                if small and not json:
                    inline = charge_request(spec, body, options).nbytes <= INLINE_DECODE_MAX_CHARGE
                    charged = True
                if inline:
                    result = self._decode(spec, body, json, gzip, options, charged)
                else:
                    result = await self._decode_pool.run(self._decode, spec, body, json, gzip, options, charged)
            except RequestTooLarge as exc:
                return Refused(Refusal.TOO_LARGE, str(exc))
            except MalformedRequest as exc:
                return Refused(Refusal.MALFORMED, str(exc))
            except LimitExceeded as exc:
                return Refused(Refusal.TOO_LARGE, str(exc), cause=exc.reason)
            except MemoryBusy as exc:
                return self._refuse_busy(Refusal.OVERLOADED, str(exc), cause="decode_memory")
            if isinstance(result, Refused):
                return result
            decoded, body_bytes = result
            return await self._admit(spec, decoded, body_bytes, json, transport, received, options, key)
        finally:
            budget.close()
            self._hold(spec.table, expected, -1)

    def _hold(self, table: str, expected: tuple[int, int], sign: int) -> None:
        nbytes, rows = self._in_flight.get(table, (0, 0))
        self._in_flight[table] = (nbytes + sign * expected[0], rows + sign * expected[1])

    def _decode(
        self, spec: SignalSpec, body: bytes, json: bool, gzip: bool, options: ConvertOptions, charged: bool = False
    ) -> tuple[Decoded, int] | Refused:
        """In a decode worker thread (on the event loop for small requests): gunzip, then decode under the
        options' budget (`charged`: its scan is charged already, decode_request's charge_request)."""
        if gzip:
            body = gunzip_bounded(body, self._limits.max_request_bytes)
            if not self._room_for(spec, body, json):  # a racy read of the queue's size: a hint only
                return self._refuse_no_room()
        decoded = decode_request(spec, body, json, options, charged=charged)
        rows = decoded.converted.rows
        nbytes = len(body) + len(rows) * self._limits.row_overhead_bytes
        too_large = self._pipeline.never_fits(nbytes, spec.table, len(rows))
        if too_large is not None:
            count = len(rows)
            release_rows(rows)  # here, not on the event loop
            return Refused(Refusal.TOO_LARGE, too_large, count, cause="queue_capacity")
        if self._pipeline.durable and decoded.protobuf is None:
            decoded.protobuf = decoded.message.SerializeToString()  # what the spool stores, made here too
        return decoded, len(body)

    async def _admit(
        self,
        spec: SignalSpec,
        decoded: Decoded,
        body_bytes: int,
        json: bool,
        transport: str,
        received: int,
        options: ConvertOptions,
        key: ActiveKey | None,
    ) -> Outcome:
        limits = self._limits
        converted = decoded.converted
        self._learn_footprint(spec, json, body_bytes, len(converted.rows))
        nbytes = body_bytes + len(converted.rows) * limits.row_overhead_bytes
        items = len(converted.rows) + converted.rejected
        if key is not None and key.rate_items_per_s is not None:
            self.rate_limiter.charge(key.id, key.rate_items_per_s, items)
        record = None
        if self._pipeline.durable:
            assert decoded.protobuf is not None
            project = options.project_id
            window = options.window(spec.name)  # stored, so a replay converts exactly as now
            record = SpoolRecord(
                signal=spec.name,
                request=decoded.protobuf,
                received_unix_nano=received,
                project_id=project.bytes if project is not None else b"",
                window_retention_s=window.retention_s or 0,
                window_max_future_skew_s=window.max_future_skew_s or 0,
            )
        del decoded
        stats = converted.stats
        if stats.truncated_values or stats.nul_replaced or stats.non_finite_numbers:
            self._count_altered(spec, stats)
        rows = converted.rows
        rejected = converted.rejected
        errors = converted.errors
        message = ""
        if rejected:
            shown = "; ".join(errors[:5])
            more = rejected - min(len(errors), 5)
            message = f"{rejected} {spec.item_noun}(s) rejected: {shown}" + (f"; and {more} more" if more > 0 else "")
            self._count_rejected(spec, transport, converted)
            self._limited.warning(
                f"invalid:{spec.name}", "rejected invalid items", signal=spec.name, count=rejected, detail=message
            )
        if record is None:  # memory durability: admission never waits
            admission = self._pipeline.admit({spec.table: rows}, nbytes)
        else:
            admission = await self._pipeline.submit({spec.table: rows}, nbytes, record)
        if admission is not Admission.ACCEPTED:
            if key is not None and key.rate_items_per_s is not None:  # not taken: the retry will pay
                self.rate_limiter.refund(key.id, key.rate_items_per_s, items)
            self._metrics.enqueue_failed[spec.name].inc(len(rows))
            count = len(rows)
            await release_rows_async(rows)
            if admission is Admission.CLOSED:
                return self._refuse_busy(Refusal.SHUTTING_DOWN, "receiver is shutting down; retry later", count)
            message = {
                Admission.FULL: self._full_message(),
                Admission.MEMORY: MEMORY_MESSAGE,
                Admission.SPOOL_ERROR: "receiver cannot write its spool (I/O error); retry later",
                Admission.DISK_FULL: DISK_FULL_MESSAGE,
            }[admission]
            return self._refuse_busy(Refusal.OVERLOADED, message, count, cause=admission.value)
        if rows:
            self._accepted[spec.name].adder(transport)(len(rows))
        return Accepted(len(rows), rejected, message)

    def _expected(self, spec: SignalSpec, body: bytes, json: bool) -> tuple[int, int]:
        """(bytes, rows) this body's rows are expected to take in the queue, judged before decoding it:
        rows are charged their share of the body plus `row_overhead_bytes` each; the row count is
        estimated from the bodies seen so far."""
        rows = int(len(body) * self._rows_per_byte.get((spec.name, json), 0.0))
        return len(body) + rows * self._limits.row_overhead_bytes, rows

    def _room_for(self, spec: SignalSpec, body: bytes, json: bool) -> bool:
        """Would this body's rows fit, next to those of the requests being decoded?"""
        return self._room_for_expected(spec, self._expected(spec, body, json))

    def _room_for_expected(self, spec: SignalSpec, expected: tuple[int, int]) -> bool:
        nbytes, rows = expected
        pending_bytes, pending_rows = self._in_flight.get(spec.table, (0, 0))
        return self._pipeline.room_for_bytes(nbytes + pending_bytes, spec.table, rows + pending_rows)

    def _learn_footprint(self, spec: SignalSpec, json: bool, body_bytes: int, rows: int) -> None:
        if body_bytes <= 0:
            return
        key = (spec.name, json)
        seen = rows / body_bytes
        previous = self._rows_per_byte.get(key)
        self._rows_per_byte[key] = seen if previous is None else previous + (seen - previous) * FOOTPRINT_WEIGHT

    def _refuse_no_room(self) -> Refused:
        """A refusal made before decoding: the queue or spool is full, or the spool's disk is."""
        spool = self._pipeline.spool
        if spool is not None and spool.refusing_for_disk():
            return self._refuse_busy(Refusal.OVERLOADED, DISK_FULL_MESSAGE, cause=Admission.DISK_FULL.value)
        return self._refuse_busy(Refusal.OVERLOADED, self._full_message(), cause="queue_full")

    def _full_message(self) -> str:
        if self._pipeline.durable:
            return "receiver spool is full (spool.max_bytes); retry later"
        if self._pipeline.breaker.is_open:
            return "database unavailable and receiver queue full; retry later"
        return "receiver queue is full; retry later"

    async def materialize(self, record: SpoolRecord) -> tuple[Mapping[str, Sequence[tuple[Any, ...]]], int] | None:
        """A spooled request -> rows again (replay after a restart or after the spool fell behind),
        decoded like a live request: in the decode pool, under a budget with the same limits."""
        spec = SIGNALS.get(record.signal)
        if spec is None:
            self._log.error("spool record of an unknown signal skipped", signal=record.signal)
            return None
        budget = DecodeBudget(self._limits.decode, self._memory_pool)
        try:
            # The receive time, window and project the request was acknowledged with: the same rows as live.
            base = self._options()
            window = TimeWindow(record.window_retention_s or None, record.window_max_future_skew_s or None)
            options = replace(
                base,
                received_unix_nanos=record.received_unix_nano,
                windows={**base.windows, spec.name: window},
                project_id=UUID(bytes=record.project_id) if len(record.project_id) == 16 else None,
                budget=budget,
            )
            try:
                decoded = await self._decode_pool.run(decode_request, spec, record.request, False, options)
            except MemoryBusy:
                raise MaterializeLater from None
            except (MalformedRequest, LimitExceeded) as exc:
                # Only a record accepted under other limits can be over them now (the limits were lowered).
                self._log.error("unreadable spool record skipped", signal=record.signal, error=str(exc))
                return None
        finally:
            budget.close()
        rows = decoded.converted.rows
        return {spec.table: rows}, len(record.request) + len(rows) * self._limits.row_overhead_bytes

    def _count_rejected(self, spec: SignalSpec, transport: str, converted: Converted) -> None:
        refused = self._refused[spec.name]
        invalid = converted.rejected - converted.too_old - converted.too_new
        for reason, count in (
            ("invalid", invalid),
            (REASON_TOO_OLD, converted.too_old),
            (REASON_TOO_NEW, converted.too_new),
        ):
            if count:
                refused(transport, reason).inc(count)

    def _count_altered(self, spec: SignalSpec, stats: object) -> None:
        for kind in ("truncated_values", "nul_replaced", "non_finite_numbers"):
            n = getattr(stats, kind)
            if n:
                self._metrics.values_altered.labels(spec.name, kind).inc(n)

    def count_refused_early(self, spec: SignalSpec, transport: str, refused: Refused) -> None:
        """A request its front end refused before handing it over (framing, size on the wire): counted and
        logged as `handle` counts its own refusals."""
        self._count(spec, transport, refused)

    def count_unreadable(self, transport: str, signal: str | None, reason: str, message: str) -> None:
        """A request its front end could not read whole (bad HTTP or HTTP/2, a head over its bound, too
        slow): counted under its signal when its path names one, else "unknown", and logged."""
        signal = signal or "unknown"
        self._refused_requests(transport, signal, reason).inc()
        self._limited.warning(
            f"unreadable:{transport}:{reason}",
            "request refused before it was read",
            signal=signal,
            transport=transport,
            reason=reason,
            detail=message,
        )

    def _count(self, spec: SignalSpec, transport: str, outcome: Outcome) -> None:
        if isinstance(outcome, Accepted):
            label = "partial" if outcome.rejected else "success"
        else:
            label = "refused" if outcome.reason is not Refusal.INTERNAL else "failure"
            self._refused_requests(transport, spec.name, outcome.label).inc()
            if outcome.items:
                self._refused[spec.name](transport, outcome.label).inc(outcome.items)
            self._limited.warning(
                f"refused:{spec.name}:{outcome.label}",
                "request refused",
                signal=spec.name,
                transport=transport,
                reason=outcome.label,
                detail=outcome.message,  # names the key's prefix when the key is the reason
            )
        self._requests.adder(transport, spec.name, label)(1)
