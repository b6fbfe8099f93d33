"""Process ancestry, for the recursion guard (locking.py, the daemon).

Stdlib only. Linux reads `/proc/<pid>/stat`; elsewhere `ps` answers, and
a failure means "no known ancestors" (the guard then falls back to the
budget: slower, never wrong).
"""

from __future__ import annotations

import subprocess
import sys

#: a process tree deeper than this is not walked further
MAX_DEPTH = 64


def parent_of(pid: int) -> int | None:
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = data[data.rfind(b")") + 2 :].split()
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    try:
        out = subprocess.run(
            ["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True, timeout=2, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out) if out.isdigit() else None


def ancestors(pid: int) -> list[int]:
    """The parent, grandparent, … of `pid`, up to (not including) pid 1."""
    found: list[int] = []
    current = pid
    for _ in range(MAX_DEPTH):
        parent = parent_of(current)
        if parent is None or parent <= 1 or parent in found:
            break
        found.append(parent)
        current = parent
    return found


def is_descendant(pid: int, ancestor: int) -> bool:
    return ancestor in ancestors(pid)
