"""`make bench`: the receiver's end-to-end figures next to a raw-COPY ceiling measured in the same run.

1. A throwaway PostgreSQL (the receiver's own EmbeddedPostgres, as the tests use it, plus
   `track_commit_timestamp = on` so loadgen can time each span's landing) and the real receiver in a
   subprocess with its default configuration (only ports and paths are set; `--set` changes more).
2. loadgen flat out (`--rate 0`, closed loop per exporter) for `--duration` seconds with `--verify`.
3. While it runs, the CPU time (utime + stime, children included) of the receiver and of the
   PostgreSQL server is sampled from /proc every 0.2 s; the receiver's peak RSS is its VmHWM.
4. The raw-COPY ceiling: the rows the receiver stored are exported with psql's `\\copy … TO … (FORMAT
   binary)`, then loaded with `\\copy llm_traces FROM … (FORMAT binary)` — psql streaming COPY FROM
   STDIN, no Python in the path — into a freshly migrated database (same schema, same indexes), once
   with one stream and once with one stream per CPU, after a CHECKPOINT. The better one is the ceiling.

5. Small requests (after the main run, against the same receiver): loadgen closed loop with
   `--small-exporters` (32) exporters sending 1-span requests (`--small grpc:1,http:1`, add e.g. grpc:16)
   for `--small-duration` seconds each, verified like the main run. The fixed cost of a request is the
   receiver's CPU time over that run divided by the export attempts it answered: µs/request.

`--flavor citus`: the same on a Citus cluster (tests/support/citus.py, as the Citus tests start it): a
coordinator and two workers on loopback, Citus preloaded, `citus.shard_count` from `--citus-shards`.
The receiver, loadgen's verification and psql connect to the coordinator; `migrate` distributes the
tables. PostgreSQL's CPU is the sum of the coordinator's and both workers' process trees (the workers
store the rows; the coordinator routes them). The ceiling loads the same rows through the coordinator
into a fresh database distributed the same way (same nodes, same shard count); if that load fails,
the ceiling is printed as n/a with the reason. Without Citus installed: exit code 2, naming the fix.

Printed: acknowledged and landed spans/s, µs of receiver CPU per landed span (and of PostgreSQL and
loadgen), peak receiver RSS, the ceiling and the ratio to it, and µs of receiver CPU per small request.
`--json` prints the same as JSON. `--small-only` runs only the small-request part (no ceiling).
Everything runs on this machine: the figures say how the receiver does *here*, next to what the
database alone can do here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from llm_observatory_loadgen.ids import RunId
from receiver.storage.embedded import (
    DATABASE,
    EmbeddedDatabaseError,
    EmbeddedPostgres,
    citus_installed,
    find_bindir,
)
from tests.support.citus import NODE_NAMES, CitusCluster
from tests.support.cleanup import OWNER_FILE, throwaway_dir

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- /proc accounting --------------------------------------------------------------------------------


def own_cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process itself (not its reaped children); None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLOCK_TICKS


def trees_cpu_seconds(roots: list[int]) -> dict[int, float]:
    """CPU seconds of each root and all its live descendants (each including its reaped children), from
    one pass over /proc: a Citus run samples four trees every 0.2 s."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for root in roots:
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in stats:
                total += stats[pid][1]
            stack.extend(children.get(pid, ()))
        totals[root] = total
    return totals


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and all its live descendants (each including its reaped children)."""
    return trees_cpu_seconds([root])[root]


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class CpuSampler:
    """Samples (wall time, CPU seconds) of process trees in a thread, so any interval can be cut later."""

    roots: dict[str, int]
    interval_s: float = 0.2
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        now = time.time()
        cpu = trees_cpu_seconds(list(self.roots.values()))
        for name, pid in self.roots.items():
            self.samples.setdefault(name, []).append((now, cpu[pid]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        """Stop sampling, with one last sample so every interval that ended before now can be cut."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._sample()

    def between(self, name: str, start: float, end: float) -> float:
        """CPU seconds used from the last sample at or before `start` to the first at or after `end`."""
        samples = self.samples.get(name, [])
        before = [cpu for t, cpu in samples if t <= start]
        after = [cpu for t, cpu in samples if t >= end]
        if not before or not after:
            raise RuntimeError(f"no CPU samples of {name} around the run")
        return after[0] - before[-1]


