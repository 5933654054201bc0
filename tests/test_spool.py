"""The spool on a real disk: framing, recovery of torn and corrupt segments, fall-behind and replay, and
a small file system of its own filled up (full disk, free-space floor, recovery once stored)."""

from __future__ import annotations

import asyncio

import pytest

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.pipeline.spool import HEADER, MAGIC, Spool, SpoolDiskFull, frame, scan
from receiver.telemetry.metrics import Metrics
from tests.support.smallfs import free_bytes, small_filesystem
from tests.support.wait import wait_until


def test_scan_finds_intact_frames_around_damage():
    frames = [frame(SpoolRecord(signal="traces", request=bytes([i]) * 50).SerializeToString()) for i in range(5)]
    data = bytearray(b"".join(frames))
    second = len(frames[0])
    data[second + HEADER.size + 10] ^= 0x01  # bit flip in record 1's payload
    data += frames[0][:20]  # torn tail
    result = scan(bytes(data))
    assert result.records == 4
    assert result.bad == [(second, second + len(frames[1])), (sum(map(len, frames)), len(data))]


def test_scan_resynchronises_after_a_corrupt_length():
    good = frame(b"x" * 30)
    broken = bytearray(frame(b"y" * 30))
    broken[4:8] = (10**9).to_bytes(4, "little")  # absurd length
    result = scan(bytes(broken) + good)
    assert result.records == 1 and result.good[0][0] == len(broken)
    assert MAGIC in bytes(broken)


class Harness:
    """A spool whose queue can be made full; records materialize to one row per request byte."""

    def __init__(self, tmp_path, accept: bool = True, **settings) -> None:
        self.accept = accept
        self.handed: list[bytes] = []
        self.pending_done: list = []
        self.metrics = Metrics()
        self.spool = Spool(
            tmp_path / "spool",
            hand_over=self.hand_over,
            materialize=self._materialize,
            can_hand_over=lambda n: self.accept,
            metrics=self.metrics,
            **{"max_bytes": 10_000, "segment_bytes": 300, **settings},
        )

    @staticmethod
    async def _materialize(record):
        return {"t": [(record.request,)]}, 1

    def write_errors(self, reason: str) -> float:
        return self.metrics.registry.get_sample_value("observatory_spool_write_errors_total", {"reason": reason}) or 0

    def hand_over(self, rows, nbytes, on_done) -> bool:
        if not self.accept:
            return False
        self.handed.append(rows["t"][0][0])
        self.pending_done.append(on_done)
        return True

    def commit_all(self) -> None:
        for done in self.pending_done:
            done()
        self.pending_done.clear()


async def test_falls_behind_when_the_queue_is_full_and_replays_in_order(tmp_path):
    h = Harness(tmp_path)
    await h.spool.open()
    await h.spool.append(SpoolRecord(signal="t", request=b"a"), {"t": [(b"a",)]}, 1)
    h.accept = False
    await h.spool.append(SpoolRecord(signal="t", request=b"b"), {"t": [(b"b",)]}, 1)
    assert h.spool.behind
    h.accept = True
    await h.spool.append(SpoolRecord(signal="t", request=b"c"), {"t": [(b"c",)]}, 1)  # stays on disk: behind
    for _ in range(200):
        if not h.spool.behind:
            break
        await asyncio.sleep(0.01)
    assert h.handed == [b"a", b"b", b"c"]
    assert h.spool.replayed_records == 2
    await h.spool.close()


async def test_segments_are_deleted_once_committed_and_kept_otherwise(tmp_path):
    h = Harness(tmp_path)
    await h.spool.open()
    for i in range(20):
        await h.spool.append(SpoolRecord(signal="t", request=bytes([i]) * 40), {"t": [(bytes([i]),)]}, 1)
    assert h.spool.segment_count > 3
    h.commit_all()
    assert h.spool.segment_count == 1  # only the active segment is left
    await h.spool.close()
    assert len(list((tmp_path / "spool").glob("*.spool"))) == 1


async def test_uncommitted_records_come_back_after_a_restart(tmp_path):
    h = Harness(tmp_path)
    await h.spool.open()
    for i in range(5):
        await h.spool.append(SpoolRecord(signal="t", request=bytes([65 + i])), {"t": [(bytes([65 + i]),)]}, 1)
    await h.spool.close()  # handed over but never committed: a crash, as far as the disk knows
    again = Harness(tmp_path)
    report = await again.spool.open()
    assert report.records == 5
    for _ in range(200):
        if len(again.handed) == 5:
            break
        await asyncio.sleep(0.01)
    assert again.handed == [b"A", b"B", b"C", b"D", b"E"]
    await again.spool.close()


