"""`make soak`: does the receiver hold a rate for as long as production runs it, not just for a minute?

Starts a throwaway PostgreSQL (the receiver's embedded-cluster settings, plus
`track_commit_timestamp = on`) and the real receiver with its default configuration, then drives
loadgen at `--rate` spans/s for `--duration` seconds with `--verify` (every acknowledged span checked
in the database). Every `--sample-s` seconds it records:

- spans stored so far (the receiver's `storage_items_written_total{table="llm_traces"}`),
- CPU seconds of the receiver and of the PostgreSQL server (every process of the cluster: backends,
  autovacuum, checkpointer, TimescaleDB's jobs), from /proc,
- the receiver's RSS, the size of llm_traces (heap + TOAST) and of its indexes, WAL written, and
  checkpoints so far,

prints a line per sample, then compares the first `--window-s` seconds with the last: PostgreSQL
and receiver CPU per stored span, and receiver RSS. The verdict (exit code 0 / 1):

- loadgen's own verdict passes (the rate sustained, every acknowledged span stored exactly once);
- PostgreSQL's CPU per span in the last window is within `--max-cpu-growth` (20%) of the first;
- the receiver's median RSS in the last window is within `--max-rss-change` (±15%) of the first window's
  median. Medians, because a window's mean and peak follow how full the bounded queue happened to be
  (printed beside it), which is load, not growth.

Not part of `make test` (too long); `tests/test_storage_growth.py` runs a short growth check there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.bench import Receiver, free_port, own_cpu_seconds, postmaster_pid, tree_cpu_seconds
from benchmarks.growth import variant_sql
from receiver.storage.embedded import EmbeddedPostgres
from tests.support.cleanup import OWNER_FILE, throwaway_dir


@dataclass
class Sample:
    t: float  # seconds since loadgen's first send (wall-clock time until the run's start is known)
    stored: int  # spans committed by the receiver
    receiver_cpu_s: float
    postgres_cpu_s: float
    receiver_rss_mb: float
    queue_mb: float  # what the receiver's queue holds (observatory_queue_bytes, its own estimate)
    table_mb: float  # llm_traces heap + TOAST
    index_mb: float
    wal_mb: float
    checkpoints: int
    # CPU seconds of the live PostgreSQL processes by what they do (see _PG_ROLES), each process's own
    # time only; what exited processes used (autovacuum workers, ended sessions) is the rest of
    # postgres_cpu_s.
    postgres_by_role: dict[str, float] = field(default_factory=dict)


# pg_stat_activity -> a role of the process: the receiver's connections by application_name (storage/
# database.py), the server's own processes by backend_type.
_PG_ROLES_SQL = """
SELECT string_agg(pid || '=' || CASE
    WHEN application_name LIKE 'llm-observatory-receiver:writer' THEN 'COPY writers'
    WHEN application_name LIKE 'llm-observatory-receiver:maintenance' THEN 'maintenance (rollups)'
    WHEN application_name LIKE 'llm-observatory-receiver:%' THEN 'receiver (other)'
    WHEN backend_type = 'autovacuum worker' THEN 'autovacuum'
    WHEN backend_type IN ('checkpointer', 'walwriter', 'background writer') THEN 'WAL writer + checkpointer + bgwriter'
    WHEN backend_type LIKE 'TimescaleDB%' OR application_name LIKE '%Job%' THEN 'TimescaleDB jobs'
    ELSE 'other' END, ',')
FROM pg_stat_activity"""


def _pg_cpu_by_pid(roles_csv: str) -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for item in filter(None, roles_csv.split(",")):
        pid, _, role = item.partition("=")
        cpu = own_cpu_seconds(int(pid))
        if cpu is not None:
            found[int(pid)] = (role, cpu)
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _receiver_figures(admin_port: int) -> tuple[int, float]:
    """(spans committed, bytes the queue holds) from the receiver's /metrics."""
    stored, queued = 0, 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('storage_items_written_total{table="llm_traces"}'):
                stored = int(float(line.rsplit(" ", 1)[1]))
            elif line.startswith("observatory_queue_bytes "):
                queued = float(line.rsplit(" ", 1)[1])
    return stored, queued


