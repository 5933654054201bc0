"""auth.mode = api_key: keys created by the CLI, presented by real OTLP exporters, refused when missing,
unknown or revoked; only hashes in the database."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

import grpc
import pytest
from google.rpc import status_pb2

from tests.support.otlp import export_grpc, post, sdk_tracer_provider, span, trace_request
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until


def cli(database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.dsn},
    )


async def test_api_keys_end_to_end(database, tmp_path):
    proc = ReceiverProcess(database.dsn, tmp_path, auth__mode="api_key", auth__refresh_interval_s=0.5)
    await proc.start()  # migrates the database
    created = cli(database, "keys", "create", "--project", "Support Bot", "--name", "prod")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("lobs_") and "only time the key is shown" in created.stderr
    stored = await database.fetch("SELECT key_hash, key_prefix FROM api_keys")
    assert bytes(stored[0]["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key not in str(stored) and stored[0]["key_prefix"] == key[:12]

    service = f"auth-{uuid.uuid4().hex[:6]}"
    request = trace_request([span("needs-a-key")], service)

    async def accepted_with_new_key() -> bool:  # the receiver re-reads keys every 0.5 s
        result = await post(
            f"{proc.http_url}/v1/traces", request.SerializeToString(), headers={"Authorization": f"Bearer {key}"}
        )
        return result.status == 200

    await wait_until(accepted_with_new_key, what="the new key accepted")
    provider = sdk_tracer_provider("grpc", proc, service, headers={"authorization": f"Bearer {key}"})
    with provider.get_tracer("t").start_as_current_span("sdk-with-key"):
        pass
    provider.shutdown()
    await export_grpc(proc.grpc_target, trace_request([span("x-api-key")], service), metadata=(("x-api-key", key),))
    await database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 3, service)

    invalid_before = await proc.metric('observatory_auth_refused_requests_total{reason="auth_invalid"}')
    missing = await post(f"{proc.http_url}/v1/traces", request.SerializeToString())
    assert missing.status == 401
    assert "missing API key" in status_pb2.Status.FromString(missing.body).message
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await export_grpc(proc.grpc_target, request, metadata=(("authorization", "Bearer lobs_wrong"),))
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await proc.metric('observatory_auth_refused_requests_total{reason="auth_missing"}') == 1
    assert await proc.metric('observatory_auth_refused_requests_total{reason="auth_invalid"}') == invalid_before + 1

    listed = cli(database, "keys", "list")
    assert listed.returncode == 0 and "support-bot" in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.splitlines()[1].split("\t")[0]

    async def last_used_recorded() -> bool:
        return await database.fetchval("SELECT last_used_at IS NOT NULL FROM api_keys") is True

    await wait_until(last_used_recorded, what="last_used_at recorded")
    revoked = cli(database, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr

    async def refused_after_revoke() -> bool:
        result = await post(
            f"{proc.http_url}/v1/traces", request.SerializeToString(), headers={"Authorization": f"Bearer {key}"}
        )
        return result.status == 401

    await wait_until(refused_after_revoke, what="the revoked key refused")
    again = cli(database, "keys", "revoke", key_id)
    assert again.returncode == 1 and "no active key" in again.stderr
    assert cli(database, "keys", "revoke", "not-a-uuid").returncode == 2
    assert await proc.stop() == 0


def test_keys_commands_refuse_an_unmigrated_database(database):
    result = cli(database, "keys", "list")
    assert result.returncode == 1 and "run `llm-observatory-receiver migrate` first" in result.stderr
