"""The bounded queue: bounds by rows and bytes, fair lanes, batching by size and by age, draining."""

from __future__ import annotations

import asyncio

from receiver.pipeline.queue import BoundedQueue, Chunk, Ticket


def chunk(table: str, rows: int, nbytes: int = 10, ticket: Ticket | None = None) -> Chunk:
    return Chunk(table, [(i,) for i in range(rows)], nbytes, ticket or Ticket())


async def test_refuses_past_rows_and_bytes_and_recovers_after_completion():
    queue = BoundedQueue(["t"], max_rows=10, max_bytes=100)
    assert queue.offer([chunk("t", 6)])
    assert not queue.offer([chunk("t", 5)])  # 11 rows > 10
    assert queue.offer([chunk("t", 4)])
    assert queue.rows == 10
    assert not queue.room_for_bytes(81)
    batch = await queue.take(max_rows=100, max_wait_s=0)
    assert len(batch.rows) == 10
    assert not queue.offer([chunk("t", 1)])  # taken but not committed still counts
    queue.complete(batch)
    assert queue.rows == 0 and queue.nbytes == 0
    assert queue.offer([chunk("t", 1)])


async def test_offer_is_all_or_nothing():
    queue = BoundedQueue(["a", "b"], max_rows=10, max_bytes=1000, max_share=1.0)
    assert not queue.offer([chunk("a", 6), chunk("b", 6)])
    assert queue.rows == 0 and queue.pending_rows("a") == 0


async def test_one_signal_cannot_take_the_whole_queue():
    queue = BoundedQueue(["spans", "points"], max_rows=100, max_bytes=10_000, max_share=0.7)
    for _ in range(7):
        assert queue.offer([chunk("points", 10)])
    assert not queue.offer([chunk("points", 10)])  # the flood is capped at 70%
    assert queue.offer([chunk("spans", 30)])  # spans still get in


def test_the_pre_decode_check_sees_the_lane_not_only_the_whole_queue():
    queue = BoundedQueue(["spans", "points"], max_rows=100, max_bytes=10_000, max_share=0.7)
    assert queue.offer([chunk("spans", 60, 6_000)])
    assert queue.room_for_bytes(2_000)  # the queue as a whole has room...
    assert not queue.room_for_bytes(2_000, "spans")  # ...the spans lane (7,000 bytes) has not
    assert queue.room_for_bytes(1_000, "spans", rows=10)
    assert not queue.room_for_bytes(1_000, "spans", rows=11)  # the lane's 70 rows
    assert queue.room_for_bytes(2_000, "points", rows=30)


async def test_writers_alternate_between_lanes():
    queue = BoundedQueue(["a", "b"], max_rows=1000, max_bytes=100_000, max_share=1.0)
    for _ in range(3):
        queue.offer([chunk("a", 5)])
        queue.offer([chunk("b", 5)])
    tables = [(await queue.take(max_rows=5, max_wait_s=0)).table for _ in range(6)]
    assert tables == ["a", "b", "a", "b", "a", "b"]


async def test_batches_fill_to_max_rows_or_leave_after_the_flush_interval():
    now = [0.0]
    queue = BoundedQueue(["t"], max_rows=1000, max_bytes=100_000, clock=lambda: now[0])
    queue.offer([chunk("t", 3)])
    waiter = asyncio.ensure_future(queue.take(max_rows=10, max_wait_s=5))
    await asyncio.sleep(0)
    assert not waiter.done()  # 3 < 10 rows and not old enough
    queue.offer([chunk("t", 4)])
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.offer([chunk("t", 3)])  # 10 rows: a full batch
    batch = await asyncio.wait_for(waiter, 5)
    assert len(batch.rows) == 10

    queue.offer([chunk("t", 2)])
    now[0] = 100.0  # the chunk is now older than the flush interval
    batch = await asyncio.wait_for(queue.take(max_rows=10, max_wait_s=5), 5)
    assert len(batch.rows) == 2


async def test_close_drains_what_is_left_then_ends():
    queue = BoundedQueue(["t"], max_rows=100, max_bytes=10_000)
    queue.offer([chunk("t", 2)])
    queue.close()
    assert not queue.offer([chunk("t", 1)])
    batch = await asyncio.wait_for(queue.take(max_rows=50, max_wait_s=60), 5)
    assert len(batch.rows) == 2
    assert await asyncio.wait_for(queue.take(max_rows=50, max_wait_s=60), 5) is None


async def test_ticket_finishes_when_its_last_chunk_completes():
    done: list[bool] = []
    ticket = Ticket(lambda: done.append(True))
    queue = BoundedQueue(["a", "b"], max_rows=100, max_bytes=10_000, max_share=1.0)
    queue.offer([chunk("a", 2, ticket=ticket), chunk("b", 2, ticket=ticket)])
    first = await queue.take(max_rows=10, max_wait_s=0)
    queue.complete(first)
    assert done == []
    queue.complete(await queue.take(max_rows=10, max_wait_s=0))
    assert done == [True]


async def test_a_stalled_lane_cannot_hold_every_writer():
    # 3 writers, share 0.5: one table may occupy ceil(1.5) = 2 writers, the third stays for the others.
    queue = BoundedQueue(["points", "spans"], max_rows=1000, max_bytes=100_000, max_share=0.5, writers=3)
    assert queue.lane_max_writers == 2
    for _ in range(5):
        queue.offer([chunk("points", 10)])
    stalled = [await queue.take(max_rows=10, max_wait_s=0) for _ in range(2)]
    assert {b.table for b in stalled} == {"points"}
    third = asyncio.ensure_future(queue.take(max_rows=10, max_wait_s=0))
    await asyncio.sleep(0)
    assert not third.done()  # points are pending, but this lane already holds its 2 writers
    queue.offer([chunk("spans", 1)])
    assert (await asyncio.wait_for(third, 1)).table == "spans"
    fourth = asyncio.ensure_future(queue.take(max_rows=10, max_wait_s=0))
    await asyncio.sleep(0)
    assert not fourth.done()
    queue.complete(stalled[0])  # a points writer is free again: the waiting writer takes points
    assert (await asyncio.wait_for(fourth, 1)).table == "points"


async def test_writer_cap_always_leaves_one_writer_and_is_off_at_full_share():
    assert BoundedQueue(["a", "b"], 10, 1000, max_share=0.7, writers=2).lane_max_writers == 1
    assert BoundedQueue(["a", "b"], 10, 1000, max_share=0.7, writers=4).lane_max_writers == 3
    assert BoundedQueue(["a", "b"], 10, 1000, max_share=1.0, writers=4).lane_max_writers == 4
    assert BoundedQueue(["a"], 10, 1000, max_share=0.5, writers=4).lane_max_writers == 4


async def test_close_drains_a_capped_lane_instead_of_stopping_writers_early():
    queue = BoundedQueue(["a", "b"], max_rows=1000, max_bytes=100_000, max_share=0.5, writers=2)
    queue.offer([chunk("a", 5)])
    queue.offer([chunk("a", 5)])
    first = await queue.take(max_rows=5, max_wait_s=0)
    queue.close()
    second = asyncio.ensure_future(queue.take(max_rows=5, max_wait_s=0))
    await asyncio.sleep(0)
    assert not second.done()  # must not return None while lane "a" still has rows
    queue.complete(first)
    batch = await asyncio.wait_for(second, 1)
    assert batch is not None and batch.table == "a"
    queue.complete(batch)
    assert await queue.take(max_rows=5, max_wait_s=0) is None
