"""Throwaway directories that clean up after a killed test run.

Every PostgreSQL cluster a test or benchmark starts lives in a directory made by `throwaway_dir`,
which records the pid of the process that made it. A run killed before its teardown (a timeout, a
SIGKILL) leaves its clusters running; the next run's `reap_orphans` stops and deletes every such
directory whose owner is gone, so nothing ever needs a person to clean up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "llmobs-"
OWNER_FILE = "owner.pid"


def throwaway_dir(kind: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    os.chmod(root, 0o755)  # the PostgreSQL user must be able to enter it when we run as root
    (root / OWNER_FILE).write_text(str(os.getpid()))
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans() -> list[Path]:
    """Stop the clusters of dead runs and delete their directories; returns what was removed."""
    from receiver.storage.embedded import EmbeddedDatabaseError, EmbeddedPostgres

    removed = []
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = root / OWNER_FILE
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        for version_file in root.glob("**/data/PG_VERSION"):
            with contextlib.suppress(EmbeddedDatabaseError, OSError):
                EmbeddedPostgres(version_file.parent.parent).destroy()
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed
