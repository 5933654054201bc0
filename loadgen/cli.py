"""The command line: `llm-observatory-loadgen` / `python -m loadgen`.

Exit status: 0 the rate was sustained (and, with --verify, every acknowledged span is stored exactly
once); 1 it was not, or verification failed; 2 the run could not start (bad option, unreachable
target, unusable --verify database); 130 aborted with a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from . import __version__
from .bodies import ENCODINGS, build_pool, render_rate
from .ids import RunId
from .report import text
from .retry import RetryPolicy
from .runner import Settings, SetupError, run_sync
from .schedule import gzip_body
from .transport import PROTOCOLS, SIGNALS, split_target
from .workload import DEFAULT_MIX, WorkloadSpec, describe_mix, parse_mix

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_ABORTED = 0, 1, 2, 130


def _share(text_value: str) -> float:
    value = float(text_value)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text_value} is not between 0 and 1")
    return value


def _positive_int(text_value: str) -> int:
    value = int(text_value)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text_value} is not a positive integer")
    return value


def _non_negative(text_value: str) -> float:
    value = float(text_value)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text_value} is negative")
    return value


def _positive(text_value: str) -> float:
    value = float(text_value)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text_value} is not positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-observatory-loadgen",
        description="Send realistic LLM telemetry over OTLP at a target rate (open loop) or as fast as "
        "possible, report offered/acknowledged rates, latencies and refusals, and with --verify count "
        "exactly which acknowledged spans reached the database.",
        epilog="Exit status: 0 pass, 1 rate not sustained or verification failed, 2 could not start.",
    )
    t = p.add_argument_group("target")
    t.add_argument("--target", default=None, help="receiver HOST:PORT (default localhost:4317, or :4318 for http)")
    t.add_argument("--protocol", choices=PROTOCOLS, default="grpc", help="OTLP transport (default grpc)")
    t.add_argument("--encoding", choices=ENCODINGS, default="protobuf", help="body encoding; json needs http")
    t.add_argument("--gzip", action="store_true", help="gzip request bodies (Content-Encoding / grpc-encoding)")
    t.add_argument("--timeout", type=_positive, default=10.0, metavar="S", help="per-attempt export timeout (10)")

    load = p.add_argument_group("load")
    load.add_argument(
        "--rate",
        type=_non_negative,
        default=10_000.0,
        metavar="SPANS_PER_S",
        help="target spans/s, open loop (default 10000); 0 = as fast as acknowledged (closed loop)",
    )
    load.add_argument("--duration", type=_positive, default=60.0, metavar="S", help="sending window (default 60)")
    load.add_argument("--exporters", type=_positive_int, default=4, metavar="N", help="concurrent exporters (4)")
    load.add_argument("--batch-spans", type=_positive_int, default=512, metavar="N", help="spans per request (512)")
    load.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=64,
        metavar="N",
        help="requests in flight at most, all exporters (64); a request due beyond it is dropped and counted",
    )
    load.add_argument(
        "--signals",
        default="traces",
        metavar="LIST",
        help="traces[,metrics][,logs] (default traces); metrics/logs need receiver support",
    )
    load.add_argument("--metrics-interval", type=_positive, default=1.0, metavar="S", help="metric export interval (1)")

    w = p.add_argument_group("workload")
    w.add_argument(
        "--mix",
        default=describe_mix(DEFAULT_MIX),
        metavar="SHAPE=WEIGHT,...",
        help="trace shapes and weights, shapes chat, embeddings, tool, agent, genai "
        "(one ~760-byte GenAI chat span, not in the default; genai=100 sends only those) (%(default)s)",
    )
    w.add_argument("--legacy-share", type=_share, default=0.3, help="traces with legacy attribute names (0.3)")
    w.add_argument("--large-share", type=_share, default=0.05, help="LLM calls with large prompt+completion (0.05)")
    w.add_argument("--large-bytes", type=_positive_int, default=16384, help="size of a large prompt+completion (16384)")
    w.add_argument("--error-rate", type=_share, default=0.02, help="LLM/tool spans that end in error (0.02)")
    w.add_argument("--log-ratio", type=_share, default=0.5, help="log records per span, with --signals logs (0.5)")
    w.add_argument("--users", type=_positive_int, default=5000, help="user population, Zipf-distributed (5000)")
    w.add_argument("--user-skew", type=_positive, default=1.0, help="Zipf exponent of users: larger = hotter (1.0)")
    w.add_argument("--session-turns", type=_positive_int, default=6, help="traces per conversation (6)")
    w.add_argument("--pool", type=_positive_int, default=16, metavar="N", help="distinct pre-built bodies (16)")
    w.add_argument("--seed", type=int, default=None, help="reproduce a workload exactly")

    r = p.add_argument_group("retries (OTel exporter behaviour)")
    r.add_argument("--no-retry", action="store_true", help="never retry a refused export")
    r.add_argument("--retry-initial", type=_positive, default=1.0, metavar="S", help="first backoff (1)")
    r.add_argument("--retry-max-delay", type=_positive, default=5.0, metavar="S", help="longest backoff (5)")
    r.add_argument("--retry-max-elapsed", type=_non_negative, default=30.0, metavar="S", help="give up after (30)")

    v = p.add_argument_group("verification and verdict")
    v.add_argument("--verify", metavar="DSN", help="PostgreSQL URL of the receiver's database: count exactly")
    v.add_argument("--verify-timeout", type=_positive, default=60.0, metavar="S", help="wait for rows at most (60)")
    v.add_argument("--sustain-ratio", type=_share, default=0.95, help="acknowledged/offered rate needed to pass (0.95)")
    v.add_argument("--run-id", default=None, help="8 hex digits (default: random)")

    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    o.add_argument("--dry-run", action="store_true", help="build the pool, measure how fast it renders, send nothing")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    signals = frozenset(s.strip() for s in args.signals.split(",") if s.strip())
    unknown = signals - set(SIGNALS)
    if unknown or "traces" not in signals:
        parser.error(f"--signals {args.signals!r}: a list of {', '.join(SIGNALS)} that includes traces")
    if args.encoding == "json" and args.protocol == "grpc":
        parser.error("--encoding json needs --protocol http (OTLP/gRPC is protobuf only)")
    target = args.target or f"localhost:{4317 if args.protocol == 'grpc' else 4318}"
    try:
        split_target(target, args.protocol)
        mix = parse_mix(args.mix)
        if args.run_id:
            RunId.parse(args.run_id)
    except ValueError as exc:
        parser.error(str(exc))
    workload = WorkloadSpec(
        batch_spans=args.batch_spans,
        mix=mix,
        legacy_share=args.legacy_share,
        large_share=args.large_share,
        large_bytes=args.large_bytes,
        error_rate=args.error_rate,
        log_ratio=args.log_ratio,
        with_logs="logs" in signals,
        users=args.users,
        user_skew=args.user_skew,
        session_turns=args.session_turns,
    )
    retry = RetryPolicy(
        enabled=not args.no_retry,
        initial_s=args.retry_initial,
        max_delay_s=args.retry_max_delay,
        max_elapsed_s=args.retry_max_elapsed,
    )
    return Settings(
        target=target,
        protocol=args.protocol,
        encoding=args.encoding,
        gzip=args.gzip,
        rate=args.rate,
        duration_s=args.duration,
        exporters=args.exporters,
        max_in_flight=args.max_in_flight,
        timeout_s=args.timeout,
        signals=signals,
        metrics_interval_s=args.metrics_interval,
        pool_size=args.pool,
        seed=args.seed,
        workload=workload,
        retry=retry,
        verify_dsn=args.verify,
        verify_timeout_s=args.verify_timeout,
        sustain_ratio=args.sustain_ratio,
        run_id=args.run_id,
        progress=not args.quiet,
    )


def dry_run(settings: Settings) -> int:
    """How fast can this machine render request bodies? (No receiver needed.)"""
    pool = build_pool(settings.workload, RunId.new(), settings.encoding, settings.pool_size, settings.seed or 1)
    gzip = gzip_body if settings.gzip else None
    rate = render_rate(pool, 2.0, gzip)
    print(
        f"pool: {len(pool.entries)} bodies x {pool.spans_per_request} spans, {pool.bytes_per_span:,} B/span "
        f"({settings.encoding}), built in {pool.build_s:.2f} s\n"
        f"render (fresh trace ids{' + gzip' if gzip else ''}): {rate:,.0f} spans/s on one core"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from(args, parser)
    if args.dry_run:
        return dry_run(settings)
    try:
        doc = run_sync(settings)
    except SetupError as exc:
        print(f"llm-observatory-loadgen: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("llm-observatory-loadgen: aborted", file=sys.stderr)
        return EXIT_ABORTED
    if args.json:
        if not args.quiet:
            print(text(doc), file=sys.stderr)
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        print(text(doc))
    return EXIT_OK if doc["ok"] else EXIT_FAILED
