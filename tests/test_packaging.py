"""The receiver as operators install it (a wheel, as the Dockerfile and systemd set-up do): it must
find its migrations and default data without a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_installed_wheel_migrates_and_checks_config(database, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )
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
            *map(str, wheels.glob("*.whl")),
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
