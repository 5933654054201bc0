"""Configuration: the documented file matches the code, env overrides, and clear errors (exit 2)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from receiver.app.config import ConfigError, documented_keys, load_config

REPO = Path(__file__).resolve().parents[1]


def test_default_file_documents_every_key_with_its_default():
    document = tomllib.loads((REPO / "config" / "receiver.toml").read_text())
    declared = {(section, key): default for section, key, default, _ in documented_keys()}
    in_file: dict[tuple[str, str], object] = {}

    def flatten(section: str, body: dict) -> None:
        for key, value in body.items():
            if isinstance(value, dict):
                flatten(f"{section}.{key}", value)
            else:
                in_file[(section, key)] = value

    for section, body in document.items():
        flatten(section, body)
    assert in_file == declared


def test_environment_overrides_and_legacy_variables():
    config = load_config(
        REPO / "config" / "receiver.toml",
        env={
            "OBSERVATORY__OTLP__GRPC_ENDPOINT": "127.0.0.1:14317",
            "OBSERVATORY__PIPELINE__WRITERS": "2",
            "OBSERVATORY__DATABASE__AUTO_MIGRATE": "false",
            "DB_HOST": "db.internal",
            "DB_USER": "obs",
            "DB_PASSWORD": "p@ss",
            "DB_NAME": "llm",
            "DB_PORT": "6432",
            "DB_POOL_MAX_CONNECTIONS": "20",
            "LOG_LEVEL": "DEBUG",
        },
    )
    assert config.otlp.grpc_endpoint == "127.0.0.1:14317"
    assert config.pipeline.writers == 2 and config.database.auto_migrate is False
    assert config.database.url == "postgresql://obs:p%40ss@db.internal:6432/llm"
    assert config.database.max_connections == 20 and config.logging.level == "debug"
    assert load_config(None, env={"DATABASE_URL": "postgresql://x@y/z", "DB_HOST": "ignored"}).database.url == (
        "postgresql://x@y/z"
    )


def test_every_problem_is_reported_with_its_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[otlp]\ngrpc_endpont = "x"\nhttp_endpoint = "nope"\n[pipeline]\nwriters = 0\n'
        'durability = "disk"\n[tracing]\nx = 1\n'
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={"OBSERVATORY__PIPELINE__QUEUE_MAX_ROWS": "lots"})
    problems = "\n".join(excinfo.value.problems)
    assert "otlp.grpc_endpont: unknown key (did you mean otlp.grpc_endpoint?)" in problems
    assert "otlp.http_endpoint: 'nope' is not host:port" in problems
    assert "pipeline.writers: 0 is below the minimum 1" in problems
    assert "pipeline.durability: 'disk' is not one of memory, spool" in problems
    assert "[tracing]: unknown section" in problems
    assert "pipeline.queue_max_rows: expected an integer, got 'lots'" in problems


def test_config_check_exits_2_naming_each_bad_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[pipeline]\nwriters = 500\nbatch_max_rows = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "config error: pipeline.writers: 500 is above the maximum 256" in result.stderr
    assert "config error: pipeline.batch_max_rows: -1 is below the minimum 1" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "receiver", "config", "check", "--config", str(REPO / "config" / "receiver.toml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and 'grpc_endpoint = "localhost:4317"' in ok.stdout
    assert "[otlp.tls]" in ok.stdout and 'client_ca_file = ""' in ok.stdout


def test_run_with_invalid_config_exits_2_before_starting(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OBSERVATORY__ADMIN__ENDPOINT": "localhost"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "admin.endpoint: 'localhost' is not host:port" in result.stderr


async def test_a_port_in_use_stops_the_receiver_with_the_setting_to_change(module_database, tmp_path):
    import socket

    from tests.support.process import ReceiverProcess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = ReceiverProcess(module_database.dsn, tmp_path)
        proc.http_port = taken.getsockname()[1]
        await proc.start(wait_ready=False)
        await asyncio.wait_for(proc.proc.wait(), 60)  # it exits by itself
        code = await proc.stop()
    assert code == 1
    assert "change otlp.http_endpoint (env OBSERVATORY__OTLP__HTTP_ENDPOINT)" in proc.log_tail()


def test_nested_tls_section_from_file_and_environment(tmp_path):
    cert, key, ca = (tmp_path / name for name in ("server.crt", "server.key", "ca.crt"))
    for path in (cert, key, ca):
        path.write_text("PEM")
    path = tmp_path / "tls.toml"
    path.write_text(f'[otlp]\ngrpc_endpoint = "127.0.0.1:1"\n[otlp.tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    config = load_config(path, env={"OBSERVATORY__OTLP__TLS__CLIENT_CA_FILE": str(ca)})
    assert config.otlp.grpc_endpoint == "127.0.0.1:1" and config.otlp.http_endpoint == "localhost:4318"
    assert (config.otlp.tls.cert_file, config.otlp.tls.key_file, config.otlp.tls.client_ca_file) == (
        str(cert),
        str(key),
        str(ca),
    )
    assert config.effective()["otlp.tls"]["cert_file"] == str(cert)

    path.write_text(f'[otlp.tls]\ncertfile = "x"\ncert_file = "{cert}"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={"OBSERVATORY__OTLP__TLS__CLIENT_CA_FILE": str(tmp_path / "missing.pem")})
    problems = "\n".join(excinfo.value.problems)
    assert "otlp.tls.certfile: unknown key (did you mean otlp.tls.cert_file?)" in problems
    assert "otlp.tls.key_file: must be set when otlp.tls.cert_file is" in problems
    assert f"otlp.tls.client_ca_file: {tmp_path / 'missing.pem'} does not exist" in problems
    with pytest.raises(ConfigError, match="client certificates need TLS"):
        load_config(None, env={"OBSERVATORY__OTLP__TLS__CLIENT_CA_FILE": str(ca)})


def test_the_nghttp2_grpc_engine_with_tls_is_refused_naming_the_fix(tmp_path):
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    for path in (cert, key):
        path.write_text("PEM")
    tls = {"OBSERVATORY__OTLP__TLS__CERT_FILE": str(cert), "OBSERVATORY__OTLP__TLS__KEY_FILE": str(key)}
    with pytest.raises(ConfigError, match=r"otlp\.grpc_engine: the nghttp2 engine serves cleartext only.*grpcio"):
        load_config(None, env={**tls, "OBSERVATORY__OTLP__GRPC_ENGINE": "nghttp2"})
    for engine in ("auto", "grpcio"):  # auto serves TLS with grpcio
        assert load_config(None, env={**tls, "OBSERVATORY__OTLP__GRPC_ENGINE": engine}).otlp.grpc_engine == engine
