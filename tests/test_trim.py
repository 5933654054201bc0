"""receiver.pipeline.trim: memory a drained backlog freed goes back to the system, and only then."""

from __future__ import annotations

import pytest

from receiver.pipeline.memory import current_rss_bytes
from receiver.pipeline.trim import AllocatorTrimmer, trim_available, trim_now

pytestmark = pytest.mark.skipif(not trim_available(), reason="the C library has no malloc_trim (not glibc)")

MIB = 1024 * 1024


def _fragmented_heap(total_bytes: int, keep_every: int) -> list[str]:
    """Strings as queued rows hold them (~1 KB each: glibc's heap, not Python's small-object arenas),
    every `keep_every`-th one kept alive so no freed run reaches the top of the heap, where free() alone
    would give it back."""
    strings = [f"{i:08d}" * 140 for i in range(total_bytes // 1120)]
    return strings[::keep_every]


def test_trim_returns_the_pages_a_freed_backlog_leaves_in_the_heap():
    trim_now()  # start from a trimmed heap
    baseline = current_rss_bytes()
    kept = _fragmented_heap(96 * MIB, keep_every=64)
    after_free = current_rss_bytes()
    assert after_free - baseline > 48 * MIB, "free() alone gave the backlog back: the test shows nothing"
    freed = trim_now()
    assert freed > 48 * MIB, f"malloc_trim handed back {freed / MIB:.1f} MiB of ~{(after_free - baseline) / MIB:.0f}"
    assert current_rss_bytes() - baseline < 24 * MIB
    assert len(kept) > 1000


async def test_the_trimmer_waits_for_the_queue_to_drain_and_for_memory_worth_returning():
    queued = {"bytes": 50 * MIB}
    rss = {"bytes": 100 * MIB}
    trims: list[int] = []
    trimmer = AllocatorTrimmer(lambda: queued["bytes"], 10 * MIB, lambda: rss["bytes"], trims.append)
    rss["bytes"] += 64 * MIB  # a backlog grew the process
    assert await trimmer.maybe_trim() is None, "trimmed while the queue still held the backlog"
    queued["bytes"] = 1 * MIB  # drained
    kept = _fragmented_heap(64 * MIB, keep_every=64)
    freed = await trimmer.maybe_trim()
    assert freed is not None and freed > 24 * MIB and trims == [freed]
    rss["bytes"] = current_rss_bytes() + 8 * MIB  # grown a little since: not worth a trim
    assert await trimmer.maybe_trim() is None and len(trims) == 1
    assert len(kept) > 500
