"""The orphan reaper that runs at the start of every test session.

It ran into a directory it had itself just destroyed (a lazy glob over a tree it was deleting) and
stopped a CI run before the first test; these tests pin the behaviour it must have instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.cleanup import OWNER_FILE, reap_orphans, throwaway_dir


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def fake_cluster(root: Path, *parts: str) -> Path:
    cluster = root.joinpath(*parts)
    (cluster / "data").mkdir(parents=True)
    (cluster / "data" / "PG_VERSION").write_text("15\n")
    return cluster


def test_a_dead_runs_directories_are_removed_with_every_cluster_inside() -> None:
    orphan = throwaway_dir("reap-orphan")
    fake_cluster(orphan, "pg")
    fake_cluster(orphan, "a", "b")  # nested, and next to the first: both are found and destroyed
    (orphan / OWNER_FILE).write_text(str(dead_pid()))

    removed = reap_orphans()

    assert orphan in removed
    assert not orphan.exists()


def test_a_live_runs_directory_and_one_without_an_owner_are_left_alone() -> None:
    mine = throwaway_dir("reap-live")  # owned by this (live) process
    fake_cluster(mine, "pg")
    kept = throwaway_dir("reap-kept")
    (kept / OWNER_FILE).unlink()  # what `make bench --keep` leaves on purpose
    try:
        removed = reap_orphans()
        assert mine not in removed and kept not in removed
        assert (mine / "pg" / "data" / "PG_VERSION").is_file()
        assert kept.is_dir()
        assert int((mine / OWNER_FILE).read_text()) == os.getpid()
    finally:
        for root in (mine, kept):
            subprocess.run(["rm", "-rf", str(root)], check=True)