_SIZES = {
    "native": """
        SELECT coalesce(sum(pg_table_size(c.oid)), 0), coalesce(sum(pg_indexes_size(c.oid)), 0)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'llm_traces'::regclass""",
    "timescale": """
        SELECT coalesce(table_bytes, 0) + coalesce(toast_bytes, 0), coalesce(index_bytes, 0)
        FROM hypertable_detailed_size('llm_traces')""",
}


class Sampler:
    """Takes a Sample every `interval_s` in a thread (psql for the database figures)."""

    def __init__(self, cluster: EmbeddedPostgres, receiver: Receiver, flavor: str, interval_s: float) -> None:
        self.cluster = cluster
        self.receiver = receiver
        self.flavor = flavor
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        psql = cluster.bindir / "psql"
        self._psql = str(psql) if psql.exists() else "psql"
        self._wal_start: int | None = None
        self._pids: dict[int, tuple[str, float]] = {}  # the previous sample's processes
        self._by_role: dict[str, float] = {}  # cumulative CPU seconds per role, of processes seen live

    def _query(self, sql: str) -> list[str]:
        done = subprocess.run(
            [self._psql, "-X", "-tA", "-F", "|", "-d", self.cluster.dsn, "-c", sql],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip().split("|")

    def take(self) -> Sample:
        pid = self.receiver.proc.pid  # type: ignore[union-attr]
        table, index = (int(float(x)) for x in self._query(_SIZES[self.flavor]))
        wal, checkpoints = self._query(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), checkpoints_timed + checkpoints_req "
            "FROM pg_stat_bgwriter"
        )
        wal_bytes = int(float(wal))
        if self._wal_start is None:
            self._wal_start = wal_bytes
        pids = _pg_cpu_by_pid(self._query(_PG_ROLES_SQL)[0])
        for pg_pid, (role, cpu) in pids.items():
            before = self._pids.get(pg_pid)
            gained = cpu - before[1] if before is not None and before[0] == role else cpu
            self._by_role[role] = self._by_role.get(role, 0.0) + max(gained, 0.0)
        self._pids = pids
        stored, queued = _receiver_figures(self.receiver.admin_port)
        sample = Sample(
            t=time.time(),
            stored=stored,
            receiver_cpu_s=tree_cpu_seconds(pid),
            postgres_cpu_s=tree_cpu_seconds(postmaster_pid(self.cluster)),
            receiver_rss_mb=_rss_mb(pid),
            queue_mb=queued / 2**20,
            table_mb=table / 2**20,
            index_mb=index / 2**20,
            wal_mb=(wal_bytes - self._wal_start) / 2**20,
            checkpoints=int(checkpoints),
            postgres_by_role=dict(self._by_role),
        )
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        self.take()
        self._thread.start()

    def _run(self) -> None:
        previous = self.samples[-1]
        while not self._stop.wait(self.interval_s):
            try:
                current = self.take()
            except (OSError, RuntimeError) as exc:
                print(f"soak: sample failed: {exc}", file=sys.stderr, flush=True)
                continue
            print(_line(previous, current), file=sys.stderr, flush=True)
            previous = current

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _per_span_us(a: Sample, b: Sample, field_name: str) -> float | None:
    spans = b.stored - a.stored
    if spans <= 0:
        return None
    return (getattr(b, field_name) - getattr(a, field_name)) / spans * 1e6


