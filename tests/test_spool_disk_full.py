"""An operator's worst day, for real: the spool on a small file system of its own, steady OTLP/gRPC load,
the database stopped until the spool's disk is full and clients are refused, then started again.

It must hold: every acknowledged span stored exactly once; while the disk is full only retryable refusals
(UNAVAILABLE + RetryInfo), /health says `disk_full` with the free bytes, the write-error metric counts it;
and once the backlog is stored the receiver accepts again by itself, without a restart. Every step is
awaited as an event (a /health or metrics poll), never a fixed sleep; the timeline is printed.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import orjson
import pytest

from receiver.storage.embedded import EmbeddedPostgres
from tests.conftest import create_database
from tests.support.cleanup import throwaway_dir
from tests.support.load import SteadyLoad
from tests.support.process import ReceiverProcess, free_port
from tests.support.smallfs import small_filesystem
from tests.support.wait import wait_until
from tests.test_reliability import assert_exactly_once

SPOOL_FS_BYTES = 3 * 1024 * 1024


@pytest.fixture
def stoppable_cluster():
    """A PostgreSQL cluster of this test's own, which the test stops and starts."""
    root = throwaway_dir("diskfull")
    cluster = EmbeddedPostgres(root / "pg", port=free_port())
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []

    def mark(self, what: str) -> float:
        now = time.monotonic() - self.start
        self.events.append((now, what))
        return now

    def __str__(self) -> str:
        return "\n".join(f"  t={t:6.2f}s  {what}" for t, what in self.events)


async def health(proc: ReceiverProcess) -> dict:
    _, text = await proc.get("/health")
    return orjson.loads(text)


async def test_spool_disk_full_during_an_outage_recovers_by_itself(stoppable_cluster, tmp_path):
    database = await create_database(stoppable_cluster)
    with small_filesystem(tmp_path / "spoolfs", SPOOL_FS_BYTES) as spool_fs:
        # Default breaker (2 s cool-down doubling to 30 s) and segment size (64 MiB: the disk fills inside
        # the first segment); min_free_bytes off, so the disk really runs out (the floor has its own test).
        proc = ReceiverProcess(
            database.dsn,
            tmp_path,
            pipeline__durability="spool",
            spool__dir=str(spool_fs / "spool"),
            spool__min_free_bytes=0,
        )
        await proc.start()
        timeline = Timeline()
        service = f"diskfull-{uuid.uuid4().hex[:6]}"
        load = SteadyLoad(proc, service, spans_per_request=50, interval_s=0.05, senders=2)
        load.start()
        seen: dict[str, object] = {}
        try:
            await wait_until(lambda: _ready(len(load.result.acked) >= 1000), what="load under way")
            await asyncio.to_thread(stoppable_cluster.stop, "fast")
            timeline.mark("database stopped")

            async def disk_full() -> bool:
                spool = (await health(proc))["spool"]
                seen.update(spool)
                return spool["disk_full"]

            await wait_until(disk_full, timeout=90, interval=0.1, what=lambda: f"spool disk full; spool={seen}")
            timeline.mark(f"/health: spool disk_full, free_bytes={seen['free_bytes']}, bytes={seen['bytes']}")
            assert seen["disk_full_reason"] == "disk_full" and seen["free_bytes"] < 64 * 1024
            refused_before = load.result.refusals["UNAVAILABLE"]
            await wait_until(
                lambda: _ready(load.result.refusals["UNAVAILABLE"] >= refused_before + 3),
                what="clients refused while the disk is full",
            )
            timeline.mark(f"{load.result.refusals['UNAVAILABLE']} retryable refusals so far")
            assert await proc.metric('observatory_spool_write_errors_total{reason="disk_full"}') > 0
            assert await proc.metric("observatory_spool_disk_full") == 1

            await asyncio.to_thread(stoppable_cluster.start)
            started = timeline.mark("database started")

            async def breaker_closed() -> bool:
                return (await health(proc))["breaker"]["state"] == "closed"

            await wait_until(breaker_closed, timeout=60, what="breaker closed after the restart")
            closed = timeline.mark("breaker closed")

            # The segment that filled the disk (the first: 64 MiB never fit) is deleted once all it holds
            # is stored; the receiver then writes a new one.
            first_segment = spool_fs / "spool" / "segment-000000000001.spool"

            async def backlog_stored() -> bool:
                spool = (await health(proc))["spool"]
                seen.update(spool)
                return spool["backlog_bytes"] == 0 and not first_segment.exists()

            await wait_until(backlog_stored, timeout=60, what=lambda: f"spooled backlog stored; spool={seen}")
            stored = timeline.mark("backlog stored, the segment that filled the disk deleted")
            acked_then = len(load.result.acked)
            await wait_until(
                lambda: _ready(len(load.result.acked) > acked_then), timeout=60, what="a new request accepted again"
            )
            accepted = timeline.mark("a new request accepted again (clients retry after RetryInfo's delay)")
            await wait_until(
                lambda: _ready(len(load.result.acked) >= acked_then + 500),
                timeout=60,
                what="new requests accepted again",
            )
            timeline.mark("500 more spans accepted")
            assert not (await health(proc))["spool"]["disk_full"]
        finally:
            result = await load.stop()
        await assert_exactly_once(database, service, result.acked)
        timeline.mark(f"{len(result.acked)} acknowledged spans all stored exactly once")
        assert set(result.refusals) == {"UNAVAILABLE"} and result.lost_answers == 0, result.refusals
        assert result.retry_delays and all(0 < d <= 30 for d in result.retry_delays)
        print(
            f"\nspool disk full during an outage ({SPOOL_FS_BYTES // 2**20} MiB tmpfs):\n{timeline}\n"
            f"  database start -> breaker closed {closed - started:.2f}s, -> backlog stored {stored - started:.2f}s, "
            f"-> accepting again {accepted - started:.2f}s; refusals {dict(result.refusals)}"
        )
        assert await proc.stop() == 0


async def _ready(value: bool) -> bool:
    return value
