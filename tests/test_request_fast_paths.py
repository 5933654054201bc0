"""The per-request shortcuts of the small-request path against the general code they stand in for:
ConvertOptions.for_request against dataclasses.replace, RequestScanner.charge against protobuf_charge of
a scan, and BoundedQueue's one-chunk offer against its many-chunk offer. Each shortcut must leave
exactly what the general path leaves, for every field, request shape and queue state generated here."""

from __future__ import annotations

import dataclasses
import functools
import random
import uuid

import pytest
from prometheus_client import CollectorRegistry, Counter

from receiver.convert import traces_bytes
from receiver.convert.budget import DecodeBudget, DecodeLimits
from receiver.convert.common import ConvertOptions
from receiver.convert.pricing import PriceBook
from receiver.convert.scan import COSTS, RequestScanner, protobuf_charge
from receiver.convert.traces_bytes import NATIVE_STATUS
from receiver.convert.window import TimeWindow
from receiver.frontends.signals import SIGNALS
from receiver.pipeline.queue import BoundedQueue, Chunk, Ticket
from receiver.telemetry.metrics import Children
from tests.fuzz.targets import random_request
from tests.support import hostile


def test_for_request_sets_the_three_request_fields_and_keeps_every_other():
    # two bases whose every field differs, between them and from the defaults where it can: a field
    # for_request forgot, or two fields it swapped, would show
    bases = [
        ConvertOptions(77, PriceBook(), 5, False, True, None, uuid.uuid4(), {"traces": TimeWindow(10, 20)}),
        ConvertOptions(78, PriceBook(), 6, True, False, None, uuid.uuid4(), {"logs": TimeWindow(30, 40)}),
    ]
    for field in dataclasses.fields(ConvertOptions):
        if field.name != "budget":
            assert getattr(bases[0], field.name) != getattr(bases[1], field.name), field.name
    for base in bases:
        budget, project = DecodeBudget(DecodeLimits()), uuid.uuid4()
        fast = base.for_request(123, project, budget)
        slow = dataclasses.replace(base, received_unix_nanos=123, project_id=project, budget=budget)
        assert {f.name: getattr(fast, f.name) for f in dataclasses.fields(fast)} == {
            f.name: getattr(slow, f.name) for f in dataclasses.fields(slow)
        }


@functools.cache
def _bodies() -> list[tuple[object, bytes]]:
    rng = random.Random(4)
    out = []
    for spec in SIGNALS.values():
        out += [(spec, random_request(spec, rng).SerializeToString()) for _ in range(12)]  # type: ignore[union-attr]
    shapes = [s for s in hostile.SHAPES.values() if not s.json]
    out += [(SIGNALS[s.signal], s.build(3000)) for s in shapes]
    return out


@pytest.mark.parametrize("path", sorted(COSTS))
@pytest.mark.parametrize("native_scanner", [True, False])
def test_the_charge_shortcut_equals_the_charge_of_the_scan(path, native_scanner):
    scanners = {}
    for spec, body in _bodies():
        scanner = scanners.get(spec.name)
        if scanner is None:
            scanner = scanners[spec.name] = RequestScanner(spec.request_type.DESCRIPTOR, native=native_scanner)
        for limit in (1 << 62, 5):  # whole, and stopped early
            charge, stopped = scanner.charge(body, limit, path)
            counts = scanner.scan(body, limit)
            assert (charge, stopped) == (protobuf_charge(counts, len(body), path), counts.stopped), spec.name


def test_a_one_chunk_offer_leaves_the_queue_as_the_general_offer_does():
    rng = random.Random(7)
    tables = ("a", "b", "c")
    for _ in range(200):
        queues = [
            BoundedQueue(tables, rng.randint(1, 60), rng.randint(1, 600), rng.choice((0.5, 0.7, 1.0))) for _ in (0, 1)
        ]
        queues[1].max_rows, queues[1].max_bytes = queues[0].max_rows, queues[0].max_bytes
        queues[1].lane_max_rows, queues[1].lane_max_bytes = queues[0].lane_max_rows, queues[0].lane_max_bytes
        woken = [0, 0]
        for step in range(rng.randint(1, 30)):
            table, rows, nbytes = rng.choice(tables), rng.randint(0, 12), rng.randint(0, 120)
            results = []
            for k, queue in enumerate(queues):
                queue._batch_rows = 8
                queue._wakeup = waiter = _Waiter()
                piece = Chunk(table, [(i,) for i in range(rows)], nbytes, Ticket())
                results.append(queue._offer_one(piece) if k == 0 else queue._offer_many([piece]))
                woken[k] += waiter.woken
            assert results[0] == results[1]
            assert _state(queues[0]) == _state(queues[1]) and woken[0] == woken[1], step


class _Waiter:
    """Stands in for the writers' shared future: counts the wake-ups an offer makes."""

    woken = 0

    def done(self) -> bool:
        return False

    def set_result(self, value: object) -> None:
        self.woken += 1


