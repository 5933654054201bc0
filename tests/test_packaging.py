"""The receiver as operators install it (a wheel, as the Dockerfile and systemd set-up do): it must
find its migrations and default data without a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a checkout may hold that is not source: a stale build/ would put packages the project no
# longer ships into the wheel (setuptools reuses build/lib).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "var", "*.egg-info", "__pycache__", "*.so")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a clean copy of the sources as a release would be."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(root / "out")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next((root / "out").glob("*.whl"))


def test_installed_wheel_migrates_and_checks_config(database, tmp_path, wheel):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    run_dir = tmp_path / "elsewhere"  # no config/ or migrations/ here
    run_dir.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(target), "DATABASE_URL": database.dsn}
    probe = subprocess.run(
        [sys.executable, "-c", "import receiver; print(receiver.__file__)"],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target)), "the test must run the installed copy, not the checkout"
    migrated = subprocess.run(
        [sys.executable, "-m", "receiver", "migrate"], env=env, cwd=run_dir, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 001_core_tables" in migrated.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "receiver", "config", "check"],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    # The wheel carries the native converter wherever the checkout's install could build it.
    from receiver.convert.traces_bytes import native_available

    native = subprocess.run(
        [sys.executable, "-c", "from receiver.convert.traces_bytes import native_available as n; print(n())"],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert native.stdout.strip() == str(native_available())


def test_wheel_coexists_with_proto_plus(tmp_path, wheel):
    """The wheel installs only names the project owns. Google's proto-plus (pulled in by every
    google-cloud-* library) is the top-level module `proto`: a wheel that also shipped `proto/` would
    overwrite its __init__.py, and `proto.Message` would be gone."""
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/", 1)[0] for name in archive.namelist() if "/" in name}
    owned = {"receiver", "llm_observatory_loadgen"}
    assert {t for t in top_level if not t.endswith((".dist-info", ".data"))} == owned
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # proto-plus (with its protobuf) first, then the receiver (the order that used to break proto-plus),
    # then proto-plus imported beside the receiver's own spool format and the load generator's package.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "proto-plus"], check=True, capture_output=True, timeout=300
    )
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import proto, receiver._proto.spool_pb2 as spool, llm_observatory_loadgen; "
            "assert hasattr(proto, 'Message'), proto.__file__; "
            "assert spool.SpoolRecord(signal='traces').signal == 'traces'; print('ok')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "ok"
