"""TLS and mTLS on both OTLP front ends, with the OpenTelemetry SDK's own TLS options: a client with a
certificate of the trusted CA lands its spans; no certificate, or one from another CA, is refused;
SIGHUP serves a new certificate to new connections; bad files are refused with the key named."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.support.certs import CertificateAuthority, Issued
from tests.support.otlp import sdk_spans
from tests.support.process import ReceiverProcess
from tests.support.wait import wait_until

PROTOCOLS = ("grpc", "http")


@dataclass(frozen=True)
class Pki:
    server_ca: CertificateAuthority
    server: Issued
    client_ca: CertificateAuthority
    client: Issued  # signed by client_ca: trusted by the mTLS receiver
    intruder: Issued  # signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    server_ca = CertificateAuthority(directory, "servers")
    client_ca = CertificateAuthority(directory, "clients")
    other_ca = CertificateAuthority(directory, "other")
    return Pki(
        server_ca,
        server_ca.issue("receiver", server=True),
        client_ca,
        client_ca.issue("app", server=False),
        other_ca.issue("intruder", server=False),
    )


@pytest.fixture(autouse=True)
def _exporters_trust_only_what_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """On these machines REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE are set, and requests lets them override a
    session's verify= (so the HTTP exporter's certificate_file would be ignored)."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def export(
    protocol: str,
    proc: ReceiverProcess,
    service: str,
    ca: Path,
    client: Issued | None = None,
    count: int = 2,
    timeout: float = 3.0,
) -> SpanExportResult:
    """Export `count` SDK spans over TLS with the exporter's own TLS options; one attempt's result."""
    spans = sdk_spans(service, [f"op-{i}" for i in range(count)])
    if protocol == "grpc":
        credentials = grpc.ssl_channel_credentials(
            ca.read_bytes(), client.key_pem if client else None, client.cert_pem if client else None
        )
        exporter = GrpcSpanExporter(endpoint=proc.grpc_target, insecure=False, credentials=credentials, timeout=timeout)
    else:
        exporter = HttpSpanExporter(
            endpoint=f"https://127.0.0.1:{proc.http_port}/v1/traces",
            certificate_file=str(ca),
            client_certificate_file=str(client.cert_file) if client else None,
            client_key_file=str(client.key_file) if client else None,
            timeout=timeout,
        )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def served_fingerprint(port: int, ca: Path, client: Issued | None = None) -> str:
    """SHA-256 of the certificate a new TLS connection to `port` is served."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


@pytest.fixture(scope="module")
async def mtls_receiver(module_database, pki: Pki, tmp_path_factory):
    proc = ReceiverProcess(
        module_database.dsn,
        tmp_path_factory.mktemp("mtls"),
        otlp__tls__cert_file=pki.server.cert_file,
        otlp__tls__key_file=pki.server.key_file,
        otlp__tls__client_ca_file=pki.client_ca.cert_file,
    )
    # Open to other hosts, no API keys: client certificates authenticate every sender, so no warning.
    proc.settings["otlp__grpc_endpoint"] = f"0.0.0.0:{proc.grpc_port}"
    await proc.start()
    yield proc
    await proc.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mtls_client_certificate_of_the_trusted_ca_lands(mtls_receiver, module_database, pki, protocol):
    service = f"mtls-{protocol}-{uuid.uuid4().hex[:6]}"
    result = await asyncio.to_thread(export, protocol, mtls_receiver, service, pki.server_ca.cert_file, pki.client)
    assert result is SpanExportResult.SUCCESS
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 2, service)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mtls_refuses_no_certificate_and_a_certificate_of_another_ca(
    mtls_receiver, module_database, pki, protocol
):
    accepted_before = await mtls_receiver.metric("otelcol_receiver_accepted_spans_total")
    service = f"mtls-refused-{protocol}-{uuid.uuid4().hex[:6]}"
    ca = pki.server_ca.cert_file
    refused = SpanExportResult.FAILURE
    assert await asyncio.to_thread(export, protocol, mtls_receiver, service, ca, None, 2, 1.0) is refused
    assert await asyncio.to_thread(export, protocol, mtls_receiver, service, ca, pki.intruder, 2, 1.0) is refused
    # The same exporter with the trusted certificate gets through: the refusals were about the certificate.
    assert await asyncio.to_thread(export, protocol, mtls_receiver, service, ca, pki.client, 1) is (
        SpanExportResult.SUCCESS
    )
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 1, service)
    assert await module_database.fetchval("SELECT count(*) FROM llm_traces WHERE service_name = $1", service) == 1
    assert await mtls_receiver.metric("otelcol_receiver_accepted_spans_total") == accepted_before + 1
    assert "OTLP served to other hosts" not in mtls_receiver.log_tail(200)


async def test_sighup_serves_a_new_certificate_to_new_connections_and_other_hosts_get_a_warning(
    module_database, tmp_path
):
    first_ca = CertificateAuthority(tmp_path, "first")
    second_ca = CertificateAuthority(tmp_path, "second")
    first = first_ca.issue("receiver-1", server=True)
    second = second_ca.issue("receiver-2", server=True)
    cert_file, key_file = tmp_path / "served.crt", tmp_path / "served.key"
    cert_file.write_bytes(first.cert_pem)
    key_file.write_bytes(first.key_pem)
    proc = ReceiverProcess(
        module_database.dsn,
        tmp_path,
        otlp__tls__cert_file=cert_file,
        otlp__tls__key_file=key_file,
    )
    proc.settings["otlp__grpc_endpoint"] = f"0.0.0.0:{proc.grpc_port}"  # other hosts, and no auth: a warning
    await proc.start()
    service = f"tls-reload-{uuid.uuid4().hex[:6]}"
    for protocol in PROTOCOLS:
        assert await asyncio.to_thread(export, protocol, proc, service, first_ca.cert_file) is SpanExportResult.SUCCESS
    assert served_fingerprint(proc.http_port, first_ca.cert_file) == first.fingerprint
    assert f'"tls_certificate_sha256": "{first.fingerprint}"' in proc.log_tail(200)

    cert_file.write_bytes(second.cert_pem)  # a rotation: new key, new certificate, another CA
    key_file.write_bytes(second.key_pem)
    proc.proc.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: asyncio.sleep(0, f'"tls_certificate_sha256": "{second.fingerprint}"' in proc.log_tail(50)),
        what="TLS certificates reloaded",
    )
    assert served_fingerprint(proc.http_port, second_ca.cert_file) == second.fingerprint
    for protocol in PROTOCOLS:
        assert await asyncio.to_thread(export, protocol, proc, service, second_ca.cert_file) is (
            SpanExportResult.SUCCESS
        )
        assert await asyncio.to_thread(export, protocol, proc, service, first_ca.cert_file, None, 2, 1.0) is (
            SpanExportResult.FAILURE
        ), "a client that trusts only the old CA no longer gets a certificate it accepts"
    await module_database.wait_for_count("SELECT count(*) FROM llm_traces WHERE service_name = $1", 8, service)

    key_file.write_text("not a key")  # a botched rotation keeps the certificate being served
    proc.proc.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: asyncio.sleep(0, "TLS certificates not reloaded" in proc.log_tail(50)), what="reload refused"
    )
    assert "otlp.tls.cert_file / otlp.tls.key_file" in proc.log_tail(50)
    assert served_fingerprint(proc.http_port, second_ca.cert_file) == second.fingerprint
    assert await proc.stop() == 0

    # Serving other hosts (0.0.0.0) with auth.mode = none (TLS does not authenticate clients): one warning.
    lines = [line for line in proc.log_path.read_text().splitlines() if "OTLP served to other hosts" in line]
    assert len(lines) == 1 and f"0.0.0.0:{proc.grpc_port}" in lines[0] and "auth.mode = api_key" in lines[0]
    assert f"127.0.0.1:{proc.http_port}" not in lines[0], "the loopback endpoint is not named"


def test_unusable_certificate_files_exit_2_naming_the_key(tmp_path, pki):
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "OBSERVATORY__OTLP__TLS__CERT_FILE": str(tmp_path / "bad.crt"),
        "OBSERVATORY__OTLP__TLS__KEY_FILE": str(pki.server.key_file),
    }
    for command in (["config", "check"], ["run"]):
        result = subprocess.run(
            [sys.executable, "-m", "receiver", *command], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "config error: otlp.tls.cert_file / otlp.tls.key_file" in result.stderr, result.stderr
    env["OBSERVATORY__OTLP__TLS__CERT_FILE"] = str(pki.client.cert_file)  # a real certificate, not this key's
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "config", "check"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 2 and "KEY_VALUES_MISMATCH" in result.stderr, result.stderr
