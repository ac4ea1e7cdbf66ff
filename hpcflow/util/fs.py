"""Which filesystem a path is on: SQLite's locking is unsafe on network filesystems."""

from __future__ import annotations

import os
from pathlib import Path

from hpcflow.util.safeio import read_bounded

NETWORK_FS = {
    "nfs",
    "nfs4",
    "lustre",
    "cifs",
    "smb3",
    "smbfs",
    "gpfs",
    "beegfs",
    "ceph",
    "fuse.sshfs",
    "9p",
    "panfs",
    "wekafs",
}


def filesystem_type(path: str | Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (longest mount point in /proc/mounts)."""
    if mounts is None:
        try:
            mounts = read_bounded("/proc/mounts", 16 << 20).decode(errors="replace")
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, kind = mnt, parts[2]
    return kind
