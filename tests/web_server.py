"""`hpcflow serve` as a real server process on 127.0.0.1 (or another address), for the API
and browser tests; and a small HTTP client (urllib) for them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .helpers import free_port


@dataclass
class Served:
    base: str
    token_file: Path
    log: Path

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def get(self, path: str, token: str | None = None, method: str = "GET",
            body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw, code, hdrs = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, code, hdrs = e.read(), e.code, dict(e.headers)
        ctype = hdrs.get("content-type", "")
        return code, (json.loads(raw) if "json" in ctype else raw.decode()), hdrs


@contextmanager
def serving(db: Path, tmp: Path, *args: str, host: str = "127.0.0.1",
            env: dict[str, str] | None = None) -> Iterator[Served]:  # fmt: skip
    port = free_port()
    token_file = tmp / "web-token"
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "HPCFLOW_DB": str(db), **(env or {})}
    argv = [sys.executable, "-m", "hpcflow", "serve", "--host", host, "--port", str(port),
            "--token-file", str(token_file), *args]  # fmt: skip
    with log.open("w") as out:
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if p.poll() is not None:
                    raise AssertionError(f"hpcflow serve exited: {log.read_text()}") from None
                time.sleep(0.1)
        else:
            raise AssertionError(f"hpcflow serve did not listen: {log.read_text()}")
        yield Served(f"http://127.0.0.1:{port}", token_file, log)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
