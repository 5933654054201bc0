"""Operations tools the tests run for real: systemd-analyze, promtool, prometheus.

`make test` installs them first (scripts/ensure-systemd-analyze, scripts/ensure-prometheus). A bare
`pytest` on a machine without them skips those tests with the command that installs them — except on CI
(CI=true), where a missing tool is a failure: the suite must not pass there without checking the rules.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Where scripts/ensure-prometheus extracts Debian's prometheus package (no service, nothing started).
PROMETHEUS_DIR = Path(sys.prefix) / "prometheus" / "usr" / "bin"

_INSTALL = {
    "systemd-analyze": "scripts/ensure-systemd-analyze",
    "promtool": f"scripts/ensure-prometheus {Path(sys.prefix) / 'prometheus'}",
    "prometheus": f"scripts/ensure-prometheus {Path(sys.prefix) / 'prometheus'}",
}


def find_tool(name: str) -> str | None:
    override = os.environ.get(name.upper().replace("-", "_"))  # PROMTOOL=/path, PROMETHEUS=/path, ...
    if override:
        return override
    extracted = PROMETHEUS_DIR / name
    if extracted.exists():
        return str(extracted)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is not None:
        return path
    message = f"{name} is not installed: run `{_INSTALL[name]}` (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
