"""One advisory file lock (flock) for every lock hpcflow takes: refresh, submit, campaign tick."""

from __future__ import annotations

import fcntl
import os
from types import TracebackType


class FileLock:
    """An exclusive flock on ``path`` (created 0600). Released when the process dies, so a
    killed holder never leaves it taken."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def acquire(self, wait: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
