"""Instructions per span of decode + convert: `python -m benchmarks.instructions` (needs valgrind).

Time on a 2-core machine shared with PostgreSQL and colleagues is noisy; instruction counts are not.
Each configuration of `benchmarks.convert` (request kind x path) runs under callgrind twice, with N and
2N rounds; the difference is the cost of N rounds alone (start-up and imports cancel out), divided by
N x spans. PYTHONHASHSEED is fixed so both runs hash the same. `--signals` does the same for the metric
points and log records of `benchmarks.convert_metrics_logs` (per point / record, as the front ends
decode them). `--path json` counts the same requests as OTLP/JSON (the transcoder, receiver/convert/
_jsonwire.c); `json-encoder` the JSON trace path before it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys


def instructions(request: str, path: str, rounds: int, spans: int, bounded: bool = False, no_gc: bool = False) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.convert",
        "--quiet",
        f"--request={request}",
        f"--path={path}",
        f"--rounds={rounds}",
        f"--spans={spans}",
        *(["--bounded"] if bounded else []),
        *(["--no-gc"] if no_gc else []),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True
    )
    match = re.search(r"Collected\s*:\s*([\d,]+)", result.stderr) or re.search(r"refs:\s*([\d,]+)", result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def signal_instructions(signal: str, path: str, rounds: int, bounded: bool = False) -> int:
    """callgrind's count for `rounds` requests of one signal on one path (benchmarks.convert_metrics_logs)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.convert_metrics_logs",
        "--quiet",
        "--no-reference",
        "--repeats=1",
        f"--signal={signal}",
        f"--path={path}",
        f"--rounds={rounds}",
        *(["--bounded"] if bounded else []),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True
    )
    match = re.search(r"Collected\s*:\s*([\d,]+)", result.stderr) or re.search(r"refs:\s*([\d,]+)", result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="N (the second run has 2N)")
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--request", choices=["loadgen", "genai", "small", "all"], default="all")
    parser.add_argument(
        "--path", choices=["pure", "native", "native-pyrules", "json", "json-encoder", "both"], default="both"
    )
    parser.add_argument("--bounded", action="store_true", help="as the front ends decode: scan + budget")
    parser.add_argument("--no-gc", action="store_true", help="collector off: N vs 2N rounds differ by no GC pass")
    parser.add_argument("--signals", action="store_true", help="metric points and log records (512 per request)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if args.signals:
        for signal, unit in (("metrics", "point"), ("logs", "record")):
            for path in ["pure", "native"] if args.path == "both" else [args.path]:
                once = signal_instructions(signal, path, args.rounds, args.bounded)
                twice = signal_instructions(signal, path, 2 * args.rounds, args.bounded)
                per_item = (twice - once) / (args.rounds * 512)
                print(f"{signal:7} {path:6}: {per_item:9,.0f} instructions/{unit}", flush=True)
        return
    for request in ["loadgen", "genai", "small"] if args.request == "all" else [args.request]:
        for path in ["pure", "native"] if args.path == "both" else [args.path]:
            once = instructions(request, path, args.rounds, args.spans, args.bounded, args.no_gc)
            twice = instructions(request, path, 2 * args.rounds, args.spans, args.bounded, args.no_gc)
            per_span = (twice - once) / (args.rounds * args.spans)
            print(f"{request:6} {path:14}: {per_span:9,.0f} instructions/span", flush=True)


if __name__ == "__main__":
    main()