# -- the receiver --------------------------------------------------------------------------------------


class Receiver:
    """The receiver as an operator runs it: `python -m receiver run`, configured by the environment."""

    def __init__(self, dsn: str, workdir: Path, settings: dict[str, str]) -> None:
        self.grpc_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.workdir = workdir
        self.log_path = workdir / "receiver.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVATORY__", "DB_"))}
        env.update(
            {
                "DATABASE_URL": dsn,
                "OBSERVATORY__OTLP__GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
                "OBSERVATORY__OTLP__HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
                "OBSERVATORY__ADMIN__ENDPOINT": f"127.0.0.1:{self.admin_port}",
                "OBSERVATORY__QUERY__ENDPOINT": "",  # the read API is not part of the ingest benchmark
                "OBSERVATORY__SPOOL__DIR": str(workdir / "spool"),
                "OBSERVATORY__DEAD_LETTER__DIR": str(workdir / "dead-letter"),
            }
        )
        env.update(settings)
        self.env = env
        self.command = [sys.executable, "-m", "receiver", "run"]  # request_instructions runs it under callgrind
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the receiver was not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def peak_rss_mb(self) -> dict[str, object]:
        """VmHWM of the receiver's process and of each worker process it started (--workers)."""
        assert self.proc is not None
        workers = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                found = _stat(int(entry))
                if found is not None and found[0] == self.proc.pid:
                    rss = peak_rss_mb(int(entry))
                    if rss is not None:
                        workers.append(round(rss, 1))
        main = peak_rss_mb(self.proc.pid)
        return {"main": round(main, 1) if main is not None else None, "workers": sorted(workers)}

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def target(self, protocol: str) -> str:
        return f"127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the raw-COPY ceiling ------------------------------------------------------------------------------


