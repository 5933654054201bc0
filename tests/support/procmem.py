"""A process's resident memory, read from /proc: what an operator's container limit sees."""

from __future__ import annotations

from pathlib import Path


def status_bytes(pid: int, field: str) -> int:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, ...) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS, so the next VmHWM is the peak from now on."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
