"""What a hostile request costs to decode: `python -m benchmarks.amplification` prints, per shape of
`tests/support/hostile.py` and converter path, the peak memory growth and CPU seconds of decoding one
body of `--size` bytes (default 2 MiB), and the outcome (rows, or the refusal).

Each measurement runs in a fresh process: the body is built first, then the process's peak RSS is reset
(/proc/self/clear_refs) and the request goes through the receiver's decode path exactly as a front end
hands it over (after gunzip): `decode_request` under a budget with the default limits of
config/receiver.toml. With --unlimited the limits are out of the way, and "charged" (what the budget
was charged: the estimate before decoding plus the text charged while converting) can be compared with
the real peak: it must stay above it (the budget's cost model, receiver/convert/scan.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time

PATHS = ("native", "pure")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def measure(shape_name: str, body_file: str, path: str, unlimited: bool) -> dict[str, object]:
    """Decode the body in `body_file` once (in this fresh process) and report what it cost."""
    from receiver.app.config import LimitsConfig
    from receiver.convert.budget import MIB, DecodeBudget, DecodeLimits, LimitExceeded
    from receiver.convert.common import ConvertOptions
    from receiver.frontends.decode import MalformedRequest, decode_request
    from receiver.frontends.signals import SIGNALS
    from tests.support.hostile import SHAPES

    shape = SHAPES[shape_name]
    spec = SIGNALS[shape.signal]
    config = LimitsConfig()
    limits = DecodeLimits(
        config.max_items_per_request,
        config.max_containers_per_request,
        config.max_request_memory_mib * MIB,
        config.max_decode_amplification,
    )
    if unlimited:
        limits = DecodeLimits(1 << 60, 1 << 60, 1 << 60, 1 << 40)
    budget = DecodeBudget(limits)
    with open(body_file, "rb") as f:
        body = f.read()  # one allocation: building it here would leave freed memory for decoding to reuse
    options = dataclasses.replace(ConvertOptions(), native=path == "native", budget=budget)
    gc.collect()
    rss_before = _status_kib("VmRSS")
    _reset_peak()
    cpu = time.process_time()
    try:
        decoded = decode_request(spec, body, shape.json, options)
        outcome = f"{len(decoded.converted.rows)} rows, {decoded.converted.rejected} rejected"
    except (MalformedRequest, LimitExceeded) as exc:
        outcome = f"refused: {str(exc)[:90]}"
    cpu = time.process_time() - cpu
    peak = _status_kib("VmHWM")
    return {
        "bytes": len(body),
        "growth_mb": (peak - rss_before) / 1024,
        "charged_mb": budget.nbytes / MIB,
        "cpu_s": cpu,
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2 * 1024 * 1024, help="body bytes (decompressed)")
    parser.add_argument("--shape", action="append", help="shape name (repeatable; default all)")
    parser.add_argument("--path", choices=[*PATHS, "both"], default="both", help="converter (convert.native)")
    parser.add_argument(
        "--unlimited", action="store_true", help="limits out of the way: what each shape costs, charged vs real"
    )
    parser.add_argument("--child", nargs=3, metavar=("SHAPE", "FILE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, unlimited=args.unlimited)))
        return
    from tests.support.hostile import SHAPES

    names = args.shape or list(SHAPES)
    paths = PATHS if args.path == "both" else (args.path,)
    print(
        f"{'shape':22} {'path':6} {'body MB':>8} {'peak +MB':>9} {'x body':>7} {'charged MB':>10} {'CPU s':>6}  outcome"
    )
    for name in names:
        shape = SHAPES[name]
        with tempfile.NamedTemporaryFile(prefix="amplification-") as body_file:
            body_file.write(shape.build(args.size))
            body_file.flush()
            for path in paths:
                child = [sys.executable, "-m", "benchmarks.amplification", "--child", name, body_file.name, path]
                child += ["--unlimited"] if args.unlimited else []
                result = subprocess.run(child, capture_output=True, text=True)
                if result.returncode != 0:
                    print(f"{name:22} {path:6} failed: {result.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(result.stdout.strip().splitlines()[-1])
                mb = r["bytes"] / 2**20
                print(
                    f"{name:22} {path:6} {mb:8.2f} {r['growth_mb']:9.1f} {r['growth_mb'] / mb:7.1f} "
                    f"{r['charged_mb']:10.1f} {r['cpu_s']:6.2f}  {r['outcome']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
