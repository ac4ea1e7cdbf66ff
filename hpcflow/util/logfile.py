"""A log file that stays bounded: what cron's `campaign tick --log` writes to.

Before a tick writes, a file over ``max_bytes`` is rotated (FILE -> FILE.1 -> ... ->
FILE.keep, the oldest dropped), so a year of ticks takes at most (keep + 1) x max_bytes.
Two ticks that overlap both append; the lock in `campaign tick` makes the second one say so
and exit, so at worst a rotation races with a line or two of the other tick's output.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

MAX_BYTES = 1024 * 1024
KEEP = 3


def rotate(path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> bool:
    """Rotate ``path`` when it holds more than ``max_bytes``; True when it did."""
    try:
        if os.stat(path).st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep - 1, 0, -1):
        older = f"{path}.{i}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{i + 1}")
    if keep > 0:
        os.replace(path, f"{path}.1")
    else:
        os.unlink(path)
    return True


def redirect_to_bounded_log(path: str, what: str) -> None:
    """Point this process's stdout and stderr at ``path`` (0600, appended, rotated first)
    and stamp the start of the entry."""
    rotate(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"== {stamp} {what}", flush=True)
