"""The Runner over SSH (paramiko): Slurm commands run on the site's login host, files move over
SFTP. The only module that imports paramiko.

One connection per hpcflow command, opened on first use and reused; keepalives. The host key
is verified against the site's known_hosts before anything else is sent: an unknown or changed
key is refused with the command that fixes it. Remote command lines are quoted argument by
argument. Registry credentials are never sent (see images.py): over SSH, name a credentials file
on the cluster instead.
"""

from __future__ import annotations

import os
import shlex
import stat
import time
from typing import Any

from hpcflow.errors import RunnerError, RunnerTimeout
from hpcflow.runners.base import FILE_LIMIT, SMALL, Result, log_command
from hpcflow.util.safeio import TooLarge, UnsafeFile, kind_of

CONNECT_TIMEOUT = 15.0
KEEPALIVE_S = 30


class SSHRunner:
    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int = 22,
        key: str | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
    ):
        self.host, self.port = host, port
        self.user = user or os.environ.get("USER") or _whoami()
        self.key = os.path.expanduser(key) if key else None
        self.known_hosts = os.path.expanduser(known_hosts)
        self._client: Any = None
        self._sftp: Any = None

    # -- connection ------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        import paramiko

        client = paramiko.SSHClient()
        if not os.path.exists(self.known_hosts):
            raise RunnerError(
                f"{self.known_hosts} does not exist: hpcflow only talks to hosts whose key is "
                f"known. Check the fingerprint with your site, then: {self._keyscan_hint()}"
            )
        try:
            client.load_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException) as e:
            raise RunnerError(f"cannot read known_hosts {self.known_hosts}: {e}") from e
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                key_filename=self.key,
                look_for_keys=self.key is None,
                allow_agent=self.key is None,
                timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT,
            )
        except paramiko.BadHostKeyException as e:
            raise RunnerError(
                f"the host key of {self.host}:{self.port} has CHANGED (it is not the one in "
                f"{self.known_hosts}); nothing was sent. This can mean the host was reinstalled, "
                "or that someone is intercepting the connection: ask your site. If the change "
                f"is expected: ssh-keygen -f {self.known_hosts} -R {self._host_entry()} and add "
                f"the new key ({self._keyscan_hint()})"
            ) from e
        except paramiko.AuthenticationException as e:
            raise RunnerError(
                f"SSH authentication failed for {self.where}"
                + (f" with key {self.key}" if self.key else " (agent and ~/.ssh keys)")
                + f": {e}"
            ) from e
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise RunnerError(
                    f"{self.host}:{self.port} is not in {self.known_hosts}; nothing was sent. "
                    f"Check its fingerprint with your site, then: {self._keyscan_hint()}"
                ) from e
            raise RunnerError(f"SSH to {self.where} failed: {e}") from e
        except TimeoutError as e:
            raise RunnerError(f"cannot reach {self.host}:{self.port}: timed out") from e
        except OSError as e:
            raise RunnerError(f"cannot reach {self.host}:{self.port}: {e.strerror or e}") from e
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)
        self._client = client
        return client

    def _host_entry(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _keyscan_hint(self) -> str:
        return f"ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}"

    def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = self._connect().open_sftp()
        return self._sftp

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    # -- commands --------------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 60.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        if env:
            raise RunnerError(
                "environment variables (registry credentials) are not sent over SSH: name a "
                "credentials file on the cluster in the site's containers.credentials"
            )
        client = self._connect()
        command = shlex.join(argv)
        started = time.monotonic()
        where = f"ssh {self.where}"
        try:
            chan = client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if input is not None:
                chan.sendall(input.encode())
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                drained = not chan.recv_ready() and not chan.recv_stderr_ready()
                if chan.exit_status_ready() and drained:
                    break
                if time.monotonic() > deadline:
                    chan.close()
                    raise TimeoutError
                time.sleep(0.01)
            code = chan.recv_exit_status()
            chan.close()
        except TimeoutError as e:
            log_command(where, argv, started, "timeout", None)
            raise RunnerTimeout(
                f"{' '.join(argv[:2])} on {self.host}: no answer within {timeout:.0f}s"
            ) from e
        except OSError as e:
            log_command(where, argv, started, f"connection lost ({e})", None)
            self.close()
            raise RunnerError(f"SSH connection to {self.where} lost: {e}") from e
        log_command(where, argv, started, f"exit {code}", None)
        if code == 127:
            raise RunnerError(
                f"{argv[0]}: command not found on {self.host} (is Slurm in the PATH of "
                "non-interactive SSH sessions there?)"
            )
        return Result(argv, code, out.decode(errors="replace"), err.decode(errors="replace"))

    # -- files (SFTP) ----------------------------------------------------------------------
    def write_file(self, path: str, data: str | bytes, mode: int = 0o640) -> None:
        sftp = self.sftp()
        raw = data.encode() if isinstance(data, str) else data
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp{os.getpid()}"
        with sftp.open(tmp, "wb") as f:
            f.chmod(mode)
            f.write(raw)
        sftp.posix_rename(tmp, path)

    def append_file(self, path: str, data: str) -> None:
        with self.sftp().open(path, "ab") as f:  # paramiko reports SFTP errors as OSError
            f.write(data.encode())

    def makedirs(self, path: str, mode: int = 0o750) -> None:
        sftp = self.sftp()
        parts = path.rstrip("/").split("/")
        for i in range(2, len(parts) + 1):
            p = "/".join(parts[:i])
            try:
                sftp.stat(p)
            except OSError:
                sftp.mkdir(p, mode)
        sftp.chmod(path, mode)

    def makedirs_many(self, paths: list[str], mode: int = 0o750) -> None:
        """Leaf directories whose parents exist: one remote `mkdir -p` per 500 paths instead of
        one SFTP round trip each."""
        for i in range(0, len(paths), 500):
            res = self.run(["mkdir", "-p", "-m", f"{mode:o}", "--", *paths[i : i + 500]])
            if not res.ok:
                raise RunnerError(f"mkdir on {self.host}: {res.stderr.strip()}")

    def remove_tree(self, path: str) -> None:
        st = self.sftp().lstat(path)
        if stat.S_ISLNK(st.st_mode or 0):
            raise RunnerError(f"{path} is a symbolic link; refusing to remove it")
        res = self.run(["rm", "-rf", "--", path], timeout=600)
        if not res.ok:
            raise RunnerError(f"rm -rf {path} on {self.host}: {res.stderr.strip()}")

    def read_file(self, path: str, limit: int = FILE_LIMIT, within: str | None = None) -> bytes:
        sftp = self.sftp()
        if within is not None:
            real, top = sftp.normalize(path), sftp.normalize(within)
            if real != top and not real.startswith(top.rstrip("/") + "/"):
                raise UnsafeFile(f"{path}: leads out of {within} (a symbolic link?); refused")
        st = sftp.stat(path)  # before the open: an SFTP open of a FIFO waits for a writer
        if not stat.S_ISREG(st.st_mode or 0):
            raise UnsafeFile(f"{path}: {kind_of(st.st_mode or 0)}, not a regular file; refused")
        if (st.st_size or 0) > limit:
            raise TooLarge(f"{path}: {st.st_size:,} bytes, over the bound of {limit:,}; refused")
        with sftp.open(path, "rb") as f:
            data: bytes = f.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"{path}: over the bound of {limit:,} bytes; refused")
        return data

    def read_files(self, paths: list[str], limit: int = SMALL) -> dict[str, bytes | None]:
        """One remote shell per 5,000 paths instead of one SFTP round trip per file: each
        record is '+PATH' or '-PATH' (missing, or not a regular file), a newline, the content
        (at most ``limit`` + 1 bytes), a NUL."""
        script = READ_MANY.replace("head -c 65536", f"head -c {int(limit) + 1}")
        out: dict[str, bytes | None] = {}
        for i in range(0, len(paths), 5000):
            out.update(self._records(script, paths[i : i + 5000]))
        return {p: out.get(p) for p in paths}

    def read_tails(
        self, paths: list[str], max_bytes: int, within: str | None = None
    ) -> dict[str, bytes | None]:
        """As read_files, with ``tail -c``: one remote shell for all of them. With ``within``,
        a path whose real path (links followed, on the remote side) is not under it is '-'."""
        script = READ_MANY.replace("head -c 65536", f"tail -c {int(max_bytes)}")
        if within is not None:
            script = READ_WITHIN.format(root=shlex.quote(within)) + script.replace(
                '[ -f "$f" ]', '[ -f "$f" ] && _inside "$f"'
            )
        return self._records(script, paths)

    def _records(self, script: str, paths: list[str]) -> dict[str, bytes | None]:
        res = self.run(["sh", "-c", script], input="".join(p + "\n" for p in paths))
        if not res.ok:
            raise RunnerError(f"reading files on {self.host}: {res.stderr.strip()}")
        out: dict[str, bytes | None] = {}
        for record in res.stdout.split("\0"):
            head, _, body = record.partition("\n")
            if head[:1] in "+-" and head[1:]:
                out[head[1:]] = body.encode() if head[0] == "+" else None
        return {p: out.get(p) for p in paths}

    def exists(self, path: str) -> bool:
        try:
            self.sftp().stat(path)
        except OSError:
            return False
        return True


# readlink -f: the path with every link followed, as open() would see it
READ_WITHIN = (
    'root=$(readlink -f -- {root}); _inside() {{ r=$(readlink -f -- "$1") && '
    'case "$r" in "$root"/*) return 0;; esac; return 1; }}; '
)
READ_MANY = (
    'while IFS= read -r f; do if [ -f "$f" ] && [ -r "$f" ]; then printf "+%s\\n" "$f"; '
    "head -c 65536 \"$f\" | tr -d '\\000'; "
    'else printf -- "-%s\\n" "$f"; fi; printf "\\000"; done'
)


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
