"""Span rows for storage tests: built directly in `receiver.schema.TRACES_COLUMNS` order and COPYed the
way the receiver's writers do, plus the rollups' expected values computed from the raw rows in SQL.

The rows are deliberately awkward for rollups: spans over several days and at many minutes, LLM spans
with a provider but no model and the reverse, non-LLM spans (excluded), NULL tokens and costs, errors,
durations from sub-millisecond to minutes, repeated durations, users and environments with NULLs.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from receiver import schema
from receiver.storage.rollups import PERCENTILE_RELATIVE_ERROR

PROVIDERS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"), ("bedrock", None))
PROVIDERS += ((None, "llama-3-70b"),)
# Two tenants and spans sent with auth off (no project): the rollups must keep all three apart.
PROJECTS = (None, uuid.UUID("11111111-1111-4111-8111-111111111111"), uuid.UUID("22222222-2222-4222-8222-222222222222"))


def span_row(
    ts: datetime,
    *,
    provider: str | None = "openai",
    model: str | None = "gpt-4o",
    service: str | None = "svc",
    duration_ms: float = 100.0,
    status: str = "ok",
    input_tokens: int | None = 10,
    output_tokens: int | None = 5,
    input_cost: Decimal | None = Decimal("0.000010"),
    output_cost: Decimal | None = Decimal("0.000020"),
    user_id: str | None = "u1",
    environment: str | None = "prod",
    project_id: uuid.UUID | None = None,
) -> tuple[Any, ...]:
    total_tokens = (
        None if input_tokens is None and output_tokens is None else (input_tokens or 0) + (output_tokens or 0)
    )
    total_cost = None if input_cost is None and output_cost is None else (input_cost or 0) + (output_cost or 0)
    values = {
        "ts": ts,
        "end_ts": ts + timedelta(milliseconds=duration_ms),
        "trace_id": uuid.UUID(bytes=os.urandom(16)),
        "span_id": os.urandom(8).hex(),
        "parent_span_id": None,
        "span_name": f"chat {model}",
        "span_kind": "client",
        "service_name": service,
        "scope_name": "tests",
        "scope_version": None,
        "provider": provider,
        "model": model,
        "request_model": model,
        "response_model": model,
        "operation": "chat" if provider or model else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "cache_read_tokens": None,
        "cache_creation_tokens": None,
        "reasoning_tokens": None,
        "input_cost": input_cost,
        "output_cost": output_cost,
        "total_cost": total_cost,
        "cost_source": "pricing" if total_cost is not None else None,
        "duration_ms": duration_ms,
        "status_code": status,
        "status_message": "boom" if status == "error" else None,
        "user_id": user_id,
        "session_id": f"s-{user_id}" if user_id else None,
        "environment": environment,
        "tags": None,
        "finish_reasons": None,
        "trace_state": None,
        "attributes": '{"gen_ai.input.messages": "' + "p" * 300 + '"}',
        "resource_attributes": '{"service.name": "svc"}',
        "events": None,
        "links": None,
        "project_id": project_id,
    }
    return tuple(values[c] for c in schema.TRACES_COLUMNS)


def varied_rows(
    start: datetime, days: int, count: int, seed: int = 1, projects: Sequence[uuid.UUID | None] = PROJECTS
) -> list[tuple[Any, ...]]:
    """`count` spans spread over `days` days from `start`, one in eight of them not an LLM span, each of
    one of `projects`."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        ts = start + timedelta(seconds=rng.randrange(days * 86_400 - 3_600), microseconds=rng.randrange(10**6))
        if i % 8 == 7:  # a non-LLM span: no provider, no model -> not in the rollups
            rows.append(
                span_row(
                    ts,
                    provider=None,
                    model=None,
                    input_tokens=None,
                    output_tokens=None,
                    input_cost=None,
                    output_cost=None,
                    user_id=None,
                    project_id=rng.choice(projects),
                )
            )
            continue
        provider, model = rng.choice(PROVIDERS)
        duration = rng.choice((0.02, 0.5, 3.0, 42.0)) if i % 11 == 0 else math.exp(rng.uniform(math.log(0.2), 12))
        priced = rng.random() < 0.8
        rows.append(
            span_row(
                ts,
                provider=provider,
                model=model,
                service=rng.choice(("chat-api", "agent", None)),
                duration_ms=round(duration, 3),
                status="error" if rng.random() < 0.07 else rng.choice(("ok", "unset")),
                input_tokens=rng.randint(1, 5000) if rng.random() < 0.9 else None,
                output_tokens=rng.randint(1, 900) if rng.random() < 0.9 else None,
                input_cost=Decimal(rng.randint(1, 10**6)) / Decimal(10**9) if priced else None,
                output_cost=Decimal(rng.randint(1, 10**6)) / Decimal(10**9) if priced else None,
                user_id=rng.choice(("alice", "bob", "carol", None)),
                environment=rng.choice(("prod", "staging", None)),
                project_id=rng.choice(projects),
            )
        )
    return rows


