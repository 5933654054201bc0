"""Instructions the whole receiver executes per 1-span request, under callgrind: front end, event loop,
request path and the writers' COPY, free of the machine's noise (which moves `make bench --small-only`'s
µs/request by ±25 % between runs minutes apart).

    python -m benchmarks.request_instructions [--protocol grpc|http] [--requests 1000] [--rate 50]

Starts an embedded PostgreSQL and `python -m receiver run` under `valgrind --tool=callgrind` (collection off
until the load starts), warms it up with loadgen, zeroes the counters, sends `--requests` 1-span requests
at `--rate` requests/s (a quiet service's pattern: about one request per wake-up of the event loop),
dumps the counters and divides. Needs valgrind; takes a minute or two. The figure compares commits
(before and after a change), not machines: callgrind runs the receiver ~50x slower, so work done per
second (timers, the writers' small batches) weighs more per request than at full speed. Runs of one
commit still differ by up to ~10 % (how requests fall into event-loop wake-ups and COPY batches): compare
medians of several. `benchmarks.request_path` (Ingest.handle alone) is steadier, to within 1 %.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.bench import Receiver, SingleServer, migrate, settings_from
from tests.support.cleanup import throwaway_dir


def totals(dump: Path) -> int:
    """The instruction total of one callgrind dump ("summary:" or "totals:" line)."""
    for line in dump.read_text().splitlines():
        match = re.match(r"(?:summary|totals): (\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"no totals in {dump}")


def loadgen(target: str, protocol: str, requests: int, rate: float) -> int:
    """Send `requests` 1-span requests at `rate`/s; the number acknowledged."""
    command = [
        sys.executable,
        "-m",
        "llm_observatory_loadgen",
        "--target",
        target,
        "--protocol",
        protocol,
        "--rate",
        str(rate),
        "--duration",
        str(requests / rate),
        "--batch-spans",
        "1",
        "--exporters",
        "8",
        "--json",
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    report = json.loads(out[out.index("{") :])
    return int(report["signals"]["traces"]["acknowledged"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s (spans/s: 1 span each)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--keep-dump", metavar="PATH", help="copy the callgrind dump here (callgrind_annotate)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    root = throwaway_dir("callgrind")
    server = SingleServer(root, timescale=False)
    dsn = server.start()
    receiver = None
    try:
        migrate(dsn, root)
        receiver = Receiver(dsn, root, settings_from(args.set))
        dump = root / "callgrind.out"
        receiver.command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={dump}",
            sys.executable,
            "-m",
            "receiver",
            "run",
        ]
        receiver.start(timeout_s=600)
        target = receiver.target(args.protocol)
        loadgen(target, args.protocol, max(100, args.requests // 5), args.rate)  # warm: imports, caches
        pid = receiver.proc.pid  # type: ignore[union-attr]
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        acknowledged = loadgen(target, args.protocol, args.requests, args.rate)
        time.sleep(2.0)  # the last rows' COPY (the writers flush within pipeline.max_wait)
        before = set(root.glob("callgrind.out*"))
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        dumps = sorted(set(root.glob("callgrind.out*")) - before, key=lambda p: p.stat().st_mtime)
        instructions = sum(totals(d) for d in dumps)
        if args.keep_dump and dumps:
            shutil.copy(dumps[-1], args.keep_dump)
        print(
            f"receiver, 1-span {args.protocol} requests at {args.rate:g}/s: {instructions / acknowledged:,.0f} "
            f"instructions per request ({acknowledged:,} requests, {instructions:,} instructions)"
        )
        return 0
    finally:
        if receiver is not None:
            receiver.stop(timeout_s=120)
        server.stop()
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (urllib.error.URLError, subprocess.CalledProcessError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
