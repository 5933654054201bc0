"""A small file system of the test's own (a tmpfs of a few MiB) to fill up: the spool's full-disk tests.

Mounting needs root (CAP_SYS_ADMIN); where it is not permitted (an unprivileged CI container, a
developer's laptop) the test is skipped with the reason, never half-run on the real disk.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(where: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` at `where` for the duration; skip the test if mounting is refused."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (CAP_SYS_ADMIN); this run is not root")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"mounting a small tmpfs to fill is not permitted here: {mount.stderr.strip()}")
    try:
        yield where
    finally:
        # Lazy: a receiver of the test may still hold a segment open until its fixture kills it.
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
