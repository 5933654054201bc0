"""The decode budget, the scanners and the decode memory pool, on their own (no receiver process).

The end-to-end behaviour (real receiver, real clients) is in tests/test_hostile_requests.py; the scanners'
parity with upb runs with every differential case in tests/test_native_convert.py and the fuzz targets.
"""

from __future__ import annotations

import dataclasses

import pytest

from receiver.app.config import LimitsConfig
from receiver.convert import scan
from receiver.convert.budget import MIB, RESERVE_STEP, DecodeBudget, DecodeLimits, LimitExceeded, MemoryBusy
from receiver.convert.common import ConvertOptions
from receiver.frontends.decode import MalformedRequest, decode_request
from receiver.frontends.signals import LOGS, METRICS, TRACES
from receiver.pipeline.memory import MemoryGuard
from tests.support import hostile
from tests.support.otlp import gauge, log_record, log_request, metric_request, number_point


def test_the_config_defaults_are_the_budget_defaults():
    config, limits = LimitsConfig(), DecodeLimits()
    assert config.max_items_per_request == limits.max_items
    assert config.max_containers_per_request == limits.max_containers
    assert config.max_request_memory_mib * MIB == limits.max_memory_bytes
    assert config.max_decode_amplification == limits.amplification


@pytest.mark.parametrize(
    ("charge", "reason", "key"),
    [
        ({"items": 11}, "too_many_items", "limits.max_items_per_request"),
        ({"containers": 21}, "too_many_containers", "limits.max_containers_per_request"),
        ({"nbytes": 2 * MIB + 1}, "request_memory", "limits.max_request_memory_mib"),
    ],
)
def test_a_charge_past_a_limit_raises_at_once_naming_its_key(charge, reason, key):
    budget = DecodeBudget(DecodeLimits(max_items=10, max_containers=20, max_memory_bytes=2 * MIB))
    budget.charge(items=10, containers=20, nbytes=2 * MIB)  # exactly at the limits: fine
    at_limit = {"items": 10, "containers": 20, "nbytes": 2 * MIB}
    with pytest.raises(LimitExceeded) as refused:
        budget.charge(**{name: value - at_limit[name] for name, value in charge.items()})
    assert refused.value.reason == reason and key in str(refused.value)


def test_small_bodies_may_take_16_mib_and_larger_ones_k_times_their_size_up_to_the_cap():
    limits = DecodeLimits(max_memory_bytes=256 * MIB, amplification=100)
    assert limits.memory_bound(1000) == 100_000 + 16 * MIB
    assert limits.memory_bound(2 * MIB) == 216 * MIB
    assert limits.memory_bound(64 * MIB) == 256 * MIB
    budget = DecodeBudget(limits)
    budget.set_body(MIB)
    with pytest.raises(LimitExceeded, match=r"limits\.max_decode_amplification"):
        budget.charge(nbytes=116 * MIB + 1)


class Pool:
    def __init__(self, room: int) -> None:
        self.room, self.reserved = room, 0

    def reserve(self, nbytes: int, held: int) -> bool:
        if self.reserved + nbytes > self.room:
            return False
        self.reserved += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes


def test_the_pool_is_reserved_as_charged_released_on_close_and_an_abandoned_decode_stops():
    pool = Pool(10 * MIB)
    budget = DecodeBudget(DecodeLimits(), pool)
    budget.charge(nbytes=6 * MIB)
    other = DecodeBudget(DecodeLimits(), pool)
    with pytest.raises(MemoryBusy, match=r"limits\.memory_limit_mib"):
        other.charge(nbytes=5 * MIB)
    budget.close()
    budget.close()  # idempotent
    assert pool.reserved == 0
    with pytest.raises(MemoryBusy, match="abandoned"):
        budget.charge(nbytes=1)


