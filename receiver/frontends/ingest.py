"""The transport-independent path of one export request: limits, decode, convert, admit.

Both front ends call `Ingest.handle` with the raw body and get an `Outcome`; they only differ in how
they read bodies and how they write the answer (`status.py`). Cheap refusals come first: a body that
is too large or cannot fit the queue is refused before a single byte of it is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from receiver.convert.common import ConvertOptions
from receiver.frontends.decode import (
    MalformedRequest,
    RequestTooLarge,
    gunzip_bounded,
    parse_json,
    parse_protobuf,
)
from receiver.frontends.outcomes import Accepted, Outcome, Refusal, Refused
from receiver.frontends.signals import SignalSpec
from receiver.pipeline.pipeline import Admission, Pipeline
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_request_bytes: int = 64 * 1024 * 1024
    row_overhead_bytes: int = 1024  # memory a converted row costs beyond its share of the body
    retry_after_s: float = 1.0  # what backpressure refusals ask clients to wait


class Ingest:
    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        limits: IngestLimits,
        options: Callable[[], ConvertOptions],
    ) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._limits = limits
        self._options = options  # called per request: pricing can be reloaded (SIGHUP)
        self._log = get_logger("ingest")
        self._limited = RateLimitedLog(self._log)

    def handle(self, spec: SignalSpec, body: bytes, *, json: bool, gzip: bool, transport: str) -> Outcome:
        received_unix_nanos = time.time_ns()
        try:
            outcome = self._handle(spec, body, json=json, gzip=gzip, transport=transport, received=received_unix_nanos)
        except Exception as exc:  # a defect must cost one request, never the process
            self._log.exception("request failed inside the receiver", signal=spec.name, transport=transport)
            outcome = Refused(Refusal.INTERNAL, f"internal error while handling the request: {exc}")
        self._count(spec, transport, outcome)
        return outcome

    def _refuse_busy(self, reason: Refusal, message: str, items: int = 0) -> Refused:
        return Refused(reason, message, items, retry_after_s=self._limits.retry_after_s)

    def _handle(
        self, spec: SignalSpec, body: bytes, *, json: bool, gzip: bool, transport: str, received: int
    ) -> Outcome:
        limits = self._limits
        if self._pipeline.queue.closed:
            return self._refuse_busy(Refusal.SHUTTING_DOWN, "receiver is shutting down; retry later")
        if len(body) > limits.max_request_bytes:
            return Refused(
                Refusal.TOO_LARGE,
                f"request body of {len(body)} bytes exceeds the {limits.max_request_bytes}-byte limit "
                "(otlp.max_request_bytes); send smaller batches",
            )
        if not self._pipeline.room_for_bytes(len(body)):
            return self._refuse_busy(Refusal.OVERLOADED, "receiver queue is full; retry later")
        try:
            if gzip:
                body = gunzip_bounded(body, limits.max_request_bytes)
                if not self._pipeline.room_for_bytes(len(body)):
                    return self._refuse_busy(Refusal.OVERLOADED, "receiver queue is full; retry later")
            if json:
                parsed = parse_json(spec.request_type, spec.envelope, body)
                request, pre_rejected, pre_errors = parsed.message, parsed.rejected, parsed.errors
            else:
                request, pre_rejected, pre_errors = parse_protobuf(spec.request_type, body), 0, []
        except RequestTooLarge as exc:
            return Refused(Refusal.TOO_LARGE, str(exc))
        except MalformedRequest as exc:
            return Refused(Refusal.MALFORMED, str(exc))

        # The receive time goes in through the options: conversion stays pure (logs without any time use it).
        converted = spec.convert(request, replace(self._options(), received_unix_nanos=received))
        del request
        self._count_altered(spec, converted.stats)
        rows = converted.rows
        rejected = pre_rejected + converted.rejected
        errors = pre_errors + converted.errors
        message = ""
        if rejected:
            shown = "; ".join(errors[:5])
            more = rejected - min(len(errors), 5)
            message = f"{rejected} {spec.item_noun}(s) rejected: {shown}" + (f"; and {more} more" if more > 0 else "")
            self._metrics.refused[spec.name].labels(transport, "invalid").inc(rejected)
            self._limited.warning(
                f"invalid:{spec.name}", "rejected invalid items", signal=spec.name, count=rejected, detail=message
            )
        nbytes = len(body) + len(rows) * limits.row_overhead_bytes
        admission = self._pipeline.submit({spec.table: rows}, nbytes)
        if admission is Admission.FULL:
            self._metrics.enqueue_failed[spec.name].inc(len(rows))
            return self._refuse_busy(Refusal.OVERLOADED, "receiver queue is full; retry later", len(rows))
        if admission is Admission.CLOSED:
            return self._refuse_busy(Refusal.SHUTTING_DOWN, "receiver is shutting down; retry later", len(rows))
        if rows:
            self._metrics.accepted[spec.name].labels(transport).inc(len(rows))
        return Accepted(len(rows), rejected, message)

    def _count_altered(self, spec: SignalSpec, stats: object) -> None:
        for kind in ("truncated_values", "nul_replaced", "non_finite_numbers"):
            n = getattr(stats, kind)
            if n:
                self._metrics.values_altered.labels(spec.name, kind).inc(n)

    def _count(self, spec: SignalSpec, transport: str, outcome: Outcome) -> None:
        if isinstance(outcome, Accepted):
            label = "partial" if outcome.rejected else "success"
        else:
            label = "refused" if outcome.reason is not Refusal.INTERNAL else "failure"
            if outcome.items:
                self._metrics.refused[spec.name].labels(transport, outcome.reason.value).inc(outcome.items)
            self._limited.warning(
                f"refused:{spec.name}:{outcome.reason.value}",
                "request refused",
                signal=spec.name,
                transport=transport,
                reason=outcome.reason.value,
                detail=outcome.message,
            )
        self._metrics.requests.labels(transport, spec.name, label).inc()