def _line(a: Sample, b: Sample) -> str:
    dt = max(b.t - a.t, 1e-9)
    pg = _per_span_us(a, b, "postgres_cpu_s")
    rcv = _per_span_us(a, b, "receiver_cpu_s")
    return (
        f"soak {time.strftime('%H:%M:%S', time.localtime(b.t))}  "
        f"stored {b.stored / 1e6:7.2f} M ({(b.stored - a.stored) / dt:7,.0f}/s)  "
        f"PostgreSQL {b.postgres_cpu_s - a.postgres_cpu_s:5.1f} CPU-s ({pg or 0:5.1f} us/span)  "
        f"receiver {b.receiver_cpu_s - a.receiver_cpu_s:5.1f} CPU-s ({rcv or 0:5.1f} us/span)  "
        f"RSS {b.receiver_rss_mb:5.0f} MB (queue {b.queue_mb:4.0f})  "
        f"table {b.table_mb:8,.0f} MB  indexes {b.index_mb:7,.0f} MB  "
        f"WAL {b.wal_mb:8,.0f} MB  checkpoints {b.checkpoints}"
    )


@dataclass
class Window:
    start_s: float
    end_s: float
    stored_per_s: float
    postgres_us_per_span: float | None
    receiver_us_per_span: float | None
    receiver_rss_mb: float  # median of the window's samples: what the verdict compares
    receiver_rss_peak_mb: float  # largest sample of the window
    queue_mb: float  # mean of the window's samples
    postgres_us_per_span_by_role: dict[str, float]


def _by_role_us(a: Sample, b: Sample) -> dict[str, float]:
    """PostgreSQL µs CPU per stored span between two samples, by role; 'exited processes' is the rest."""
    spans = b.stored - a.stored
    if spans <= 0:
        return {}
    out = {
        role: (b.postgres_by_role.get(role, 0.0) - a.postgres_by_role.get(role, 0.0)) / spans * 1e6
        for role in sorted(b.postgres_by_role)
    }
    rest = (b.postgres_cpu_s - a.postgres_cpu_s) / spans * 1e6 - sum(out.values())
    out["exited processes (autovacuum, sessions)"] = max(rest, 0.0)
    return {role: round(us, 1) for role, us in out.items()}


def window(samples: list[Sample], start_s: float, end_s: float) -> Window:
    inside = [s for s in samples if start_s <= s.t <= end_s]
    if len(inside) < 2:
        raise RuntimeError(f"fewer than two samples between {start_s:g} s and {end_s:g} s: lengthen the run")
    a, b = inside[0], inside[-1]
    return Window(
        a.t,
        b.t,
        (b.stored - a.stored) / (b.t - a.t),
        _per_span_us(a, b, "postgres_cpu_s"),
        _per_span_us(a, b, "receiver_cpu_s"),
        statistics.median(s.receiver_rss_mb for s in inside),
        max(s.receiver_rss_mb for s in inside),
        sum(s.queue_mb for s in inside) / len(inside),
        _by_role_us(a, b),
    )