async def test_full_spool_refuses(tmp_path):
    h = Harness(tmp_path, accept=False)
    h.spool.max_bytes = 200
    await h.spool.open()
    from receiver.pipeline.spool import SpoolFull

    await h.spool.append(SpoolRecord(signal="t", request=b"x" * 100), None, 1)
    try:
        await h.spool.append(SpoolRecord(signal="t", request=b"x" * 100), None, 1)
    except SpoolFull as exc:
        assert "spool.max_bytes" in str(exc)
    else:
        raise AssertionError("a full spool must refuse")
    await h.spool.close()


RECORD = b"r" * 10_000


async def fill_until_refused(h: Harness) -> tuple[int, SpoolDiskFull]:
    """Append 10 KB records (the breaker is open: none is handed over) until the disk refuses one."""
    appended = 0
    while True:
        try:
            await h.spool.append(SpoolRecord(signal="t", request=RECORD), {"t": [(RECORD,)]}, 1)
        except SpoolDiskFull as exc:
            return appended, exc
        appended += 1
        assert appended < 1000, "the small file system never filled"


async def store_everything(h: Harness, records: int) -> None:
    """The database is back: every spooled record is replayed, then committed."""
    h.accept = True
    await wait_until(lambda: _true(len(h.handed) >= records), what=lambda: f"{len(h.handed)} of {records} replayed")
    h.commit_all()


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
def small_fs(tmp_path):
    with small_filesystem(tmp_path / "small", 1024 * 1024) as path:
        yield path


async def test_full_disk_refuses_then_recovers_once_what_it_holds_is_stored(small_fs):
    # One segment could hold far more than the file system (as with the default 64 MiB): the disk fills
    # inside the active segment, which must still be reclaimed once its rows are stored.
    h = Harness(small_fs, accept=False, max_bytes=100 * 2**20, segment_bytes=64 * 2**20)
    await h.spool.open()
    appended, refusal = await fill_until_refused(h)
    assert appended > 50 and refusal.reason == "disk_full" and "No space left on device" in str(refusal)
    assert h.spool.disk_full and h.spool.refusing_for_disk()
    assert free_bytes(small_fs) < len(RECORD)
    with pytest.raises(SpoolDiskFull):  # refused at once, no write attempted
        await h.spool.append(SpoolRecord(signal="t", request=RECORD), None, 1)
    assert h.write_errors("disk_full") == 2
    assert h.spool.near_full()

    await store_everything(h, appended)
    assert h.handed == [RECORD] * appended
    assert h.spool.segment_count <= 1, "the segment that filled the disk was deleted once stored"
    assert h.spool.free_bytes() > 900 * 1024  # measured now (as /health and the breaker do): room again
    assert not h.spool.refusing_for_disk()
    await h.spool.append(SpoolRecord(signal="t", request=RECORD), {"t": [(b"new",)]}, 1)  # accepted again
    assert not h.spool.disk_full and h.handed[-1] == b"new"
    await h.spool.close()


async def test_min_free_bytes_is_never_crossed_and_is_checked_per_interval_not_per_request(small_fs):
    floor = 512 * 1024
    h = Harness(small_fs, accept=False, max_bytes=100 * 2**20, segment_bytes=64 * 2**20, min_free_bytes=floor)
    await h.spool.open()
    appended, refusal = await fill_until_refused(h)
    assert refusal.reason == "min_free_bytes" and "spool.min_free_bytes is 524288" in str(refusal)
    assert free_bytes(small_fs) >= floor, "the spool never drives its file system below the floor"
    assert appended > 20 and h.spool.space.measurements < appended / 2, (h.spool.space.measurements, appended)
    assert h.write_errors("min_free_bytes") == 1 and h.write_errors("disk_full") == 0

    await store_everything(h, appended)
    await h.spool.append(SpoolRecord(signal="t", request=RECORD), None, 1)
    assert not h.spool.disk_full
    await h.spool.close()


async def test_a_spool_that_keeps_up_reclaims_its_active_segment_when_the_disk_fills(small_fs):
    """Everything written is already stored, yet the active segment filled the disk: reclaimed at once."""
    h = Harness(small_fs, accept=True, max_bytes=100 * 2**20, segment_bytes=64 * 2**20)
    await h.spool.open()
    appended = 0
    while True:
        try:
            await h.spool.append(SpoolRecord(signal="t", request=RECORD), {"t": [(b"x",)]}, 1)
        except SpoolDiskFull:
            break
        h.commit_all()
        appended += 1
    assert h.spool.segment_count <= 1 and free_bytes(small_fs) > 900 * 1024
    await h.spool.append(SpoolRecord(signal="t", request=RECORD), {"t": [(b"x",)]}, 1)  # no waiting needed
    assert appended > 50
    await h.spool.close()
