"""The transport-independent path of one export request: limits, decode, convert, admit.

Both front ends call `Ingest.handle` with the raw body and get an `Outcome`; they only differ in how
they read bodies and how they write the answer (`status.py`). Cheap refusals come first: a body that
is too large or cannot fit the queue is refused before a single byte of it is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf.message import Message

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.convert.common import Converted, ConvertOptions, WireFormatError
from receiver.convert.window import TimeWindow
from receiver.frontends.auth import ApiKeyAuthenticator
from receiver.frontends.decode import (
    MalformedRequest,
    RequestTooLarge,
    convert_protobuf,
    gunzip_bounded,
    parse_json,
    parse_protobuf,
)
from receiver.frontends.outcomes import Accepted, Outcome, Refusal, Refused
from receiver.frontends.signals import SIGNALS, SignalSpec
from receiver.pipeline.pipeline import Admission, Pipeline
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Children, Metrics

# Reasons of items refused for their time (receiver.convert.window), as metric labels.
REASON_TOO_OLD = "older_than_retention"
REASON_TOO_NEW = "beyond_future_skew"
FOOTPRINT_WEIGHT = 0.2  # weight of the newest request in the rows-per-byte estimate
MEMORY_MESSAGE = "receiver memory is above limits.memory_limit_mib; retry later"
DISK_FULL_MESSAGE = "receiver spool's disk is full (or below spool.min_free_bytes); retry later"


@dataclass(slots=True)
class _Decoded:
    converted: Converted  # rejections include the items OTLP/JSON parsing refused
    protobuf: bytes | None  # the request as protobuf when at hand (the spool stores it)
    message: Message | None  # else the parsed message


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
        authenticator: ApiKeyAuthenticator | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._authenticator = authenticator
        self._metrics = metrics
        self._limits = limits
        self._options = options  # called per request: pricing can be reloaded (SIGHUP)
        # Rows per body byte, per (signal, OTLP/JSON?), a moving average: the pre-decode room check.
        self._rows_per_byte: dict[tuple[str, bool], float] = {}
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

    def authenticate(self, spec: SignalSpec, headers: Mapping[str, str], transport: str) -> Refused | None:
        """Check the request's API key (auth.mode = api_key) before its body is even read."""
        if self._authenticator is None:
            return None
        refused = self._authenticator.check(headers)
        if refused is not None:
            self._metrics.auth_refused.labels(refused.label).inc()
            self._count(spec, transport, refused)
        return refused

    async def handle(self, spec: SignalSpec, body: bytes, *, json: bool, gzip: bool, transport: str) -> Outcome:
        received_unix_nanos = time.time_ns()
        try:
            outcome = await self._handle(
                spec, body, json=json, gzip=gzip, transport=transport, received=received_unix_nanos
            )
        except Exception as exc:  # a defect must cost one request, never the process
            self._log.exception("request failed inside the receiver", signal=spec.name, transport=transport)
            outcome = Refused(Refusal.INTERNAL, f"internal error while handling the request: {exc}")
        self._count(spec, transport, outcome)
        return outcome

    def _refuse_busy(self, reason: Refusal, message: str, items: int = 0, cause: str = "") -> Refused:
        retry_after = max(self._limits.retry_after_s, self._pipeline.breaker.cooldown_remaining())
        return Refused(reason, message, items, retry_after_s=retry_after, cause=cause)

    async def _handle(
        self, spec: SignalSpec, body: bytes, *, json: bool, gzip: bool, transport: str, received: int
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
        if not self._room_for(spec, body, json):
            return self._refuse_no_room()
        if self._pipeline.memory_exhausted():
            return self._refuse_busy(Refusal.OVERLOADED, MEMORY_MESSAGE, cause="memory")
        # The receive time goes in through the options: conversion stays pure (logs without any time use it).
        options = replace(self._options(), received_unix_nanos=received)
        try:
            if gzip:
                body = gunzip_bounded(body, limits.max_request_bytes)
                if not self._room_for(spec, body, json):
                    return self._refuse_no_room()
            decoded = self._decode_and_convert(spec, body, json, options)
        except RequestTooLarge as exc:
            return Refused(Refusal.TOO_LARGE, str(exc))
        except MalformedRequest as exc:
            return Refused(Refusal.MALFORMED, str(exc))

        converted = decoded.converted
        self._learn_footprint(spec, json, len(body), len(converted.rows))
        record = None
        if self._pipeline.durable:
            payload = decoded.protobuf if decoded.protobuf is not None else decoded.message.SerializeToString()
            window = options.window(spec.name)  # stored, so a replay converts exactly as now
            record = SpoolRecord(
                signal=spec.name,
                request=payload,
                received_unix_nano=received,
                window_retention_s=window.retention_s or 0,
                window_max_future_skew_s=window.max_future_skew_s or 0,
            )
        del decoded
        self._count_altered(spec, converted.stats)
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
        nbytes = len(body) + len(rows) * limits.row_overhead_bytes
        admission = await self._pipeline.submit({spec.table: rows}, nbytes, record)
        if admission is not Admission.ACCEPTED:
            self._metrics.enqueue_failed[spec.name].inc(len(rows))
            if admission is Admission.CLOSED:
                return self._refuse_busy(Refusal.SHUTTING_DOWN, "receiver is shutting down; retry later", len(rows))
            message = {
                Admission.FULL: self._full_message(),
                Admission.MEMORY: MEMORY_MESSAGE,
                Admission.SPOOL_ERROR: "receiver cannot write its spool (I/O error); retry later",
                Admission.DISK_FULL: DISK_FULL_MESSAGE,
            }[admission]
            return self._refuse_busy(Refusal.OVERLOADED, message, len(rows), cause=admission.value)
        if rows:
            self._accepted[spec.name](transport).inc(len(rows))
        return Accepted(len(rows), rejected, message)

    def _decode_and_convert(self, spec: SignalSpec, body: bytes, json: bool, options: ConvertOptions) -> _Decoded:
        """Body -> rows; raises MalformedRequest.

        Protobuf bodies of a signal with `convert_bytes` (traces: the native converter) are decoded and
        converted in one step. OTLP/JSON is parsed item by item first (an unrepresentable item refuses
        only itself), then converted the same way from its protobuf serialization, so every request of
        the signal goes through one converter."""
        if json:
            parsed = parse_json(spec.request_type, spec.envelope, body)
            converted: Converted | None = None
            protobuf = None
            if spec.convert_bytes is not None:
                protobuf = parsed.message.SerializeToString()
                try:
                    converted = spec.convert_bytes(protobuf, options)
                except WireFormatError:
                    # Only a limit upb's parser has and its serializer lacks (nesting depth) gets here.
                    converted = None
            if converted is None:
                converted = spec.convert(parsed.message, options)
            converted.rejected += parsed.rejected
            converted.errors[:0] = parsed.errors  # parse errors first, as the items came
            return _Decoded(converted, protobuf, parsed.message)
        if spec.convert_bytes is not None:
            return _Decoded(convert_protobuf(spec.request_type, spec.convert_bytes, body, options), body, None)
        request = parse_protobuf(spec.request_type, body)
        return _Decoded(spec.convert(request, options), body, None)

    def _room_for(self, spec: SignalSpec, body: bytes, json: bool) -> bool:
        """Would this body's rows fit, judged before decoding it? Rows are charged their share of the
        body plus `row_overhead_bytes` each; the row count is estimated from the bodies seen so far."""
        rows = int(len(body) * self._rows_per_byte.get((spec.name, json), 0.0))
        return self._pipeline.room_for_bytes(len(body) + rows * self._limits.row_overhead_bytes, spec.table, rows)

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

    def materialize(self, record: SpoolRecord) -> tuple[Mapping[str, Sequence[tuple[Any, ...]]], int] | None:
        """A spooled request -> rows again (replay after a restart or after the spool fell behind)."""
        spec = SIGNALS.get(record.signal)
        if spec is None:
            self._log.error("spool record of an unknown signal skipped", signal=record.signal)
            return None
        # The receive time and window the request was acknowledged with: the same rows as the live path.
        base = self._options()
        window = TimeWindow(record.window_retention_s or None, record.window_max_future_skew_s or None)
        options = replace(
            base,
            received_unix_nanos=record.received_unix_nano,
            windows={**base.windows, spec.name: window},
        )
        try:
            converted = self._decode_and_convert(spec, record.request, False, options).converted
        except MalformedRequest as exc:
            self._log.error("unreadable spool record skipped", signal=record.signal, error=str(exc))
            return None
        rows = converted.rows
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
                detail=outcome.message,
            )
        self._requests(transport, spec.name, label).inc()