def _state(queue: BoundedQueue) -> tuple:
    return (
        queue.rows,
        queue.nbytes,
        dict(queue._pending_rows),
        dict(queue._held_rows),
        dict(queue._held_bytes),
        {t: [(len(c.rows), c.nbytes, c.ticket.remaining) for c in lane] for t, lane in queue._pending.items()},
    )


def test_a_one_table_submission_makes_the_chunk_the_general_split_makes():
    from receiver.pipeline.pipeline import Pipeline

    rng = random.Random(11)
    for _ in range(100):
        queues = [BoundedQueue(("a", "b"), 1000, 100_000) for _ in (0, 1)]
        step = rng.randint(1, 20)
        pipelines = [Pipeline(q, None, None, step) for q in queues]  # type: ignore[arg-type]
        done: list[int] = []
        for _ in range(rng.randint(1, 10)):
            rows = [(i,) for i in range(rng.randint(0, 30))]
            nbytes = rng.randint(0, 5000)
            one = pipelines[0].offer({"a": rows}, nbytes, lambda done=done: done.append(0))
            general = pipelines[1].offer({"a": rows, "b": []}, nbytes, lambda done=done: done.append(1))  # 2 tables
            assert one == general
            assert _state(queues[0]) == _state(queues[1])
        assert done.count(0) == done.count(1)


def test_the_scanners_weigh_only_with_a_weight_for_every_type():
    spec, body = max(_bodies(), key=lambda pair: len(pair[1]))  # holds messages of several types
    scanner = RequestScanner(spec.request_type.DESCRIPTOR)
    if not scanner.native:
        pytest.skip(f"the C extension is not built ({NATIVE_STATUS})")
    weights = scanner._weights_for("native")
    pure = RequestScanner(spec.request_type.DESCRIPTOR, native=False)
    assert scanner._scanner.weigh(body, 1 << 62, weights) == pure._scanner.weigh(body, 1 << 62, weights)
    with pytest.raises(ValueError, match="weights for"):
        scanner._scanner.weigh(body, 1 << 62, weights[:-1])
    with pytest.raises(TypeError):
        scanner._scanner.weigh(body, 1 << 62, tuple((cost, "item") for cost, _ in weights))


def test_price_plans_are_kept_per_book_and_bounded():
    book = PriceBook()
    price, plans = traces_bytes._pricing(book)
    assert traces_bytes._pricing(book) == (price, plans) and traces_bytes._pricing(book)[1] is plans
    assert traces_bytes._pricing(PriceBook())[1] is not plans  # a reloaded book starts afresh
    plans.update({("p", f"model-{i}", 20260101): None for i in range(traces_bytes.MAX_PLANS + 1)})
    assert traces_bytes._pricing(book)[1] is plans and not plans  # past the bound: cleared


def test_a_counters_adder_counts_what_inc_counts():
    registry = CollectorRegistry()
    counter = Counter("shortcut", "test", ["transport"], registry=registry)
    children = Children(counter)
    add = children.adder("grpc")
    assert children.adder("grpc") is add
    add(3)
    children("grpc").inc(2)
    children.adder("http")(1)
    assert registry.get_sample_value("shortcut_total", {"transport": "grpc"}) == 5
    assert registry.get_sample_value("shortcut_total", {"transport": "http"}) == 1


async def test_a_protobuf_request_is_decoded_on_the_loop_by_what_it_holds_not_by_its_size():
    """An LLM span with a 16 KiB prompt is cheap to decode (its scan's charge is ~20 KB) and is decoded
    on the event loop; a 16 KiB body of thousands of empty attributes (charge ~200 KB, the slowest kind
    per byte) goes to the decode pool, as every gzip body does. Both are stored either way."""
    import gzip as gzip_module

    from benchmarks.convert import loadgen_bodies
    from receiver.app.config import load_config
    from receiver.app.service import Receiver
    from receiver.frontends import ingest as ingest_module
    from receiver.frontends.outcomes import Accepted
    from receiver.frontends.signals import TRACES
    from receiver.storage.database import Database

    receiver = Receiver(load_config(None, env={}))
    receiver.database = Database("postgresql://unused@127.0.0.1:1/unused", 1.0)  # never connected
    ingest = receiver._assemble_pipeline()
    pooled: list[int] = []
    run = ingest._decode_pool.run

    async def counting(fn, *args):
        pooled.append(len(args[1]))
        return await run(fn, *args)

    ingest._decode_pool.run = counting  # type: ignore[method-assign]
    prompt = max(loadgen_bodies(1, large_share=1.0), key=len)
    dense = hostile.SHAPES["empty_attributes"].build(16 * 1024)
    assert len(prompt) > ingest_module.INLINE_DECODE_MAX_BYTES >= len(dense)  # by size, the other way round
    try:
        for body, gzip, expect_pooled in ((prompt, False, False), (dense, False, True), (prompt, True, True)):
            pooled.clear()
            sent = gzip_module.compress(body) if gzip else body
            outcome = await ingest.handle(TRACES, sent, json=False, gzip=gzip, transport="grpc")
            assert isinstance(outcome, Accepted) and outcome.accepted == 1, outcome
            assert bool(pooled) == expect_pooled, (len(body), gzip)
    finally:
        receiver.decode_pool.shutdown()
