"""otlp.workers = 2: two worker processes behind one supervisor, with the real database and real clients.

- the supervisor tells systemd READY=1 once both workers serve, STOPPING=1 on SIGTERM;
- both workers take connections on the shared ports (SO_REUSEPORT), and the supervisor's /metrics adds
  their counters up to exactly what was sent; the queue and memory budgets are split between them; with
  both running maintenance, the rollups still equal a direct aggregate of the raw spans (one
  maintenance pass at a time: the advisory lock);
- kill -9 of a loaded worker in spool mode while nothing can be committed: the worker is replaced, its
  successor replays the dead worker's spool, and after SIGTERM (every worker drains, exit 0) every
  acknowledged span is stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid

import orjson
import pytest
import structlog.testing

from receiver.app.config import load_config
from receiver.app.workers import Supervisor, WorkerShares, worker_shares
from tests.support.load import SteadyLoad
from tests.support.otlp import export_grpc, export_http, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.spans import assert_rollups_match_raw
from tests.support.wait import wait_until
from tests.test_reliability import TableLock, _has_acked, assert_exactly_once
from tests.test_systemd import NotifySocket

LLM_ATTRIBUTES = {
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 20,
}


async def health(proc: ReceiverProcess) -> dict:
    _, text = await proc.get("/health")
    return orjson.loads(text)


async def test_two_workers_share_the_ports_and_add_up(database, tmp_path):
    proc = ReceiverProcess(
        database.dsn,
        tmp_path,
        otlp__workers=2,
        maintenance__interval_s=1,
        maintenance__rollup_delay_s=0,
    )
    notify = NotifySocket(f"@llmobs-test-{uuid.uuid4().hex}")  # as systemd would, for a Type=notify unit
    proc.extra_env = {"NOTIFY_SOCKET": notify.address}
    await proc.start(wait_ready=False)
    ready = await notify.until(lambda m: "READY" in m)
    # READY=1 comes from the supervisor once both workers serve: /health says so at that moment.
    report = await health(proc)
    assert report["workers"]["running"] == 2 and report["ready"], report
    assert len({p["pid"] for p in report["workers"]["processes"]}) == 2
    # The memory budgets are the receiver's, split over its workers (defaults: 128 MiB and 100,000 rows
    # of queue, 1024 MiB of RSS): the sums are what was configured, not twice that.
    assert report["queue"]["capacity_bytes"] == 128 * 1024 * 1024, report["queue"]
    assert report["queue"]["capacity_rows"] == 100_000, report["queue"]
    assert report["memory"]["limit_bytes"] == 1024 * 1024 * 1024, report["memory"]
    assert report["memory"]["limit_bytes_per_worker"] == 512 * 1024 * 1024, report["memory"]
    assert await proc.metric("observatory_queue_bytes_capacity") == 128 * 1024 * 1024
    # Each worker refuses above its share: the metric is the share, next to the largest worker's RSS
    # (observatory_memory_rss_bytes), as the ReceiverMemoryNearLimit alert divides them.
    assert await proc.metric("observatory_memory_limit_bytes") == 512 * 1024 * 1024
    assert ready["STATUS"].startswith("ready: 2 of 2 workers running"), ready

    service = f"workers-{uuid.uuid4().hex[:6]}"
    requests, per_request = 16, 5
    # Every request on a connection of its own (a new channel / session): the kernel spreads connections.
    sends = []
    for i in range(requests):
        spans = [span(f"chat-{i}-{k}", attributes=LLM_ATTRIBUTES) for k in range(per_request)]
        request = trace_request(spans, service)
        sends.append(export_grpc(proc.grpc_target, request) if i % 2 else export_http(proc.http_url, request))
    results = await asyncio.gather(*sends)
    assert all(r[0].status == 200 for r in results[0::2])
    sent = requests * per_request

    served = {p["worker"]: p["requests"] for p in (await health(proc))["workers"]["processes"]}
    assert all(n > 0 for n in served.values()) and sum(served.values()) == requests, served
    metrics = await proc.metrics()
    for worker in (0, 1):
        assert metrics[f'observatory_worker_requests_total{{worker="{worker}"}}'] == served[worker]
    assert await proc.metric("otelcol_receiver_accepted_spans_total") == sent
    await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", sent, service)

    async def committed_counted() -> bool:
        return await proc.metric("otelcol_exporter_sent_spans_total") >= sent

    await wait_until(committed_counted, what="the summed committed-spans counter")
    assert await proc.metric("otelcol_exporter_sent_spans_total") == sent

    # Both workers run maintenance every second; the advisory lock lets one pass run at a time, so the
    # rollups count every span once.
    await database.wait_for_count("SELECT coalesce(sum(request_count), 0) FROM llm_metrics_1min", sent)
    conn = await database.connect()
    try:
        await assert_rollups_match_raw(conn)
    finally:
        await conn.close()
    proc.proc.send_signal(signal.SIGTERM)
    await notify.until(lambda m: "STOPPING" in m)
    assert await proc.stop() == 0
    notify.close()
    assert sum("READY" in m for m in notify.messages) == 1, notify.messages


async def test_kill_9_of_a_worker_loses_nothing_acknowledged(database, tmp_path):
    spool_dir = tmp_path / "spool"
    proc = ReceiverProcess(
        database.dsn,
        tmp_path,
        otlp__workers=2,
        pipeline__durability="spool",
        spool__dir=str(spool_dir),
        spool__segment_bytes=256 * 1024,
    )
    await proc.start()
    service = f"workers-kill-{uuid.uuid4().hex[:6]}"
    load = SteadyLoad(proc, service, spans_per_request=40, interval_s=0.02, senders=6)
    async with TableLock(database.dsn) as lock:  # nothing commits: acknowledged spans are only in spools
        load.start()
        await wait_until(_has_acked(load, 3000), what="spans acknowledged into the spools")
        before = await health(proc)
        victim = max(before["workers"]["processes"], key=lambda p: p["requests"])
        assert victim["requests"] > 0
        os.kill(victim["pid"], signal.SIGKILL)

        async def replaced() -> bool:
            report = await health(proc)
            now = {p["worker"]: p for p in report["workers"]["processes"]}[victim["worker"]]
            return report["workers"]["restarts"] == 1 and now["pid"] not in (None, victim["pid"])

        await wait_until(replaced, timeout=30, what="the killed worker replaced")
        assert any((spool_dir / f"worker-{victim['worker']}").glob("*.spool"))
        acked_at_kill = len(load.result.acked)
        await lock.release()
        await wait_until(_has_acked(load, acked_at_kill + 1000), what="load served after the kill")
    result = await load.stop()
    await proc.wait_ready()
    assert (await health(proc))["workers"]["running"] == 2

    assert await proc.stop() == 0  # SIGTERM: every worker drains to the database, then exits
    stored = await assert_exactly_once(database, service, result.acked, timeout=5)
    print(
        f"kill -9 of worker {victim['worker']}: {len(result.acked)} acknowledged, {len(stored)} stored, "
        f"{result.lost_answers} requests unanswered (not acknowledged)"
    )


@pytest.mark.parametrize("value", ["0", "many"])
async def test_invalid_workers_setting_names_the_key(tmp_path, value):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "config",
        "check",
        env={**os.environ, "OBSERVATORY__OTLP__WORKERS": value},
        cwd=str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"otlp.workers" in err


def test_worker_shares_split_the_budgets_and_keep_each_settings_minimum():
    env = {
        "OBSERVATORY__PIPELINE__QUEUE_MAX_BYTES": str(3 * 1024 * 1024),
        "OBSERVATORY__PIPELINE__QUEUE_MAX_ROWS": "10",
        "OBSERVATORY__LIMITS__MEMORY_LIMIT_MIB": "1000",
        "OBSERVATORY__SPOOL__MAX_BYTES": str(1024 * 1024 * 1024),
    }
    shares = worker_shares(load_config(None, env=env), 4)
    # 3 MiB / 4 is below queue_max_bytes' own minimum (1 MiB): each worker keeps the minimum.
    assert shares == WorkerShares(
        spool_bytes=256 * 1024 * 1024, queue_bytes=1024 * 1024, queue_rows=2, memory_limit_mib=250
    )
    off = worker_shares(load_config(None, env={"OBSERVATORY__LIMITS__MEMORY_LIMIT_MIB": "0"}), 3)
    assert off.memory_limit_mib == 0  # off stays off: 0 // N must not become a 1 MiB limit
    # Every share is a value its setting accepts: a worker given them starts.
    load_config(
        None,
        env={
            "OBSERVATORY__PIPELINE__QUEUE_MAX_BYTES": str(shares.queue_bytes),
            "OBSERVATORY__PIPELINE__QUEUE_MAX_ROWS": str(shares.queue_rows),
            "OBSERVATORY__LIMITS__MEMORY_LIMIT_MIB": str(shares.memory_limit_mib),
            "OBSERVATORY__SPOOL__MAX_BYTES": str(shares.spool_bytes),
        },
    )


def test_a_memory_share_too_small_for_a_worker_is_logged_at_start():
    small = Supervisor(load_config(None, env={"OBSERVATORY__LIMITS__MEMORY_LIMIT_MIB": "512"}), None, 8)
    enough = Supervisor(load_config(None, env={}), None, 2)  # the defaults: 512 MiB of 1024 each
    try:
        with structlog.testing.capture_logs() as logs:
            small._warn_small_memory_share()
            enough._warn_small_memory_share()
    finally:
        for supervisor in (small, enough):
            shutil.rmtree(supervisor.rundir, ignore_errors=True)
    # 512 MiB over 8 workers is 64 MiB each, less than a worker's base plus its 16 MiB of the queue.
    assert [(e["share_mib"], e["needed_mib"], e["workers"]) for e in logs] == [(64, 128 + 16, 8)], logs
    assert "raise limits.memory_limit_mib or lower otlp.workers" in logs[0]["event"]