def test_the_memory_guard_lets_one_request_through_alone_and_none_past_the_limit_beside_others():
    guard = MemoryGuard(100 * MIB, sample=lambda: 90 * MIB)
    assert guard.reserve(50 * MIB, held=0)  # alone: always (so one request can always make progress)
    assert guard.reserve(50 * MIB, held=50 * MIB)  # still alone
    assert not guard.reserve(MIB, held=0)  # another one: 90 MiB RSS + 100 MiB reserved is over 100 MiB
    guard.release(100 * MIB)
    assert guard.reserve(5 * MIB, held=0) and not guard.reserve(6 * MIB, held=0)
    assert MemoryGuard(0, sample=lambda: 1 << 40).reserve(1 << 40, held=0)  # 0 = no limit


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"a":[{},{"b":"x{["},[[1,2],{"c":"\\\\\\"{"}]]}',
        b'["\\"]{[", {"k": [{}, {}]}]',
        b"]]]}}}{",
        hostile.json_empty_resources(2000),
        hostile.json_deep_nesting(5000),
    ],
)
def test_the_json_scanners_count_alike(body):
    """On JSON that parses, up to its end (past an unterminated string they may differ: orjson stops there)."""
    native = scan.scan_json(body)
    pure_structure = scan._JSON_STRING.sub(b'""', body)
    assert (native.objects, native.arrays) == (pure_structure.count(b"{"), pure_structure.count(b"["))


@pytest.mark.parametrize(
    ("message", "spec"),
    [
        (
            metric_request([gauge("m", [number_point(1.5, attributes={"k": "v"}), number_point(2)])], "svc"),
            METRICS,
        ),
        (log_request([log_record("hello", attributes={"a": 1}) for _ in range(3)], "svc"), LOGS),
    ],
)
def test_metrics_and_logs_requests_are_counted_like_traces(message, spec):
    body = message.SerializeToString()
    scanners = {native: scan.RequestScanner(spec.request_type.DESCRIPTOR, native=native) for native in (True, False)}
    counts = {native: scanner.scan(body) for native, scanner in scanners.items()}
    assert counts[True] == counts[False]
    charge = scan.protobuf_charge(counts[True], len(body), "upb")
    items = 2 if spec is METRICS else 3
    assert charge.items == items and charge.containers == (3 if spec is METRICS else 2)


def test_hostile_shapes_are_refused_before_any_decoder_runs():
    limits = DecodeLimits()
    for name in ("empty_resources", "empty_events", "empty_points", "empty_records", "json_empty_resources"):
        shape = hostile.SHAPES[name]
        spec = {"traces": TRACES, "metrics": METRICS, "logs": LOGS}[shape.signal]
        budget = DecodeBudget(limits)
        options = dataclasses.replace(ConvertOptions(), budget=budget)
        with pytest.raises(LimitExceeded):
            decode_request(spec, shape.build(4 * MIB), shape.json, options)


def test_nesting_past_upbs_limit_is_malformed_on_every_path():
    body = hostile._one_span(b"\x4a" + bytes([0])) + b"\x9b\x06" * 101  # 101 nested groups, never closed
    for native in (True, False):
        options = dataclasses.replace(ConvertOptions(), native=native, budget=DecodeBudget(DecodeLimits()))
        with pytest.raises(MalformedRequest, match="at byte"):
            decode_request(TRACES, body, False, options)



def test_an_unpooled_allowance_is_charged_but_not_reserved_and_the_limits_still_hold():
    pool = Pool(10 * MIB)
    budget = DecodeBudget(DecodeLimits(), pool, unpooled_bytes=256 * 1024)
    budget.set_body(1000)
    budget.charge(nbytes=200 * 1024)
    assert pool.reserved == 0 and budget.nbytes == 200 * 1024  # within the allowance: the pool untouched
    budget.charge(nbytes=100 * 1024)  # past it: reserved from the pool, as without an allowance
    assert pool.reserved == RESERVE_STEP
    budget.close()
    assert pool.reserved == 0
    # the allowance never lets a charge past the request's own bound
    small = DecodeLimits(max_memory_bytes=100 * 1024)
    tight = DecodeBudget(small, pool, unpooled_bytes=256 * 1024)
    with pytest.raises(LimitExceeded, match=r"limits\.max_request_memory_mib"):
        tight.charge(nbytes=150 * 1024)
    with pytest.raises(LimitExceeded):
        DecodeBudget(DecodeLimits(), pool, unpooled_bytes=64 * MIB).charge(nbytes=256 * MIB + 1)
