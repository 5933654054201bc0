"""The spool on a real disk: framing, recovery of torn and corrupt segments, fall-behind and replay."""

from __future__ import annotations

import asyncio

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.pipeline.spool import HEADER, MAGIC, Spool, frame, scan


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

    def __init__(self, tmp_path, accept: bool = True) -> None:
        self.accept = accept
        self.handed: list[bytes] = []
        self.pending_done: list = []
        self.spool = Spool(
            tmp_path / "spool",
            max_bytes=10_000,
            segment_bytes=300,
            hand_over=self.hand_over,
            materialize=self._materialize,
            can_hand_over=lambda n: self.accept,
        )

    @staticmethod
    async def _materialize(record):
        return {"t": [(record.request,)]}, 1

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