class Psql:
    def __init__(self, cluster: EmbeddedPostgres) -> None:
        exe = cluster.bindir / "psql"
        self.exe = str(exe) if exe.exists() else "psql"
        self.cluster = cluster

    def command(self, database: str, sql: str) -> list[str]:
        return [self.exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.cluster.admin_dsn(database), "-c", sql]

    def run(self, database: str, sql: str) -> str:
        done = subprocess.run(self.command(database, sql), capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {sql[:80]!r}: {done.stderr.strip()}")
        return done.stdout

    def scalar(self, database: str, sql: str) -> str:
        done = subprocess.run(
            [*self.command(database, sql)[:-2], "-tA", "-c", sql], capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {sql[:80]!r}: {done.stderr.strip()}")
        return done.stdout.strip()


def run_range(run_id: str) -> str:
    """SQL condition selecting the rows of one loadgen run (its trace-id range)."""
    low, high = RunId.parse(run_id).trace_id_range()
    return f"trace_id BETWEEN '{low}' AND '{high}'"


def export_rows(psql: Psql, database: str, directory: Path, streams: int, run: str) -> list[Path]:
    """The stored rows of the main run, in binary COPY format, split into `streams` files."""
    files = []
    for i in range(streams):
        path = directory / f"rows-{streams}-{i}.bin"
        where = f" WHERE {run}"
        if streams > 1:
            where += f" AND (hashtext(span_id)::bigint + 2147483648) % {streams} = {i}"
        psql.run(database, f"\\copy (SELECT * FROM llm_traces{where}) TO '{path}' WITH (FORMAT binary)")
        files.append(path)
    return files


def migrate(dsn: str, workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVATORY__", "DB_"))}
    env["DATABASE_URL"] = dsn
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"], cwd=workdir, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrating the ceiling database failed: {done.stderr.strip() or done.stdout.strip()}")


def copy_ceiling(psql: Psql, servers: Servers, files: list[Path], rows: int, workdir: Path) -> dict:
    """Load `files` in parallel (one psql each) into a fresh, migrated database; rows/s."""
    database = f"ceiling_{len(files)}"
    migrate(servers.create_database(psql, database), workdir)
    servers.checkpoint()
    commands = [psql.command(database, f"\\copy llm_traces FROM '{path}' WITH (FORMAT binary)") for path in files]
    started = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    if any(p.returncode for p in procs):
        raise RuntimeError("raw COPY failed: " + b" ".join(errors).decode(errors="replace").strip())
    loaded = int(psql.scalar(database, "SELECT count(*) FROM llm_traces"))
    if loaded != rows:
        raise RuntimeError(f"raw COPY loaded {loaded} rows, expected {rows}")
    servers.drop_database(psql, database)
    return {"streams": len(files), "rows": rows, "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed)}


# -- the database servers -------------------------------------------------------------------------------

# loadgen times each span's landing by its row's commit timestamp (on Citus: the worker's commit).
COMMIT_TIMES = {"track_commit_timestamp": "on"}


def postmaster_pid(cluster: EmbeddedPostgres) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])


class SingleServer:
    """One embedded PostgreSQL (native or timescale flavor): what `make bench` measures by default."""

    def __init__(self, root: Path, timescale: bool | None) -> None:
        self.entry = EmbeddedPostgres(root / "pg", port=free_port(), timescale=timescale, extra_settings=COMMIT_TIMES)

    def start(self) -> str:
        return self.entry.start()

    def postmasters(self) -> dict[str, int]:
        return {"postgres": postmaster_pid(self.entry)}

    def create_database(self, psql: Psql, name: str) -> str:
        psql.run("postgres", f"DROP DATABASE IF EXISTS {name}")
        psql.run("postgres", f"CREATE DATABASE {name}")
        return self.entry.admin_dsn(name)

    def drop_database(self, psql: Psql, name: str) -> None:
        psql.run("postgres", f"DROP DATABASE {name}")

    def checkpoint(self) -> None:
        Psql(self.entry).run("postgres", "CHECKPOINT")

    def stop(self) -> None:
        self.entry.stop()

    def destroy(self) -> None:
        self.entry.destroy()


class CitusServers:
    """A coordinator and two workers on loopback (the Citus tests' cluster); the receiver, psql and loadgen
    connect to the coordinator, and `migrate` distributes the signal tables over the workers."""

    def __init__(self, root: Path, shard_count: int) -> None:
        self.shard_count = shard_count
        self.cluster = CitusCluster(
            root / "citus", extra_settings={**COMMIT_TIMES, "citus.shard_count": str(shard_count)}
        )
        self.entry = self.cluster.coordinator

    def start(self) -> str:
        self.cluster.start()
        return self.cluster.add_database_sync(DATABASE)

    def postmasters(self) -> dict[str, int]:
        return {name: postmaster_pid(node) for name, node in zip(NODE_NAMES, self.cluster.nodes, strict=True)}

    def create_database(self, psql: Psql, name: str) -> str:
        self.cluster.drop_database_sync(name)
        return self.cluster.add_database_sync(name)

    def drop_database(self, psql: Psql, name: str) -> None:
        self.cluster.drop_database_sync(name)

    def checkpoint(self) -> None:
        """On every node: the workers write the rows, so theirs matter most."""
        for node in self.cluster.nodes:
            Psql(node).run("postgres", "CHECKPOINT")

    def stop(self) -> None:
        self.cluster.stop()

    def destroy(self) -> None:
        self.cluster.destroy()


Servers = SingleServer | CitusServers


def postgres_major() -> str:
    """The major version of the PostgreSQL whose binaries the bench uses (for the missing-Citus message)."""
    try:
        bindir = find_bindir()
        done = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30)
    except (EmbeddedDatabaseError, OSError, subprocess.TimeoutExpired):
        return "(none found)"
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", done.stdout)  # "postgres (PostgreSQL) 15.18 (Debian …)"
    return found.group(1) if found else done.stdout.strip()


# -- the run --------------------------------------------------------------------------------------------


