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


def _cluster_dirs(root: Path, depth: int = 3) -> list[Path]:
    """Cluster directories (those holding data/PG_VERSION) under root, at most `depth` levels down.

    Tolerates directories vanishing while it looks: another process (a benchmark finishing, a run
    tearing down) may be deleting them at the same moment."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        below: list[Path] = []
        for directory in level:
            if (directory / "data" / "PG_VERSION").is_file():
                found.append(directory)
            try:
                with os.scandir(directory) as entries:
                    below.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
            except OSError:
                continue
        level = below
    return found


def reap_orphans() -> list[Path]:
    """Stop the clusters of dead runs and delete their directories; returns what was removed.

    Best effort by design: a directory that disappears or cannot be read is skipped, never an error
    that stops the test session."""
    from receiver.storage.embedded import EmbeddedDatabaseError, EmbeddedPostgres

    removed = []
    try:
        candidates = list(Path(tempfile.gettempdir()).glob(f"{PREFIX}*"))
    except OSError:
        return removed
    for root in candidates:
        owner = root / OWNER_FILE
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        for cluster_dir in _cluster_dirs(root):
            with contextlib.suppress(EmbeddedDatabaseError, OSError):
                EmbeddedPostgres(cluster_dir).destroy()
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed
