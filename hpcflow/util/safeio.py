"""The one way hpcflow reads a file on the login node (docs/security.md): regular files only,
opened without blocking (a FIFO never hangs a command), a size bound checked before anything
is kept, and optionally a directory the file's real path must stay inside (a symlink out of a
run directory is refused). `tests/test_architecture.py` keeps other modules from `open()`ing
files to read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

CHUNK = 1 << 20


class UnsafeFile(OSError):
    """A path hpcflow refuses to read: not a regular file, too large, or outside its root.
    An OSError, so every command's handler prints it as one line."""


class TooLarge(UnsafeFile):
    """A regular file over the bound it is read with."""


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``'s real path (symlinks followed) is ``root``'s or under it."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip("/") + "/")


def open_regular(path: str | Path, within: str | Path | None = None) -> int:
    """An fd of a regular file opened for reading; UnsafeFile for anything else. The open
    itself never blocks (O_NONBLOCK: a FIFO without a writer would wait forever)."""
    if within is not None and not inside(path, within):
        raise UnsafeFile(f"{path}: leads out of {within} (a symbolic link?); refused")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{path}: {kind_of(st.st_mode)}, not a regular file; refused")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(
    path: str | Path, limit: int, within: str | Path | None = None, tail: bool = False
) -> bytes:
    """At most ``limit`` bytes of a regular file. Over the bound: UnsafeFile, unless ``tail``
    (then its last ``limit`` bytes). Nothing over ``limit`` + one chunk is ever held."""
    fd = open_regular(path, within)
    try:
        size = os.fstat(fd).st_size
        if size > limit and not tail:
            raise TooLarge(f"{path}: {size:,} bytes, over the bound of {limit:,}; refused")
        if tail and size > limit:
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:  # the size can grow while it is read (a log being written)
            chunk = os.read(fd, min(CHUNK, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        if tail:
            return data[-limit:]
        raise TooLarge(f"{path}: over the bound of {limit:,} bytes; refused")
    return data
