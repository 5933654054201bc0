"""The write-ahead spool (pipeline.durability = "spool"): accepted requests survive kill -9 and
database outages up to `spool.max_bytes`.

- append: every accepted request is framed (see proto/spool.proto), written to the active segment and
  fsynced before its acknowledgement. Concurrent appends share one write + fsync (group commit).
- hand-over: right after the fsync, in append order, each record's rows are offered to the in-memory
  queue. If that fails (queue full, breaker open) the spool "falls behind": from then on new records
  stay on disk only, and the replayer reads them back (decode -> convert again) when there is room.
- deletion: a sealed segment is deleted once every record in it was handed over and committed.
- recovery: on start every segment is scanned; intact records are replayed (already-committed rows
  are skipped by the idempotent insert); a torn or corrupt region is found by its checksum, copied to
  `quarantine/`, reported, and cut out of the segment — start-up never fails because of it.

Knows nothing of OTLP: records carry opaque request bytes; the app supplies `materialize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Metrics

MAGIC = b"LOS\x01"
HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of (length bytes + payload)
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 31
_SUFFIX = ".spool"

Rows = Mapping[str, Sequence[tuple[Any, ...]]]
# (rows by table, nbytes, on_done) -> True if the rows were taken into the queue
HandOver = Callable[[Rows, int, Callable[[], None]], bool]
# a record read back from disk -> (rows by table, nbytes), or None if it holds nothing storable; raises
# MaterializeLater when it cannot be decoded now (memory) but can later
Materialize = Callable[[SpoolRecord], Awaitable[tuple[Rows, int] | None]]


class MaterializeLater(Exception):
    """A record that cannot be materialized now (the receiver's decode memory is in use): try again."""


def frame(payload: bytes) -> bytes:
    length = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little")))
    return HEADER.pack(MAGIC, length, crc) + payload


@dataclass
class ScanResult:
    records: int = 0
    good: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of intact frames
    bad: list[tuple[int, int]] = field(default_factory=list)  # byte ranges that are not intact frames


def scan(data: bytes) -> ScanResult:
    """Find the intact frames in a segment's bytes; everything else is a bad range."""
    result = ScanResult()
    pos, size = 0, len(data)
    bad_start: int | None = None
    while pos < size:
        ok = False
        if size - pos >= HEADER.size:
            magic, length, crc = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length
            if magic == MAGIC and end <= size:
                payload = data[pos + HEADER.size : end]
                if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little"))) == crc:
                    ok = True
        if ok:
            if bad_start is not None:
                result.bad.append((bad_start, pos))
                bad_start = None
            result.good.append((pos, end))
            result.records += 1
            pos = end
            continue
        if bad_start is None:
            bad_start = pos
        nxt = data.find(MAGIC, pos + 1)  # resynchronise on the next magic
        pos = size if nxt < 0 else nxt
    if bad_start is not None:
        result.bad.append((bad_start, size))
    return result


@dataclass
class Segment:
    seq: int
    path: Path
    size: int = 0  # bytes durable on disk
    records: int = 0
    handed: int = 0  # records whose rows went into the queue (directly or replayed)
    done: int = 0  # handed records whose rows are committed
    sealed: bool = False


@dataclass
class _Pending:
    data: bytes
    rows: Rows | None
    nbytes: int
    future: asyncio.Future[None]


@dataclass
class RecoveryReport:
    segments: int = 0
    records: int = 0
    quarantined_bytes: int = 0
    quarantine_files: list[str] = field(default_factory=list)


class SpoolFull(Exception):
    """No room for the record within spool.max_bytes: refuse with a retryable status."""


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int,
        hand_over: HandOver,
        materialize: Materialize,
        can_hand_over: Callable[[int], bool],
        metrics: Metrics | None = None,
    ) -> None:
        self.dir = directory
        self._metrics = metrics
        self.quarantine_dir = directory / "quarantine"
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._hand_over = hand_over
        self._materialize = materialize
        self._can_hand_over = can_hand_over
        self._segments: list[Segment] = []
        self._active: Segment | None = None
        self._fd: int | None = None
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._wake_flusher = asyncio.Event()
        self._wake_replayer = asyncio.Event()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-io")
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.behind = False  # records on disk wait for the replayer
        self._cursor: tuple[Segment, int] | None = None  # first record not handed over yet
        self._replay_pending: tuple[Rows, int] | None = None  # materialized, waiting for queue room
        self.replayed_records = 0
        self.appended_records = 0
        self.quarantined_bytes = 0
        self.write_errors = 0
        self._log = get_logger("spool")
        self._limited = RateLimitedLog(self._log)

    # -- sizes -----------------------------------------------------------------------------------

    @property
    def bytes_on_disk(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def used_bytes(self) -> int:
        return self.bytes_on_disk + self._pending_bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def backlog_bytes(self) -> int:
        """Bytes on disk not yet handed to the queue (what the replayer still has to read)."""
        if not self.behind or self._cursor is None:
            return 0
        seg, offset = self._cursor
        total = seg.size - offset
        started = False
        for s in self._segments:
            if started:
                total += s.size
            if s is seg:
                started = True
        return total

    # -- start / stop ----------------------------------------------------------------------------

    async def open(self) -> RecoveryReport:
        """Recover what a previous run left, then start the flusher and the replayer."""
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(self._io, self._recover)
        if report.quarantined_bytes:
            self._log.error(
                "corrupt or torn spool records quarantined; intact records will be replayed",
                quarantined_bytes=report.quarantined_bytes,
                files=report.quarantine_files,
            )
            if self._metrics is not None:
                self._metrics.spool_quarantined.inc(report.quarantined_bytes)
        if report.records:
            self._log.info("replaying spool", segments=report.segments, records=report.records)
        if any(s.records for s in self._segments):
            self.behind = True
            self._cursor = (self._segments[0], 0)
        await loop.run_in_executor(self._io, self._open_new_segment)
        self._tasks = [
            asyncio.create_task(self._flusher(), name="spool-flusher"),
            asyncio.create_task(self._replayer(), name="spool-replayer"),
        ]
        self._wake_replayer.set()
        return report

    async def close(self) -> None:
        """Flush what is pending, stop the tasks; data not committed stays on disk for next start."""
        self._closing = True
        self._wake_flusher.set()
        self._wake_replayer.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, self._close_fd)
        self._io.shutdown(wait=True)

    # -- recovery (I/O thread) -------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        self.dir.mkdir(parents=True, exist_ok=True)
        report = RecoveryReport()
        paths = sorted(p for p in self.dir.iterdir() if p.suffix == _SUFFIX)
        for path in paths:
            try:
                seq = int(path.stem.split("-")[-1])
            except ValueError:
                continue
            data = path.read_bytes()
            result = scan(data)
            if result.bad:
                self.quarantine_dir.mkdir(exist_ok=True)
                for start, end in result.bad:
                    target = self.quarantine_dir / f"{path.stem}.{start}-{end}.corrupt"
                    target.write_bytes(data[start:end])
                    report.quarantined_bytes += end - start
                    report.quarantine_files.append(str(target))
                clean = b"".join(data[s:e] for s, e in result.good)
                tmp = path.with_suffix(".rewrite")
                with tmp.open("wb") as f:
                    f.write(clean)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                data = clean
            if result.records == 0:
                path.unlink()
                continue
            self._segments.append(Segment(seq, path, len(data), result.records, sealed=True))
            report.segments += 1
            report.records += result.records
        self._fsync_dir()
        self.quarantined_bytes += report.quarantined_bytes
        return report

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_new_segment(self) -> None:
        self._close_fd()
        seq = (self._segments[-1].seq + 1) if self._segments else 1
        path = self.dir / f"segment-{seq:012d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fsync_dir()
        if self._active is not None:
            self._active.sealed = True
        self._active = Segment(seq, path)
        self._segments.append(self._active)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_sync(self, data: bytes) -> None:
        assert self._fd is not None and self._active is not None
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except OSError:
            # Cut the partial write so the next append does not follow garbage.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._active.size)
            raise

    # -- append (event loop) ---------------------------------------------------------------------

    async def append(self, record: SpoolRecord, rows: Rows | None, nbytes: int) -> None:
        """Make `record` durable. Raises SpoolFull (refuse, retryable) or OSError (disk trouble)."""
        if self._closing:
            raise SpoolFull("spool is closing")
        record.version = RECORD_VERSION
        data = frame(record.SerializeToString())
        if self.used_bytes + len(data) > self.max_bytes:
            raise SpoolFull(f"spool holds {self.used_bytes} bytes; spool.max_bytes is {self.max_bytes}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(data, rows, nbytes, future))
        self._pending_bytes += len(data)
        self._wake_flusher.set()
        await future

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake_flusher.wait()
            self._wake_flusher.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            group, self._pending = self._pending, []
            group_bytes = sum(len(p.data) for p in group)
            self._pending_bytes -= group_bytes
            active = self._active
            assert active is not None
            if active.size > 0 and active.size + group_bytes > self.segment_bytes:
                await loop.run_in_executor(self._io, self._open_new_segment)
                self._maybe_delete(active)
                active = self._active
                assert active is not None
            try:
                await loop.run_in_executor(self._io, self._write_sync, b"".join(p.data for p in group))
            except OSError as exc:
                self.write_errors += 1
                self._limited.error("spool-write", "spool write failed; refusing these requests", error=str(exc))
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(OSError(f"spool write failed: {exc}"))
                continue
            active.size += group_bytes
            active.records += len(group)
            self.appended_records += len(group)
            offset = active.size - group_bytes
            for p in group:
                self._dispatch(active, offset, p)
                offset += len(p.data)
                if not p.future.done():
                    p.future.set_result(None)
            if self._closing and not self._pending:
                return

    def _dispatch(self, segment: Segment, offset: int, pending: _Pending) -> None:
        """Hand a just-fsynced record's rows to the queue, in append order, unless we are behind."""
        if self.behind:
            return
        if pending.rows is not None and self._hand_over(pending.rows, pending.nbytes, self._done_callback(segment)):
            segment.handed += 1
            return
        if pending.rows is None:  # nothing storable in it: handled, and done
            segment.handed += 1
            segment.done += 1
            return
        self.behind = True
        self._cursor = (segment, offset)
        self._wake_replayer.set()

    def _done_callback(self, segment: Segment) -> Callable[[], None]:
        def done() -> None:
            segment.done += 1
            self._maybe_delete(segment)

        return done

    def _maybe_delete(self, segment: Segment) -> None:
        if not segment.sealed or segment.done < segment.records or segment.handed < segment.records:
            return
        if segment in self._segments:
            self._segments.remove(segment)
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()

    # -- replay (event loop + I/O thread for reads) ---------------------------------------------

    def _count_replayed(self) -> None:
        self.replayed_records += 1
        if self._metrics is not None:
            self._metrics.spool_replayed.inc()

    def _read_frame(self, path: Path, offset: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            header = f.read(HEADER.size)
            _magic, length, _crc = HEADER.unpack(header)
            return header + f.read(length)

    async def _replayer(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not self.behind or self._cursor is None:
                self._wake_replayer.clear()
                await self._wake_replayer.wait()
                continue
            segment, offset = self._cursor
            if offset >= segment.size:
                following = [s for s in self._segments if s.seq > segment.seq]
                if following:
                    self._cursor = (following[0], 0)
                    self._maybe_delete(segment)
                elif segment is self._active and not self._pending:
                    self.behind = False  # caught up: new records go straight to the queue again
                    self._cursor = None
                else:
                    await asyncio.sleep(0.01)  # a write to a new segment is under way
                continue
            if self._replay_pending is None:
                if not self._can_hand_over(1):
                    await asyncio.sleep(0.02)
                    continue
                data = await loop.run_in_executor(self._io, self._read_frame, segment.path, offset)
                record = SpoolRecord.FromString(data[HEADER.size :])
                try:
                    materialized = await self._materialize(record) if record.version == RECORD_VERSION else None
                except MaterializeLater:
                    await asyncio.sleep(0.05)
                    continue
                if materialized is None:
                    segment.handed += 1
                    segment.done += 1
                    self._cursor = (segment, offset + len(data))
                    self._count_replayed()
                    continue
                self._replay_pending = (*materialized, len(data))  # type: ignore[assignment]
            rows, nbytes, frame_len = self._replay_pending  # type: ignore[misc]
            if self._hand_over(rows, nbytes, self._done_callback(segment)):
                segment.handed += 1
                self._replay_pending = None
                self._cursor = (segment, offset + frame_len)
                self._count_replayed()
            else:
                await asyncio.sleep(0.02)