async def copy_spans(
    conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]], *, before_tenancy: bool = False
) -> None:
    """COPY span rows; `before_tenancy`: into a schema older than migration 010 (no project_id column)."""
    columns = list(schema.TRACES_COLUMNS)
    if before_tenancy:
        index = columns.index("project_id")
        assert all(row[index] is None for row in rows), "spans had no project before migration 010"
        del columns[index]
        rows = [row[:index] + row[index + 1 :] for row in rows]
    await conn.copy_records_to_table(schema.TRACES_TABLE, records=rows, columns=columns)


# The rollups recomputed from the raw spans, with percentile_disc for the true percentiles.
_DIMS = ("project_id", "provider", "model", "service_name")
_BUCKETS = {
    "llm_metrics_1min": ("1 minute", _DIMS),
    "llm_metrics_1hour": ("1 hour", _DIMS),
    "llm_metrics_1day": ("1 day", _DIMS),
    "cost_analysis_hourly": ("1 hour", (*_DIMS, "user_id", "environment")),
    "usage_environment_hourly": ("1 hour", (*_DIMS, "environment")),
}


def _direct_sql(view: str) -> str:
    width, dims = _BUCKETS[view]
    cost = "coalesce(sum(input_cost), 0) AS input_cost, coalesce(sum(output_cost), 0) AS output_cost, "
    return f"""
    SELECT date_bin('{width}', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, {", ".join(dims)},
           count(*) AS request_count, count(*) FILTER (WHERE status_code = 'error') AS error_count,
           coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
           coalesce(sum(output_tokens), 0)::bigint AS output_tokens,
           coalesce(sum(total_tokens), 0)::bigint AS total_tokens, {cost if "environment" in dims else ""}
           coalesce(sum(total_cost), 0) AS total_cost, avg(duration_ms) AS avg_latency_ms,
           min(duration_ms) AS min_latency_ms, max(duration_ms) AS max_latency_ms,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_latency_ms,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_latency_ms,
           percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_latency_ms
    FROM llm_traces WHERE provider IS NOT NULL OR model IS NOT NULL
    GROUP BY 1, {", ".join(dims)}
    """


EXACT = (
    "request_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "total_cost",
    "min_latency_ms",
    "max_latency_ms",
)


def _close_percentile(estimate: float, true: float) -> bool:
    if true < 0.0625:  # the underflow bucket: absolute error below 0.0625 ms
        return abs(estimate - true) <= 0.0625
    return abs(estimate - true) <= true * PERCENTILE_RELATIVE_ERROR * (1 + 1e-9)


async def assert_rollups_match_raw(conn: asyncpg.Connection) -> dict[str, int]:
    """Every rollup view equals a direct aggregate of llm_traces: counts, tokens and costs exactly,
    the average to float precision, percentiles within the histogram's stated error. Returns row counts."""
    counts = {}
    for view, (_, dims) in _BUCKETS.items():
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", view):
            continue  # a database migrated to an older version (usage_environment_hourly: migration 016)
        keys = ("bucket", *dims)
        expected = {tuple(r[k] for k in keys): r for r in await conn.fetch(_direct_sql(view))}
        actual = {tuple(r[k] for k in keys): r for r in await conn.fetch(f"SELECT * FROM {view}")}
        assert set(actual) == set(expected), f"{view}: groups differ: {set(actual) ^ set(expected)}"
        for key, want in expected.items():
            got = actual[key]
            columns = EXACT + (("input_cost", "output_cost") if "environment" in dims else ())
            for column in columns:
                assert got[column] == want[column], f"{view} {key} {column}: {got[column]} != {want[column]}"
            assert math.isclose(got["avg_latency_ms"], want["avg_latency_ms"], rel_tol=1e-9), (view, key)
            assert got["error_rate"] == want["error_count"] / want["request_count"]
            for q in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms"):
                assert _close_percentile(got[q], want[q]), f"{view} {key} {q}: {got[q]} vs true {want[q]}"
        # The stored histograms, bucket for bucket, equal migration 005's per-span aggregate over the raw
        # spans (the passes build them another way: migration 017).
        width = _BUCKETS[view][0]
        histograms = await conn.fetch(
            f"SELECT s.bucket, {', '.join(f's.{d}' for d in dims)}, s.latency_histogram AS stored, r.direct "
            f"FROM {view}_store s JOIN (SELECT date_bin('{width}', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') "
            f"AS bucket, {', '.join(dims)}, latency_histogram(duration_ms) AS direct FROM llm_traces "
            f"WHERE provider IS NOT NULL OR model IS NOT NULL GROUP BY 1, {', '.join(dims)}) r "
            f"ON r.bucket = s.bucket AND {' AND '.join(f'r.{d} IS NOT DISTINCT FROM s.{d}' for d in dims)}"
        )
        assert len(histograms) == len(expected), f"{view}: {len(histograms)} store rows joined, {len(expected)} groups"
        for row in histograms:
            assert row["stored"] == row["direct"], f"{view} {tuple(row)[:-2]}: histogram differs from the raw spans'"
        counts[view] = len(expected)
    return counts
