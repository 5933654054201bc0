"""--verify: is every acknowledged span in the database, exactly once, and how long did it take?

Expected set: for every send number k that was acknowledged, the spans of its pool body with k in
their trace ids (ids.py), minus partial_success rejections. It is never materialized: a stored row
is decoded back to (k, template part, span id) and looked up in the pool's span keys.

1. Poll `count(*)` over the run's trace-id range (an index range scan on the primary key) until it
   reaches the number of acknowledged spans, or the deadline passes. The moment the count is
   complete is the "all present after" figure, measured from the end of sending.
2. Then stream the run's rows once (rows with the run id in `resource_attributes`, in that range)
   and classify each: acknowledged and present, duplicated, stored although never acknowledged
   (a request that timed out or was refused may still have landed — allowed by OTLP, reported),
   or unexpected (never sent: must not happen). Lost = acknowledged but absent.
3. Landing latency per span: when the server tracks commit timestamps (`track_commit_timestamp =
   on`, as `make bench` sets it), commit time of the row minus the first attempt of its request;
   otherwise only the time-to-complete of step 1 is reported. Both clocks are this machine's when
   the database is local; on another host, clock skew enters the figure.
Logs and metric points (when sent) are counted, not matched: rows with the run id vs acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

from .bodies import Pool
from .ids import RunId
from .ledger import ACKED, Ledger
from .stats import percentiles

COUNT_SQL = "SELECT count(*) FROM llm_traces WHERE trace_id BETWEEN $1 AND $2"
ROWS_SQL = (
    "SELECT uuid_send(trace_id) AS t, span_id{commit} FROM llm_traces "
    "WHERE trace_id BETWEEN $1 AND $2 AND resource_attributes->>'loadgen.run_id' = $3"
)
COMMIT_COLUMN = ", extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS c"
SIGNAL_TABLES = {"logs": "llm_logs", "metrics": "llm_metrics"}


class VerifyError(Exception):
    """The database cannot be used for verification; the message says why."""


@dataclass(slots=True)
class Verification:
    acknowledged: int = 0  # spans the receiver acknowledged (the expected set)
    found: int = 0  # of those, stored
    lost: int = 0  # acknowledged, not stored by the deadline
    duplicated: int = 0  # stored more than once
    stored_unacknowledged: int = 0  # stored, but their request was never acknowledged
    unexpected: int = 0  # rows of this run that loadgen never sent
    complete_after_s: float | None = None  # end of sending -> all acknowledged spans present
    last_commit_after_s: float | None = None  # end of sending -> commit of the last row (commit timestamps)
    waited_s: float = 0.0
    poll_resolution_s: float | None = None  # one count query + the pause between polls
    landing_latency_ms: dict[str, float | int] | None = None
    landing_latency_note: str = ""
    signals: dict[str, dict[str, int]] = field(default_factory=dict)  # logs/metrics: acknowledged vs stored

    @property
    def ok(self) -> bool:
        counts_ok = all(v["stored"] >= v["acknowledged"] for v in self.signals.values())
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0 and counts_ok

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "acknowledged": self.acknowledged,
            "found": self.found,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "stored_unacknowledged": self.stored_unacknowledged,
            "unexpected": self.unexpected,
            "complete_after_s": None if self.complete_after_s is None else round(self.complete_after_s, 3),
            "last_commit_after_s": None if self.last_commit_after_s is None else round(self.last_commit_after_s, 3),
            "waited_s": round(self.waited_s, 3),
            "poll_resolution_s": None if self.poll_resolution_s is None else round(self.poll_resolution_s, 3),
            "landing_latency_ms": self.landing_latency_ms,
            "landing_latency_note": self.landing_latency_note,
            "signals": self.signals,
        }


def expected_spans(ledger: Ledger, pool: Pool) -> int:
    entries = pool.entries
    total = 0
    for k in range(1, len(ledger) + 1):
        if ledger.state[k] == ACKED:
            total += entries[ledger.template[k]].traces.items - ledger.rejected.get(k, 0)
    return total


async def connect(dsn: str, timeout_s: float = 10.0) -> asyncpg.Connection:
    """Connect and check the schema is there; VerifyError with a one-line reason otherwise."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, ValueError) as exc:
        raise VerifyError(f"cannot connect to the --verify database: {exc}") from None
    if not await conn.fetchval("SELECT to_regclass('llm_traces') IS NOT NULL"):
        await conn.close()
        raise VerifyError("the --verify database has no llm_traces table: is it the receiver's database?")
    return conn


async def check(dsn: str) -> None:
    """Before the clock starts: fail fast on a wrong DSN rather than after the run."""
    conn = await connect(dsn)
    await conn.close()


