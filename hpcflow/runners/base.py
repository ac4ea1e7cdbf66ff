"""The one seam between hpcflow and the machine: run a command, write a file.

Nothing else in hpcflow imports subprocess (or, later, paramiko).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hpcflow.errors import RunnerError, RunnerTimeout
from hpcflow.util.safeio import open_regular, read_bounded
from hpcflow.util.secrets import SECRET_NAMES

log = logging.getLogger(__name__)


def redact(text: str, extra: dict[str, str] | None = None) -> str:
    """``text`` with the value of every credential variable (ours or ``extra``) masked."""
    for name in SECRET_NAMES:
        for value in (os.environ.get(name), (extra or {}).get(name)):
            if value and len(value) >= 4:
                text = text.replace(value, "***")
    return text


def log_command(
    where: str, argv: list[str], started: float, code: int | str, env: dict[str, str] | None
) -> None:
    """`-v`: every command hpcflow runs, where, how long it took and how it ended (argv only:
    the environment, which may hold credentials, is never logged)."""
    if log.isEnabledFor(logging.DEBUG):
        line = shlex.join(argv)
        log.debug(
            "%s: %s -> %s in %.3f s", where, redact(line, env), code, time.monotonic() - started
        )


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


SMALL = 65536  # read_files: result.json, markers, outputs.json (their own bound is 64 KiB)
FILE_LIMIT = 256 * 1024 * 1024  # read_file: tasks files, logs, a producer's values


class Runner(Protocol):
    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 60.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run argv. The command's environment never holds registry credentials
        (util/secrets.py) unless ``env`` passes them: only the image pull gets them."""
        ...

    def write_file(self, path: str, data: str | bytes, mode: int = 0o640) -> None: ...

    def makedirs(self, path: str, mode: int = 0o750) -> None: ...

    def append_file(self, path: str, data: str) -> None: ...

    def makedirs_many(self, paths: list[str], mode: int = 0o750) -> None: ...

    def remove_tree(self, path: str) -> None: ...

    def read_file(self, path: str, limit: int = FILE_LIMIT, within: str | None = None) -> bytes:
        """A regular file of at most ``limit`` bytes whose real path is under ``within``
        (when given); anything else raises UnsafeFile (an OSError) naming why. Never blocks
        on a FIFO or reads a device."""
        ...

    def read_files(self, paths: list[str], limit: int = SMALL) -> dict[str, bytes | None]:
        """Many small files at once (None: missing, unreadable or not a regular file), at
        most ``limit`` + 1 bytes each (more than ``limit``: the file is over the bound): one
        command over SSH."""
        ...

    def read_tails(
        self, paths: list[str], max_bytes: int, within: str | None = None
    ) -> dict[str, bytes | None]:
        """The last ``max_bytes`` of each regular file (None: missing, unreadable, not a
        regular file, or leading out of ``within``), whatever its size: logs, for reports.
        One command over SSH."""
        ...

    def exists(self, path: str) -> bool: ...


READ_CHUNK = 65536


class LocalRunner:
    """Runs commands on this machine (the login node)."""

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 60.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        child = {k: v for k, v in os.environ.items() if k not in SECRET_NAMES}
        child.update(env or {})
        started = time.monotonic()
        try:
            p = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                check=False,
                env=child,
            )
        except FileNotFoundError as e:
            log_command("local", argv, started, "command not found", env)
            raise RunnerError(
                f"{argv[0]}: command not found (is Slurm installed on this "
                "machine, or should the site config name a login host?)"
            ) from e
        except subprocess.TimeoutExpired as e:
            log_command("local", argv, started, "timeout", env)
            raise RunnerTimeout(f"{' '.join(argv[:2])}: no answer within {timeout:.0f}s") from e
        log_command("local", argv, started, f"exit {p.returncode}", env)
        return Result(argv, p.returncode, p.stdout, p.stderr)

    def write_file(self, path: str, data: str | bytes, mode: int = 0o640) -> None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, p)

    def append_file(self, path: str, data: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def makedirs_many(self, paths: list[str], mode: int = 0o750) -> None:
        """Create many leaf directories whose parents exist (no chmod: umask only narrows)."""
        for path in paths:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, mode)

    def remove_tree(self, path: str) -> None:
        import shutil

        if os.path.islink(path):
            raise RunnerError(f"{path} is a symbolic link; refusing to remove it")
        shutil.rmtree(path)

    def makedirs(self, path: str, mode: int = 0o750) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chmod(path, mode)

    def read_file(self, path: str, limit: int = FILE_LIMIT, within: str | None = None) -> bytes:
        return read_bounded(path, limit, within)

    def read_files(self, paths: list[str], limit: int = SMALL) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for path in paths:  # os.open, not pathlib: a refresh may read 100,000 small files
            try:
                fd = open_regular(path)
            except OSError:  # missing, or a FIFO, device, directory: never read
                out[path] = None
                continue
            try:
                data = os.read(fd, min(READ_CHUNK, limit + 1))
                if len(data) == READ_CHUNK and limit + 1 > READ_CHUNK:  # small: one read
                    chunks = [data]
                    got = len(data)
                    while got <= limit and (chunk := os.read(fd, min(READ_CHUNK, limit + 1 - got))):
                        chunks.append(chunk)
                        got += len(chunk)
                    data = b"".join(chunks)
                out[path] = data
            except OSError:
                out[path] = None
            finally:
                os.close(fd)
        return out

    def read_tails(
        self, paths: list[str], max_bytes: int, within: str | None = None
    ) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for path in paths:
            try:
                out[path] = read_bounded(path, max_bytes, within=within, tail=True)
            except OSError:
                out[path] = None
        return out

    def exists(self, path: str) -> bool:
        return Path(path).exists()