def run_loadgen(
    receiver: Receiver, protocol: str, duration: float, exporters: int, batch_spans: int, dsn: str, extra: list[str]
) -> dict:
    command = [
        sys.executable,
        "-m",
        "llm_observatory_loadgen",
        "--target",
        receiver.target(protocol),
        "--protocol",
        protocol,
        "--rate",
        "0",
        "--duration",
        str(duration),
        "--exporters",
        str(exporters),
        "--batch-spans",
        str(batch_spans),
        "--max-in-flight",
        str(max(64, exporters)),
        "--verify",
        dsn,
        "--json",
        *extra,
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    if done.returncode == 2 or not done.stdout.strip():
        raise RuntimeError(f"loadgen could not run (exit {done.returncode})")
    return json.loads(done.stdout)


def landed_at(report: dict) -> float:
    """Wall time at which the run's last acknowledged span was committed (or found)."""
    v = report["verification"] or {}
    after = v.get("last_commit_after_s")
    if after is None:
        after = v.get("complete_after_s") or 0.0
    return report["run"]["sending_ended_at"] + max(0.0, after)


def checked(report: dict) -> dict:
    v = report["verification"] or {}
    if "error" in v:
        raise RuntimeError(f"loadgen's verification failed: {v['error']}")
    return v


def parse_small(text_value: str) -> list[tuple[str, int]]:
    """'grpc:1,http:1,grpc:16' -> [('grpc', 1), ('http', 1), ('grpc', 16)]; '' -> []."""
    out = []
    for item in filter(None, (x.strip() for x in text_value.split(","))):
        protocol, _, spans = item.partition(":")
        if protocol not in ("grpc", "http") or not spans.isdigit() or int(spans) < 1:
            raise argparse.ArgumentTypeError(f"{item!r} is not PROTOCOL:SPANS (e.g. grpc:1)")
        out.append((protocol, int(spans)))
    return out


def small_requests(
    receiver: Receiver, sampler: CpuSampler, args: argparse.Namespace, dsn: str, extra: list[str]
) -> list[dict]:
    """The fixed cost of a request: receiver CPU per export attempt, closed loop, small requests."""
    results = []
    for protocol, spans in args.small:
        print(f"bench: {spans}-span requests over {protocol}, {args.small_exporters} exporters", file=sys.stderr)
        report = run_loadgen(receiver, protocol, args.small_duration, args.small_exporters, spans, dsn, extra)
        v = checked(report)
        started, ended = report["run"]["started_at"], landed_at(report)
        cpu = sampler.between("receiver", started, ended)
        traces = report["signals"]["traces"]
        attempts = traces["requests"]["attempts"]
        results.append(
            {
                "protocol": protocol,
                "batch_spans": spans,
                "exporters": args.small_exporters,
                "requests": attempts,
                "requests_per_s": round(attempts / (ended - started), 1) if ended > started else None,
                "receiver_cpu_us_per_request": round(cpu / attempts * 1e6, 1) if attempts else None,
                "receiver_cores": round(cpu / (ended - started), 2) if ended > started else None,
                "acknowledged_spans": traces["acknowledged"],
                "lost": v.get("lost"),
                "verified": v.get("ok"),
                "refusals": traces["refusals"],
            }
        )
    return results


def settings_from(items: list[str]) -> dict[str, str]:
    """--set SECTION.KEY=VALUE options as the receiver's environment variables."""
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        settings[f"OBSERVATORY__{section.upper()}__{name.upper()}"] = value
    return settings


def bench(args: argparse.Namespace, extra: list[str]) -> dict:
    root = throwaway_dir("bench")
    servers: Servers
    if args.flavor == "citus":
        servers = CitusServers(root, args.citus_shards)
    else:
        servers = SingleServer(root, {"auto": None, "timescale": True, "native": False}[args.flavor])
    receiver: Receiver | None = None
    sampler: CpuSampler | None = None
    try:
        what = "a Citus coordinator and two workers" if isinstance(servers, CitusServers) else "PostgreSQL"
        print(f"bench: starting {what} under {root}", file=sys.stderr, flush=True)
        dsn = servers.start()
        settings = settings_from(args.set)
        if args.workers is not None:
            settings["OBSERVATORY__OTLP__WORKERS"] = str(args.workers)
        receiver = Receiver(dsn, root, settings)
        # On Citus the receiver's first maintenance pass creates every partition's shards before it is ready.
        receiver.start(timeout_s=300 if isinstance(servers, CitusServers) else 60)
        postmasters = servers.postmasters()
        sampler = CpuSampler({"receiver": receiver.proc.pid, **postmasters})  # type: ignore[union-attr]
        sampler.start()
        result: dict = {
            "cpus": os.cpu_count(),
            "workers": args.workers or 1,
            "receiver_settings": settings,
        }
        report = None
        if not args.small_only:
            print("bench: receiver ready; running loadgen flat out", file=sys.stderr, flush=True)
            report = run_loadgen(receiver, args.protocol, args.duration, args.exporters, args.batch_spans, dsn, extra)
        result["small_requests"] = small_requests(receiver, sampler, args, dsn, extra)
        sampler.stop()
        rss = receiver.peak_rss_mb()
        receiver.stop()
        result["receiver_peak_rss_mb"] = rss
        if report is None:
            return result

        traces = report["signals"]["traces"]
        v = checked(report)
        started = report["run"]["started_at"]
        landed_time = landed_at(report)
        landed = v.get("found", 0)
        cpu = {name: sampler.between(name, started, landed_time) for name in ("receiver", *postmasters)}
        cpu["postgres"] = sum(cpu[name] for name in postmasters)  # on Citus: coordinator + both workers

        print("bench: measuring the raw-COPY ceiling (psql, binary COPY)", file=sys.stderr, flush=True)
        psql = Psql(servers.entry)
        run = run_range(report["run_id"])
        stored = int(psql.scalar("observatory", f"SELECT count(*) FROM llm_traces WHERE {run}"))
        streams = sorted({1, max(1, os.cpu_count() or 1)} | set(args.copy_streams))
        ceilings: list[dict] = []
        ceiling_missing = None
        try:
            for n in streams:
                files = export_rows(psql, "observatory", root, n, run)
                ceilings.append(copy_ceiling(psql, servers, files, stored, root))
                for f in files:
                    f.unlink()
        except RuntimeError as exc:
            if not isinstance(servers, CitusServers):
                raise
            # No number rather than one that does not measure the same path (the figures above still hold).
            ceiling_missing = f"raw COPY through the coordinator failed: {exc}"
            ceilings = []
        best = max(ceilings, key=lambda c: c["rows_per_s"]) if ceilings else None
        citus = None
        if isinstance(servers, CitusServers):
            kind = psql.scalar(
                "observatory", "SELECT citus_table_type FROM citus_tables WHERE table_name = 'llm_traces'::regclass"
            )
            if kind != "distributed":
                raise RuntimeError(f"llm_traces is not distributed on the Citus cluster (citus_tables says {kind!r})")
            citus = {"workers": len(servers.cluster.workers), "shard_count": servers.shard_count}
        landed_per_s = landed / (landed_time - started) if landed_time > started else 0.0
        result.update(
            {
                "duration_s": args.duration,
                "rate": report["config"]["rate"],
                "protocol": args.protocol,
                "exporters": args.exporters,
                "batch_spans": args.batch_spans,
                "bytes_per_span": report["workload"]["bytes_per_span"],
                "flavor": psql.scalar(
                    "observatory", "SELECT flavor FROM schema_migrations ORDER BY version DESC LIMIT 1"
                ),
                "citus": citus,
                "acknowledged_spans": traces["acknowledged"],
                "acknowledged_per_s": traces["acknowledged_per_s"],
                "landed_spans": landed,
                "landed_per_s": round(landed_per_s, 1),
                "landed_in_s": round(landed_time - started, 3),
                "lost": v.get("lost"),
                "verified": v.get("ok"),
                "refusals": traces["refusals"],
                "export_latency_ms": traces["latency_ms"]["rpc"],
                "landing_latency_ms": v.get("landing_latency_ms"),
                "receiver_cpu_s": round(cpu["receiver"], 3),
                "receiver_cpu_us_per_span": round(cpu["receiver"] / landed * 1e6, 1) if landed else None,
                "receiver_cores": round(cpu["receiver"] / (landed_time - started), 2),
                "postgres_cpu_us_per_span": round(cpu["postgres"] / landed * 1e6, 1) if landed else None,
                "postgres_cpu_us_per_span_by_node": {
                    name: round(cpu[name] / landed * 1e6, 1) if landed else None for name in postmasters
                },
                "postgres_cores": round(cpu["postgres"] / (landed_time - started), 2),
                "loadgen_cpu_us_per_span": report["generator"]["cpu_us_per_span"],
                "copy_ceilings": ceilings,
                "copy_ceiling_rows_per_s": best["rows_per_s"] if best else None,
                "copy_ceiling_missing": ceiling_missing,
                "ratio_to_copy_ceiling": round(landed_per_s / best["rows_per_s"], 3)
                if best and best["rows_per_s"]
                else None,
                "loadgen_run_id": report["run_id"],
            }
        )
        return result
    finally:
        if sampler is not None:
            sampler.stop()
        if receiver is not None:
            receiver.stop()
        if args.keep:
            servers.stop()
            (root / OWNER_FILE).unlink(missing_ok=True)  # kept on purpose: not an orphan to reap
            print(f"bench: kept {root} (delete it when done)", file=sys.stderr)
        else:
            servers.destroy()
            shutil.rmtree(root, ignore_errors=True)


def small_lines(r: dict) -> list[str]:
    lines = []
    for s in r.get("small_requests", []):
        protocol = "gRPC" if s["protocol"] == "grpc" else "HTTP"
        verified = "exactly" if s["verified"] else "NO"
        lines.append(
            f"  {s['batch_spans']:>3}-span {protocol:<4} {s['receiver_cpu_us_per_request']:>8,.1f} us/request "
            f"receiver CPU  ({s['requests']:,} requests, {s['requests_per_s']:,.0f}/s, {s['exporters']} in flight, "
            f"{s['receiver_cores']:.2f} cores; lost {s['lost']}, verified {verified}; "
            f"refusals {s['refusals'] or 'none'})"
        )
    return lines


def text(r: dict) -> str:
    peak = r["receiver_peak_rss_mb"]
    rss = f"receiver peak RSS (VmHWM) {peak['main']} MB" + (
        f", workers {', '.join(f'{w:g}' for w in peak['workers'])} MB" if peak["workers"] else ""
    )
    if "landed_spans" not in r:
        return "\n".join(
            [f"make bench (small requests only): {r['cpus']} CPUs, {r['workers']} worker(s); {rss}", *small_lines(r)]
        )
    lat = r["export_latency_ms"]
    land = r["landing_latency_ms"] or {}
    ceilings = ", ".join(f"{c['streams']} stream(s) {c['rows_per_s']:,}/s" for c in r["copy_ceilings"])
    citus = r.get("citus")
    flavor = r["flavor"]
    postgres = f"PostgreSQL {r['postgres_cpu_us_per_span']:,.1f} us/span"
    into = "into the same schema and indexes"
    if citus:
        flavor += (
            f" on Citus (coordinator + {citus['workers']} workers on loopback, {citus['shard_count']} shards/table)"
        )
        by_node = r["postgres_cpu_us_per_span_by_node"]
        postgres += (
            f" summed over the coordinator's and both workers' process trees "
            f"({' + '.join(f'{name} {us:,.1f}' for name, us in by_node.items())}; {r['postgres_cores']:.2f} cores)"
        )
        into = "through the coordinator into the same distributed table"
    if r["copy_ceiling_rows_per_s"] is not None:
        ceiling_lines = [
            f"  raw COPY      {r['copy_ceiling_rows_per_s']:>10,} rows/s  (psql binary COPY {into}: {ceilings})",
            f"  ratio         {r['ratio_to_copy_ceiling']:>10.1%}  of the raw-COPY ceiling (landed / ceiling)",
        ]
    else:
        ceiling_lines = [f"  raw COPY      {'n/a':>10}  ({r['copy_ceiling_missing']})", f"  ratio         {'n/a':>10}"]
    protocol = "gRPC" if r["protocol"] == "grpc" else "HTTP"
    verified = "exactly" if r["verified"] else "NO"
    load = f"open loop at {r['rate']:,.0f} spans/s" if r["rate"] else "flat out"
    lines = [
        f"make bench: {r['duration_s']:g} s {load}, OTLP/{protocol}, {r['exporters']} exporters x "
        f"{r['batch_spans']}-span requests, {r['bytes_per_span']:,} B/span; {r['cpus']} CPUs shared by "
        f"loadgen, receiver ({r['workers']} worker(s)) and PostgreSQL; schema flavor {flavor}",
        f"  acknowledged  {r['acknowledged_per_s']:>10,.0f} spans/s  ({r['acknowledged_spans']:,} spans; "
        f"refusals {r['refusals'] or 'none'})",
        f"  landed        {r['landed_per_s']:>10,.0f} spans/s  ({r['landed_spans']:,} in {r['landed_in_s']:.2f} s; "
        f"lost {r['lost']}, verified {verified})",
        f"  receiver CPU  {r['receiver_cpu_us_per_span']:>10,.1f} us/span  ({r['receiver_cores']:.2f} cores; "
        f"{postgres}, loadgen {r['loadgen_cpu_us_per_span']:,.1f} us/span)",
        f"  {rss}",
        f"  latency       export p50 {lat.get('p50', 0):.0f} ms, p99 {lat.get('p99', 0):.0f} ms; "
        f"landing (first send -> commit) p50 {land.get('p50', 0):.0f} ms, p99 {land.get('p99', 0):.0f} ms",
        *ceiling_lines,
        "  small requests (fixed cost per request):",
        *small_lines(r),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Start PostgreSQL and the receiver, run loadgen flat out, compare with a raw-COPY ceiling. "
        "Unknown options are passed to loadgen (e.g. --large-share 0.2 --gzip)."
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--exporters", type=int, default=4)
    parser.add_argument("--batch-spans", type=int, default=512)
    parser.add_argument(
        "--copy-streams", type=int, action="append", default=[], help="also measure COPY with N parallel streams"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="receiver setting, e.g. pipeline.writers=2",
    )
    parser.add_argument(
        "--flavor",
        choices=("auto", "native", "timescale", "citus"),
        default="auto",
        help="schema flavor: timescale where TimescaleDB is installed (auto, as make run), or force one; "
        "citus: the native flavor on a Citus coordinator and two workers on loopback",
    )
    parser.add_argument(
        "--citus-shards",
        type=int,
        default=4,
        help="--flavor citus: citus.shard_count, shards per distributed table (4, as the Citus tests: each "
        "partition is that many tables on the workers; Citus's own default is 32)",
    )
    parser.add_argument(
        "--small",
        type=parse_small,
        default=parse_small("grpc:1,http:1"),
        metavar="PROTO:SPANS,...",
        help="small-request runs after the main run (grpc:1,http:1; add grpc:16; '' = none)",
    )
    parser.add_argument("--small-duration", type=float, default=10.0, help="seconds of each small-request run (10)")
    parser.add_argument("--small-exporters", type=int, default=32, help="small requests in flight (32)")
    parser.add_argument("--small-only", action="store_true", help="only the small-request runs (no ceiling)")
    parser.add_argument("--workers", type=int, default=None, help="receiver worker processes (otlp.workers)")
    parser.add_argument("--keep", action="store_true", help="keep the database directory (stopped) for inspection")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args, extra = parser.parse_known_args(argv)
    if args.flavor == "citus" and not citus_installed():
        print(
            f"bench: Citus is not installed for PostgreSQL {postgres_major()}: build it from source "
            "(README, Citus section)",
            file=sys.stderr,
        )
        return 2
    try:
        result = bench(args, extra)
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text(result))
    return 0


if __name__ == "__main__":
    # SIGTERM: unwind through the `finally` that stops the receiver and the database (no orphans).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