def soak(args: argparse.Namespace, extra: list[str]) -> dict:
    root = throwaway_dir("soak")
    timescale = {"auto": None, "timescale": True, "native": False}[args.flavor]
    cluster = EmbeddedPostgres(
        root / "pg", port=free_port(), timescale=timescale, extra_settings={"track_commit_timestamp": "on"}
    )
    receiver: Receiver | None = None
    sampler: Sampler | None = None
    try:
        print(f"soak: starting PostgreSQL under {root}", file=sys.stderr, flush=True)
        dsn = cluster.start()
        settings = {}
        for item in args.set:
            key, _, value = item.partition("=")
            section, _, name = key.partition(".")
            settings[f"OBSERVATORY__{section.upper()}__{name.upper()}"] = value
        receiver = Receiver(dsn, root, settings)
        receiver.start()
        if args.variant:  # an index set of benchmarks.growth, e.g. the one before migration 009
            for statement in variant_sql(args.variant):
                subprocess.run(
                    [str(cluster.bindir / "psql") if (cluster.bindir / "psql").exists() else "psql", "-X", "-q",
                     "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", statement],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
        flavor = subprocess.run(
            [str(cluster.bindir / "psql") if (cluster.bindir / "psql").exists() else "psql", "-X", "-tA", "-d", dsn,
             "-c", "SELECT flavor FROM schema_migrations ORDER BY version DESC LIMIT 1"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(
            f"soak: receiver ready ({flavor} flavor); loadgen at {args.rate:,.0f} spans/s for {args.duration:g} s",
            file=sys.stderr,
            flush=True,
        )
        sampler = Sampler(cluster, receiver, flavor, args.sample_s)
        sampler.start()
        command = [
            sys.executable, "-m", "llm_observatory_loadgen", "--target", receiver.target("grpc"),
            "--rate", str(args.rate), "--duration", str(args.duration), "--verify", dsn, "--json",
            "--verify-timeout", "600", *extra,
        ]  # fmt: skip
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        sampler.stop()
        sampler.take()  # the state once verification has seen every row
        if done.returncode == 2 or not done.stdout.strip():
            raise RuntimeError(f"loadgen could not run (exit {done.returncode})")
        report = json.loads(done.stdout)
        started_at = report["run"]["started_at"]
        samples = [Sample(**{**asdict(s), "t": round(s.t - started_at, 1)}) for s in sampler.samples]
        end = min(args.duration, samples[-1].t)
        first = window(samples, 0, args.window_s)
        last = window(samples, end - args.window_s, end)
        cpu_growth = (
            last.postgres_us_per_span / first.postgres_us_per_span - 1
            if first.postgres_us_per_span and last.postgres_us_per_span
            else None
        )
        # Medians: where RSS sits most of the window. Not the peak: a window's peak depends on whether it
        # held the moment the bounded queue (pipeline.queue_max_bytes) was fullest, which is load, not
        # growth. Not the mean: it is pulled by such moments and, in the first window, by the process
        # growing to its working set. With the memory a backlog freed handed back after it drains
        # (receiver/pipeline/trim.py), a leak is what moves the median.
        rss_change = last.receiver_rss_mb / first.receiver_rss_mb - 1 if first.receiver_rss_mb else None
        problems = [f"loadgen: {p}" for p in report.get("verdict", {}).get("problems", [])]
        if not report.get("ok"):
            problems.append("loadgen's verdict is FAIL")
        if cpu_growth is None or cpu_growth > args.max_cpu_growth:
            problems.append(
                f"PostgreSQL CPU per span grew {cpu_growth:+.0%} from the first window to the last "
                f"(allowed {args.max_cpu_growth:+.0%})"
                if cpu_growth is not None
                else "PostgreSQL CPU per span could not be measured"
            )
        if rss_change is None or abs(rss_change) > args.max_rss_change:
            problems.append(f"receiver median RSS changed {rss_change:+.0%} (allowed ±{args.max_rss_change:.0%})")
        traces = report["signals"]["traces"]
        verification = report.get("verification") or {}
        return {
            "flavor": flavor,
            "variant": args.variant or "migrations",
            "rate": args.rate,
            "duration_s": args.duration,
            "acknowledged_per_s": traces["acknowledged_per_s"],
            "acknowledged": traces["acknowledged"],
            "refusals": traces["refusals"],
            "lost": verification.get("lost"),
            "duplicated": verification.get("duplicated"),
            "first_window": asdict(first),
            "last_window": asdict(last),
            "postgres_cpu_growth": cpu_growth,
            "receiver_rss_change": rss_change,
            "final": asdict(samples[-1]),
            "samples": [asdict(s) for s in samples],
            "ok": not problems,
            "problems": problems,
            "receiver_settings": settings,
        }
    finally:
        if sampler is not None:
            sampler.stop()
        if receiver is not None:
            receiver.stop()
        if args.keep:
            cluster.stop()
            (root / OWNER_FILE).unlink(missing_ok=True)
            print(f"soak: kept {root} (delete it when done)", file=sys.stderr)
        else:
            cluster.destroy()
            shutil.rmtree(root, ignore_errors=True)


def text(r: dict) -> str:
    f, last = r["first_window"], r["last_window"]

    def us(value: float | None) -> str:
        return f"{value:,.1f}" if value is not None else "-"

    final = r["final"]
    lines = [
        f"make soak: {r['duration_s']:g} s at {r['rate']:,.0f} spans/s, {r['flavor']} flavor, "
        f"span indexes: {r['variant']}",
        f"  acknowledged {r['acknowledged_per_s']:,.0f} spans/s ({r['acknowledged']:,}); "
        f"refusals {r['refusals'] or 'none'}; lost {r['lost']}, duplicated {r['duplicated']}",
        f"  stored at the end: {final['stored']:,} spans; llm_traces {final['table_mb']:,.0f} MB + indexes "
        f"{final['index_mb']:,.0f} MB; WAL {final['wal_mb']:,.0f} MB; {final['checkpoints']} checkpoints",
        "",
        "| window | stored spans/s | PostgreSQL µs CPU/span | receiver µs CPU/span | receiver RSS MB, median (peak) "
        "| queue MB (mean) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} ({w['start_s']:.0f}–{w['end_s']:.0f} s) | {w['stored_per_s']:,.0f} | "
            f"{us(w['postgres_us_per_span'])} | {us(w['receiver_us_per_span'])} | "
            f"{w['receiver_rss_mb']:,.0f} ({w['receiver_rss_peak_mb']:,.0f}) | {w['queue_mb']:,.0f} |"
            for name, w in (("first", f), ("last", last))
        ),
        "",
        "",
        "PostgreSQL µs CPU per span by process role, first window -> last:",
        *(
            f"  {role:40s} {f['postgres_us_per_span_by_role'].get(role, 0.0):7.1f} -> "
            f"{last['postgres_us_per_span_by_role'].get(role, 0.0):7.1f}"
            for role in sorted(set(f["postgres_us_per_span_by_role"]) | set(last["postgres_us_per_span_by_role"]))
        ),
        "",
        f"  PostgreSQL CPU per span {r['postgres_cpu_growth']:+.1%} (allowed +20%), receiver median RSS "
        f"{r['receiver_rss_change']:+.1%} (allowed ±15%)"
        if r["postgres_cpu_growth"] is not None and r["receiver_rss_change"] is not None
        else "",
        f"  verdict: {'PASS' if r['ok'] else 'FAIL'}" + ("" if r["ok"] else ": " + "; ".join(r["problems"])),
    ]
    return "\n".join(line for line in lines if line is not None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Unknown options are passed to loadgen.")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load (1800)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="spans per second (10000)")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--window-s", type=float, default=300.0, help="length of the compared windows (300)")
    parser.add_argument("--max-cpu-growth", type=float, default=0.20)
    parser.add_argument("--max-rss-change", type=float, default=0.15)
    parser.add_argument("--flavor", choices=("auto", "native", "timescale"), default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="receiver setting")
    parser.add_argument(
        "--variant",
        help="replace the span indexes with a set of benchmarks.growth before the load, e.g. "
        "'hash-ids+pk=trace-first' (the set before migration 009)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database directory (stopped)")
    parser.add_argument("--json", action="store_true", help="print the result (samples included) as JSON")
    args, extra = parser.parse_known_args(argv)
    if args.variant:
        variant_sql(args.variant)  # exits with the known variants if unknown
    if args.duration < 2 * args.window_s:
        parser.error("--duration must be at least twice --window-s (a first and a last window that do not overlap)")
    try:
        result = soak(args, extra)
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else text(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # SIGTERM (a timeout, a Ctrl-C from make's process group, kill): unwind through the `finally` that stops
    # the receiver and the database, instead of leaving them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
