"""docker-compose.yml and the Dockerfile, checked without a container engine (none runs here): every file
they name exists, the receiver's environment names real settings (receiver/app/config.py validates it as
the receiver would at start), its published ports are the ports those settings listen on, the services
find each other under the names and ports the other files use, and the image's HEALTHCHECK asks an
endpoint a real receiver answers.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import yaml

from receiver.app.config import Config, load_config
from tests.support.tools import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def receiver_config() -> tuple[Config, dict[str, str]]:
    env = {**image_environment(), **{k: str(v) for k, v in SERVICES["receiver"]["environment"].items()}}
    return load_config(REPO / "config" / "receiver.toml", env=env), env  # ConfigError names a bad key


def port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (host paths relative to the compose file)."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = REPO / source
    return mounts


def host_path(service: str, container_path: str) -> Path | None:
    """Where a path inside a service's container comes from on the host, through its bind mounts."""
    for target, source in bind_mounts(service).items():
        inside = PurePosixPath(container_path)
        if inside == PurePosixPath(target) or PurePosixPath(target) in inside.parents:
            return source / inside.relative_to(target)
    return None


def test_every_file_named_exists():
    for name, service in SERVICES.items():
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        if "build" in service:
            context = REPO / (service["build"] if isinstance(service["build"], str) else service["build"]["context"])
            assert (context / "Dockerfile").is_file()
    for instruction, args in dockerfile():
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"Dockerfile: COPY {source}: no such file"
    # Paths the mounted files refer to inside the containers resolve to files of this repository.
    prometheus = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    for rules in prometheus["rule_files"]:
        path = host_path("prometheus", str(PurePosixPath("/etc/prometheus") / rules))
        assert path is not None and path.is_file(), f"prometheus rule file {rules} is not mounted"
    providers = yaml.safe_load((REPO / "config/grafana/provisioning/dashboards/observatory.yml").read_text())
    for provider in providers["providers"]:
        path = host_path("grafana", provider["options"]["path"])
        assert path is not None and list(path.glob("*.json")), f"grafana: no dashboards at {provider['options']}"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()
    assert host_path("db", "/docker-entrypoint-initdb.d/10-grafana-reader.sql").is_file()


def test_receiver_environment_is_valid_and_ports_agree():
    config, env = receiver_config()
    assert any(k.startswith("OBSERVATORY__") for k in env)  # each one validated by load_config above
    # Containers must listen on every interface, whatever the configuration file's defaults.
    image = image_environment()
    for key in ("OBSERVATORY__OTLP__GRPC_ENDPOINT", "OBSERVATORY__OTLP__HTTP_ENDPOINT", "OBSERVATORY__ADMIN__ENDPOINT"):
        assert image[key].startswith("0.0.0.0:"), key
    listening = {port(config.otlp.grpc_endpoint), port(config.otlp.http_endpoint), port(config.admin.endpoint)}
    published = {int(str(mapping).rpartition(":")[2]) for mapping in SERVICES["receiver"]["ports"]}
    assert published == listening
    exposed = {int(p) for instruction, args in dockerfile() if instruction == "EXPOSE" for p in args.split()}
    assert exposed == listening
    assert config.spool.dir.startswith("/var/lib/llm-observatory/"), "the spool lives in the volume"
    assert any(v.endswith(":/var/lib/llm-observatory") for v in SERVICES["receiver"]["volumes"])
    grace = float(SERVICES["receiver"]["stop_grace_period"].rstrip("s"))
    assert grace > config.pipeline.shutdown_timeout_s

    # The database: the receiver's URL, the image's settings and Grafana's data source agree.
    db_env = SERVICES["db"]["environment"]
    url = urlparse(config.database.url)
    assert (url.hostname, url.port or 5432, url.path.lstrip("/")) == ("db", 5432, db_env["POSTGRES_DB"])
    assert (url.username, url.password) == (db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"])
    datasources = yaml.safe_load((REPO / "config/grafana/provisioning/datasources/observatory.yml").read_text())
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    postgres = by_uid["observatory-postgres"]
    assert postgres["url"] == "db:5432" and postgres["jsonData"]["database"] == db_env["POSTGRES_DB"]
    reader_sql = (REPO / "config/compose/initdb/10-grafana-reader.sql").read_text()
    assert f"CREATE ROLE {postgres['user']} LOGIN PASSWORD '{postgres['secureJsonData']['password']}'" in reader_sql
    assert f"FOR ROLE {db_env['POSTGRES_USER']} IN SCHEMA public" in reader_sql

    # Prometheus scrapes the receiver service on its admin port; Grafana reads the prometheus service.
    prometheus = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["static_configs"][0]["targets"] == [f"receiver:{port(config.admin.endpoint)}"]
    assert urlparse(by_uid["prometheus"]["url"]).netloc == "prometheus:9090"
    assert "9090:9090" in SERVICES["prometheus"]["ports"]


async def test_image_healthcheck_asks_an_endpoint_the_receiver_answers(receiver):
    (healthcheck,) = [args for instruction, args in dockerfile() if instruction == "HEALTHCHECK"]
    (url,) = re.findall(r"http://[^'\"\s]+", healthcheck)
    parsed = urlparse(url)
    config, _ = receiver_config()
    assert parsed.hostname == "127.0.0.1" and parsed.port == port(config.admin.endpoint)
    status, body = await receiver.get(parsed.path)  # the same path on a running receiver's admin endpoint
    assert status == 200, body
