"""Pass or fail: was the rate sustained, and (with --verify) is every acknowledged span stored?

Rate sustained (open loop, per signal sent): the acknowledged rate is at least `sustain_ratio`
(default 0.95) of the offered rate, where

    acknowledged rate = items acknowledged / (time from the first due request to the last acknowledgement)
    offered rate      = items the timetable offered / the window (the requested duration)

Dividing by the time until the *last* acknowledgement, not by the window, matters: a receiver that
keeps up only at 90% of the rate builds a backlog that is still being acknowledged after the window
ends. Counted over the window alone those late acknowledgements would make it look sustained; over
window + drain it gets the 90% it really did. A healthy receiver's drain is one round trip, so it
loses nothing by this rule on a run of any useful length. Dropped (in-flight bound), refused for good
and partially rejected items all count as not acknowledged.

Closed loop (--rate 0) has no target rate: it fails only when nothing at all was acknowledged.
An interrupted run (Ctrl-C) reports what it did and fails: it did not run the duration asked for.
Verification fails on any lost, duplicated or unexpected span (and, for logs and metric points, on
fewer stored rows than acknowledged items). Spans stored although their request was never
acknowledged are reported but allowed: a request that timed out may well have landed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .stats import SignalStats
from .verify import Verification

LAG_WARNING_MS = 100.0


@dataclass(slots=True)
class Verdict:
    rate_sustained: bool | None  # None: closed loop, no target
    verified: bool | None  # None: no --verify
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)  # signal -> acknowledged rate / offered rate

    @property
    def ok(self) -> bool:
        return self.rate_sustained is not False and self.verified is not False and not self.problems

    def as_dict(self, sustain_ratio: float) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rate_sustained": self.rate_sustained,
            "verified": self.verified,
            "rule": (
                f"acknowledged rate (items / time from first due request to last acknowledgement) >= "
                f"{sustain_ratio:g} x offered rate (items offered / window), per signal; with --verify, "
                "no acknowledged span lost, duplicated or unexpected"
            ),
            "acknowledged_to_offered": {k: round(v, 4) for k, v in self.ratios.items()},
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def judge(
    signals: dict[str, SignalStats],
    open_loop: bool,
    window_s: float,
    elapsed_s: float,
    sustain_ratio: float,
    verification: Verification | None,
    verify_error: str | None,
    dispatch_lag_p99_ms: float | None,
    interrupted: bool,
    generator_capacity: float | None = None,
    rate: float = 0.0,
) -> Verdict:
    verdict = Verdict(rate_sustained=None, verified=None)
    if open_loop:
        sustained = True
        for name, st in signals.items():
            if st.offered_items == 0:
                continue
            offered_rate = st.offered_items / window_s if window_s > 0 else 0.0
            acked_rate = st.acked_items / elapsed_s if elapsed_s > 0 else 0.0
            ratio = acked_rate / offered_rate if offered_rate else 0.0
            verdict.ratios[name] = ratio
            if ratio < sustain_ratio:
                sustained = False
                verdict.problems.append(
                    f"{name}: acknowledged {acked_rate:,.0f} {st.noun}/s = {ratio:.1%} of the offered "
                    f"{offered_rate:,.0f}/s (needs {sustain_ratio:.0%})"
                )
        verdict.rate_sustained = sustained
    else:
        for name, st in signals.items():
            if st.offered_items and st.acked_items == 0:
                verdict.problems.append(f"{name}: nothing was acknowledged")
    if verify_error is not None:
        verdict.verified = False
        verdict.problems.append(f"verification failed: {verify_error}")
    elif verification is not None:
        verdict.verified = verification.ok
        v = verification
        if v.lost or v.duplicated or v.unexpected:
            verdict.problems.append(
                f"verification: {v.lost:,} acknowledged spans missing, {v.duplicated:,} duplicated, "
                f"{v.unexpected:,} unexpected"
            )
        if v.acknowledged and v.found == 0 and v.stored_unacknowledged == 0:
            verdict.problems.append(
                "verification: none of this run's spans is in that database; is --verify the receiver's database?"
            )
        for name, counts in v.signals.items():
            if counts["stored"] < counts["acknowledged"]:
                verdict.problems.append(
                    f"verification: {name}: {counts['stored']:,} stored of {counts['acknowledged']:,} acknowledged"
                )
    if dispatch_lag_p99_ms is not None and dispatch_lag_p99_ms > LAG_WARNING_MS:
        verdict.warnings.append(
            f"the generator fell behind its timetable (dispatch lag p99 {dispatch_lag_p99_ms:.0f} ms): it is "
            "short of CPU, so the receiver saw burstier load than asked; latencies count from the due time"
        )
    if generator_capacity is not None and rate > 0 and generator_capacity < 1.5 * rate:
        verdict.warnings.append(
            f"loadgen itself would saturate a core at ~{generator_capacity:,.0f} spans/s, close to the "
            f"{rate:,.0f} asked: its CPU competes with the receiver's (use a bigger --batch-spans, or no --gzip)"
        )
    if interrupted:
        verdict.problems.append(f"interrupted: the window was cut short at {window_s:.1f} s")
    return verdict