class Verifier:
    def __init__(self, dsn: str, run: RunId, ledger: Ledger, pool: Pool, acked_other: dict[str, int]) -> None:
        self.dsn = dsn
        self.run = run
        self.ledger = ledger
        self.pool = pool
        self.acked_other = acked_other  # logs / metrics: acknowledged items

    async def verify(self, sending_ended_wall: float, timeout_s: float, poll_s: float = 0.1) -> Verification:
        conn = await connect(self.dsn)
        try:
            return await self._verify(conn, sending_ended_wall, timeout_s, poll_s)
        finally:
            await conn.close()

    async def _verify(
        self, conn: asyncpg.Connection, sending_ended_wall: float, timeout_s: float, poll_s: float
    ) -> Verification:
        lo, hi = self.run.trace_id_range()
        expected = expected_spans(self.ledger, self.pool)
        started = time.monotonic()
        deadline = started + timeout_s
        checked_at_count = -1
        result = Verification(acknowledged=expected)
        while True:
            asked = time.monotonic()
            count = await conn.fetchval(COUNT_SQL, lo, hi)
            now = time.monotonic()
            count_s = now - asked
            counted_at_wall = time.time()
            if count >= expected and count != checked_at_count:
                result = await self._exact(conn, expected, sending_ended_wall)
                checked_at_count = count
                if result.lost == 0:
                    # When the count query saw them all, not after the (slower) exact pass.
                    result.complete_after_s = max(0.0, counted_at_wall - sending_ended_wall)
                    result.poll_resolution_s = count_s + poll_s
                    break
            if now >= deadline:
                if checked_at_count != count:
                    result = await self._exact(conn, expected, sending_ended_wall)
                break
            await asyncio.sleep(poll_s)
        for signal, acked in self.acked_other.items():
            result.signals[signal] = await self._count_other(conn, signal, acked, deadline, poll_s)
        result.waited_s = time.monotonic() - started
        return result

    async def _count_other(
        self, conn: asyncpg.Connection, signal: str, acked: int, deadline: float, poll_s: float
    ) -> dict[str, int]:
        table = SIGNAL_TABLES[signal]
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return {"acknowledged": acked, "stored": 0}
        sql = f"SELECT count(*) FROM {table} WHERE resource_attributes->>'loadgen.run_id' = $1"
        while True:
            stored = int(await conn.fetchval(sql, self.run.text))
            if stored >= acked or time.monotonic() >= deadline:
                return {"acknowledged": acked, "stored": stored}
            await asyncio.sleep(max(poll_s, 0.5))

    async def _exact(self, conn: asyncpg.Connection, expected: int, sending_ended_wall: float) -> Verification:
        tracks_commits = await conn.fetchval("SELECT current_setting('track_commit_timestamp') = 'on'")
        sql = ROWS_SQL.format(commit=COMMIT_COLUMN if tracks_commits else "")
        lo, hi = self.run.trace_id_range()
        ledger, entries = self.ledger, self.pool.entries
        state, templates, first_sent, rejected = ledger.state, ledger.template, ledger.first_sent, ledger.rejected
        sent_max = len(ledger)
        seen: dict[int, bytearray] = {}
        found_by_k: dict[int, int] = {}
        landing: list[float] = []
        last_commit = 0.0
        out = Verification(acknowledged=expected)
        async with conn.transaction(readonly=True):
            async for row in conn.cursor(sql, lo, hi, self.run.text, prefetch=20_000):
                trace_id = row[0]
                k = int.from_bytes(trace_id[12:16], "big")
                if not 0 < k <= sent_max:
                    out.unexpected += 1
                    continue
                index = entries[templates[k]].span_keys.get((trace_id[4:12], row[1]))
                if index is None:
                    out.unexpected += 1
                    continue
                if state[k] != ACKED:
                    out.stored_unacknowledged += 1
                    continue
                marks = seen.get(k)
                if marks is None:
                    marks = seen[k] = bytearray(entries[templates[k]].traces.items)
                if marks[index]:
                    out.duplicated += 1
                    continue
                marks[index] = 1
                found_by_k[k] = found_by_k.get(k, 0) + 1
                if tracks_commits:
                    committed = row[2]
                    if committed is not None:
                        landing.append(committed - first_sent[k])
                        if committed > last_commit:
                            last_commit = committed
        for k in range(1, sent_max + 1):
            if state[k] != ACKED:
                continue
            want = entries[templates[k]].traces.items - rejected.get(k, 0)
            have = found_by_k.get(k, 0)
            out.found += min(have, want)
            out.lost += max(0, want - have)
        if landing:
            out.landing_latency_ms = percentiles(landing)
            out.landing_latency_note = "row commit time minus the first attempt of its request"
            out.last_commit_after_s = last_commit - sending_ended_wall
        elif tracks_commits:
            out.landing_latency_note = "no commit timestamps for these rows"
        else:
            out.landing_latency_note = (
                "per-span landing latency needs track_commit_timestamp = on in PostgreSQL; "
                "only the time until all spans were present is reported"
            )
        return out
