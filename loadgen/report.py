"""What a person or a machine reads: a progress line per second, the final text report, the --json document.

Progress goes to stderr so stdout carries only the report (with --json, only the JSON document).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .stats import RunStats, percentiles

JSON_FORMAT = 1
_PROTOCOL_NAMES = {"grpc": "gRPC", "http": "HTTP"}  # bumped when a field changes meaning or disappears


class Progress:
    """One line per second: rates over the last second, totals, in flight, refusals, retries."""

    def __init__(self, stats: RunStats, out: TextIO = sys.stderr) -> None:
        self.stats = stats
        self.out = out
        self._last: dict[str, tuple[int, int, int]] = {}

    def line(self, t: float) -> str:
        parts = []
        for name, st in self.stats.signals.items():
            if not st.offered_requests and name != "traces":
                continue
            offered0, acked0, lat0 = self._last.get(name, (0, 0, 0))
            recent = st.rpc_latencies[lat0:]
            p99 = percentiles(recent).get("p99") if recent else None
            parts.append(
                f"{name} offered {st.offered_items - offered0:,}/s acked {st.acked_items - acked0:,}/s "
                f"(total {st.acked_items:,})" + (f" p99 {p99:.0f} ms" if p99 is not None else "")
            )
            self._last[name] = (st.offered_items, st.acked_items, len(st.rpc_latencies))
        refusals = self.stats.total_refusals()
        retries = sum(s.retries for s in self.stats.signals.values())
        dropped = sum(s.dropped_requests for s in self.stats.signals.values())
        parts.append(
            f"in flight {self.stats.in_flight}, refusals {refusals:,}, retries {retries:,}, dropped {dropped:,}"
        )
        return f"[{t:4.0f}s] " + " | ".join(parts)

    def emit(self, t: float) -> None:
        print(self.line(t), file=self.out, flush=True)


def _ms(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "n/a"
    return f"p50 {stats['p50']:.1f} / p95 {stats['p95']:.1f} / p99 {stats['p99']:.1f} / max {stats['max']:.1f} ms"


def text(doc: dict[str, Any]) -> str:
    """The final report for people, from the same document --json prints."""
    cfg, run = doc["config"], doc["run"]
    lines = []
    mode = f"open loop at {cfg['rate']:,.0f} spans/s" if cfg["rate"] > 0 else "closed loop (as fast as acknowledged)"
    lines.append(
        f"loadgen run {doc['run_id']} -> {cfg['target']} OTLP/{_PROTOCOL_NAMES[cfg['protocol']]} {cfg['encoding']}"
        f"{' gzip' if cfg['gzip'] else ''}, {mode} for {cfg['duration_s']:g} s, {cfg['exporters']} exporters, "
        f"{cfg['batch_spans']}-span requests"
    )
    w = doc["workload"]
    lines.append(
        f"  workload: {w['bytes_per_span']:,} B/span on the wire, pool of {w['pool_bodies']} bodies "
        f"(built in {w['pool_build_s']:.1f} s), mix {w['mix']}, {w['legacy_share']:.0%} legacy names, "
        f"{w['large_share']:.0%} large ({w['large_bytes']:,} B), {w['error_rate']:.0%} errors"
    )
    last_ack = run["last_ack_s"]
    lines.append(
        f"  window {run['window_s']:.2f} s, "
        + (f"last acknowledgement at {last_ack:.2f} s, " if last_ack is not None else "nothing acknowledged, ")
        + f"drained at {run['drained_s']:.2f} s; peak in flight {run['peak_in_flight']} (bound {cfg['max_in_flight']})"
    )
    for name, s in doc["signals"].items():
        req = s["requests"]
        lines.append(
            f"{name:8s} offered {s['offered']:,} ({s['offered_per_s'] or 0:,.0f}/s), "
            f"acknowledged {s['acknowledged']:,} ({s['acknowledged_per_s'] or 0:,.0f}/s); "
            f"rejected {s['rejected']:,}, dropped {s['dropped']:,}, failed {s['failed']:,}"
        )
        lines.append(f"         latency rpc {_ms(s['latency_ms']['rpc'])}")
        lines.append(f"         latency ack {_ms(s['latency_ms']['ack'])} (from the time each request was due)")
        refusals = ", ".join(f"{k} x{v:,}" for k, v in s["refusals"].items()) or "none"
        lines.append(
            f"         refusals {refusals}; retries {req['retries']:,}; {req['attempts']:,} attempts "
            f"for {req['offered']:,} requests"
        )
        for status, message in s.get("examples", {}).items():
            if message:
                lines.append(f"         {status}: {message[:160]}")
    v = doc.get("verification")
    if v is not None:
        if "error" in v:
            lines.append(f"verify   ERROR: {v['error']}")
        else:
            lines.append(
                f"verify   {v['found']:,} of {v['acknowledged']:,} acknowledged spans stored: lost {v['lost']:,}, "
                f"duplicated {v['duplicated']:,}, unexpected {v['unexpected']:,}; stored though unacknowledged "
                f"{v['stored_unacknowledged']:,}"
            )
            done = v["complete_after_s"]
            lines.append(
                "         "
                + (
                    f"all present {done:.2f} s after sending ended (poll resolution {v['poll_resolution_s']:.2f} s)"
                    if done is not None
                    else f"not all present after waiting {v['waited_s']:.1f} s"
                )
                + (
                    f"; last row committed {v['last_commit_after_s']:+.2f} s after sending ended"
                    if v["last_commit_after_s"] is not None
                    else ""
                )
            )
            if v["landing_latency_ms"]:
                lines.append(f"         landing latency {_ms(v['landing_latency_ms'])} ({v['landing_latency_note']})")
            elif v["landing_latency_note"]:
                lines.append(f"         ({v['landing_latency_note']})")
            for name, counts in v["signals"].items():
                lines.append(f"         {name}: {counts['stored']:,} stored of {counts['acknowledged']:,} acknowledged")
    g = doc["generator"]
    lag = g["dispatch_lag_ms"]
    lines.append(
        f"generator cpu {g['cpu_s']:.2f} s = {g['cpu_us_per_span']:.1f} us/span "
        f"(one core would drive ~{g['capacity_spans_per_s']:,.0f} spans/s); render alone "
        f"~{g['render_spans_per_s']:,.0f} spans/s; dispatch lag "
        + (f"p99 {lag['p99']:.1f} ms" if lag.get("count") else "n/a (closed loop)")
    )
    verdict = doc["verdict"]
    for warning in verdict["warnings"]:
        lines.append(f"warning  {warning}")
    status = "PASS" if verdict["ok"] else "FAIL"
    ratios = ", ".join(f"{k} {v:.1%}" for k, v in verdict["acknowledged_to_offered"].items())
    detail = (
        f"acknowledged/offered rate: {ratios} (needs {cfg['sustain_ratio']:.0%})"
        if ratios
        else "closed loop, no target rate"
    )
    lines.append(f"verdict  {status}: {detail}" + ("; verified exactly" if verdict["verified"] else ""))
    for problem in verdict["problems"]:
        lines.append(f"         {problem}")
    return "\n".join(lines)
