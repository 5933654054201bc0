"""The write-ahead spool (pipeline.durability = "spool"): accepted requests survive kill -9 and
database outages up to `spool.max_bytes`.

- append: every accepted request is framed (see proto/spool.proto), written to the active segment and
  fsynced before its acknowledgement. Concurrent appends share one write + fsync (group commit).
- hand-over: right after the fsync, in append order, each record's rows are offered to the in-memory
  queue. If that fails (queue full, breaker open) the spool "falls behind": from then on new records
  stay on disk only, and the replayer reads them back (decode -> convert again) when there is room.
- deletion: a sealed segment is deleted once every record in it was handed over and committed.
- a full disk: a write refused for the disk (it failed, or it would cross the floor below) seals the
  active segment (a new one is opened for the next write), so the space of everything written so far is
  reclaimed as soon as its rows are committed, whether the disk filled within the first segment or the
  last. Before each write the file system must keep
  `spool.min_free_bytes` free (statvfs at most every 100 ms, see diskspace.py). While the disk is full
  requests are refused (SpoolDiskFull, retryable) without queueing; accepting resumes by itself once a
  deleted segment or a new measurement shows room again.
- recovery: on start every segment is scanned; intact records are replayed (already-committed rows
  are skipped by the idempotent insert); a torn or corrupt region is found by its checksum, copied to
  `quarantine/`, reported, and cut out of the segment — start-up never fails because of it.

Knows nothing of OTLP: records carry opaque request bytes; the app supplies `materialize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver._proto.spool_pb2 import SpoolRecord
from receiver.pipeline.diskspace import FreeSpace
from receiver.telemetry.logging import RateLimitedLog, get_logger
from receiver.telemetry.metrics import Metrics

MAGIC = b"LOS\x01"
HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of (length bytes + payload)
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 31
_SUFFIX = ".spool"
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Why an append was refused for the disk (observatory_spool_write_errors_total{reason}).
REASON_DISK_FULL = "disk_full"  # a write failed with ENOSPC / EDQUOT
REASON_MIN_FREE = "min_free_bytes"  # the write would leave less than spool.min_free_bytes free
REASON_IO_ERROR = "io_error"  # any other failed write
# Share of spool.max_bytes above which the spool counts as near full (the breaker then probes sooner).
NEAR_FULL_SHARE = 0.75

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


class SpoolDiskFull(Exception):
    """The spool's file system is full, or would fall below spool.min_free_bytes: refuse, retryable."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        min_free_bytes: int = 0,
    ) -> None:
        self.dir = directory
        self.space = FreeSpace(directory, min_free_bytes)
        # Set by a write refused for the disk, cleared by the next write that succeeds.
        self.disk_full = False
        self.disk_full_reason: str | None = None
        self.disk_full_message = ""
        self._refused_bytes = 0  # size of the last write refused for the disk
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

    def free_bytes(self) -> int | None:
        """Free bytes of the spool's file system (measured at most every 100 ms), None if unknown."""
        try:
            return self.space.available()
        except OSError:
            return None

    def refusing_for_disk(self) -> bool:
        """The disk was found full, and a measurement within the last interval still shows no room for a
        write like the one refused: refuse before decoding, without queueing. Otherwise the request goes
        on to a real write, whose success ends the full-disk state."""
        if not self.disk_full or not self.space.fresh():
            return False
        free = self.space.last_known()
        return free is not None and free - self._refused_bytes < self.space.min_free_bytes

    def near_full(self) -> bool:
        """The spool will soon refuse for room: the disk is full, the spool holds 3/4 of spool.max_bytes,
        or its file system has less than a quarter of spool.max_bytes left above spool.min_free_bytes."""
        if self.disk_full or self.used_bytes >= NEAR_FULL_SHARE * self.max_bytes:
            return True
        free = self.free_bytes()
        return free is not None and free - self.space.min_free_bytes < (1 - NEAR_FULL_SHARE) * self.max_bytes

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
        try:
            await self._rotate()
        except OSError as exc:  # a full disk must not stop the replay of what is already spooled
            self._limited.error(
                "spool-open", "cannot create a spool segment; retried at the next write", error=str(exc)
            )
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

    def _create_segment_file(self, path: Path) -> None:
        """Close the active segment's file, create the next one (I/O thread)."""
        self._close_fd()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fsync_dir()

    async def _rotate(self) -> None:
        """Seal the active segment (if any) and make a new one active. Raises OSError when the new file
        cannot be created (disk full): then no segment is active and the next write tries again."""
        old, self._active = self._active, None
        if old is not None:
            old.sealed = True
        seq = (self._segments[-1].seq + 1) if self._segments else 1
        path = self.dir / f"segment-{seq:012d}{_SUFFIX}"
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self._create_segment_file, path)
        finally:
            if old is not None:
                self._maybe_delete(old)
        if self._fd is None:
            raise OSError(errno.EIO, "spool segment file not open")
        self._active = Segment(seq, path)
        self._segments.append(self._active)

    async def _seal_active(self) -> None:
        """After a write refused for the disk: seal the active segment so its space is reclaimed once its
        rows are stored (an active segment is never deleted). An empty one holds nothing to reclaim."""
        active = self._active
        if active is None or active.size == 0:
            return
        await asyncio.get_running_loop().run_in_executor(self._io, self._close_fd)
        active.sealed = True
        self._active = None
        self._maybe_delete(active)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_sync(self, data: bytes) -> None:
        """Check the free-space floor, append and fdatasync (I/O thread)."""
        assert self._fd is not None and self._active is not None
        if not self.space.has_room(len(data)):
            raise SpoolDiskFull(
                f"the spool's file system has {self.space.last_known()} bytes free; spool.min_free_bytes is "
                f"{self.space.min_free_bytes}",
                REASON_MIN_FREE,
            )
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except OSError as exc:
            # Cut the partial write so the next append does not follow garbage.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._active.size)
            if exc.errno in _NO_SPACE_ERRNOS:
                with contextlib.suppress(OSError):
                    self.space.measure()  # /health and the fast refusals see the full disk at once
            raise
        self.space.consumed(len(data))

    # -- append (event loop) ---------------------------------------------------------------------

    async def append(self, record: SpoolRecord, rows: Rows | None, nbytes: int) -> None:
        """Make `record` durable. Raises SpoolFull (spool.max_bytes reached), SpoolDiskFull (its file
        system is full or at spool.min_free_bytes) or OSError (I/O error): all refused as retryable."""
        if self._closing:
            raise SpoolFull("spool is closing")
        if self.refusing_for_disk():  # known full: refuse at once (re-checked after the interval)
            self._count_write_error(self.disk_full_reason or REASON_DISK_FULL)
            raise SpoolDiskFull(self.disk_full_message, self.disk_full_reason or REASON_DISK_FULL)
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
            try:
                active = self._active
                if active is None or (active.size > 0 and active.size + group_bytes > self.segment_bytes):
                    await self._rotate()
                    active = self._active
                    assert active is not None
                await loop.run_in_executor(self._io, self._write_sync, b"".join(p.data for p in group))
            except SpoolDiskFull as exc:
                await self._seal_active()  # what it holds is reclaimed once stored, as after a failed write
                self._refuse_group(group, exc.reason, str(exc))
                continue
            except OSError as exc:
                reason = REASON_DISK_FULL if exc.errno in _NO_SPACE_ERRNOS else REASON_IO_ERROR
                await self._seal_active()
                self._refuse_group(group, reason, f"spool write failed: {exc}")
                continue
            self.disk_full = False
            self.disk_full_reason = None
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

    def _refuse_group(self, group: list[_Pending], reason: str, message: str) -> None:
        """Fail every append of a group that could not be written; a disk problem is remembered so the
        next requests are refused at once."""
        self.write_errors += 1
        if reason != REASON_IO_ERROR:
            self.disk_full, self.disk_full_reason, self.disk_full_message = True, reason, message
            self._refused_bytes = sum(len(p.data) for p in group)
        self._limited.error(
            f"spool-write:{reason}",
            "spool write refused; refusing these requests (retryable) until there is room",
            reason=reason,
            error=message,
            free_bytes=self.space.last_known(),
            min_free_bytes=self.space.min_free_bytes,
        )
        for p in group:
            self._count_write_error(reason)
            if not p.future.done():
                error = OSError(message) if reason == REASON_IO_ERROR else SpoolDiskFull(message, reason)
                p.future.set_exception(error)

    def _count_write_error(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.spool_write_errors.labels(reason).inc()

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
            self.space.invalidate()  # space came back: measure before the next refusal

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
                elif (segment is self._active or self._active is None) and not self._pending:
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
