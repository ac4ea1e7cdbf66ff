"""The dashboard as a surface (docs/security.md, docs/web.md): it never starts exposed with an
empty, short or readable token; its CSRF key is its own; it answers only the Host names it is
bound to (DNS rebinding); paging and index parameters out of range are a 4xx, never a 500;
and a FIFO where a log should be never blocks a worker."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcflow.node.jobtool import log_path

from .helpers import free_port
from .synthetic import finished_run
from .web_server import serving

RUN = "synth-20261206-0000-aaaa"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db, _ = finished_run(tmp_path_factory.mktemp("webu"), 20)
    return db


WEAK = [
    ("", 0o600, "holds no usable token"),
    ("\n\n", 0o600, "holds no usable token"),
    ("abc123", 0o600, "holds no usable token"),
    ("x" * 40 + " y", 0o600, "holds no usable token"),
    ("A" * 43, 0o644, "readable by others"),
    ("A" * 43, 0o640, "readable by others"),
]


@pytest.mark.parametrize(("content", "mode", "says"), WEAK)
def test_a_weak_token_file_is_refused(tmp_path: Path, content: str, mode: int, says: str) -> None:
    from hpcflow.errors import BadUsage
    from hpcflow.web.app import ensure_token

    token = tmp_path / "web-token"
    token.write_text(content)
    token.chmod(mode)
    with pytest.raises(BadUsage, match=says):
        ensure_token(token)


def test_serve_never_starts_exposed_with_a_weak_token(synth: Path, tmp_path: Path) -> None:
    cases = [(["--host", "0.0.0.0"], WEAK[0]), (["--allow-actions"], WEAK[4])]
    env = {**os.environ, "HPCFLOW_DB": str(synth)}
    procs = []
    for n, (exposure, (content, mode, says)) in enumerate(cases):  # both at once: 1 s, not 2
        token = tmp_path / f"web-token-{n}"
        token.write_text(content)
        token.chmod(mode)
        argv = [sys.executable, "-m", "hpcflow", "serve", "--port", str(free_port()),
                "--token-file", str(token), "--no-sync", *exposure]  # fmt: skip
        procs.append((says, subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)))
    try:
        for says, p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 2 and says in err, err
            assert "Uvicorn running" not in err and "hpcflow serve: http" not in err
    finally:
        for _, p in procs:
            p.kill()


def test_a_made_token_is_private_and_long(served_u) -> None:
    assert (served_u.token_file.stat().st_mode & 0o777) == 0o600
    assert len(served_u.token()) >= 43  # 256 bits, base64url


def _csrf(s) -> str:
    code, html, _ = s.get(f"/runs/{RUN}", token=s.token())
    assert code == 200
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_the_csrf_key_is_random_per_server(served_u, synth: Path) -> None:
    import hashlib
    import hmac

    first, tok = _csrf(served_u), served_u.token()
    with serving(synth, served_u.token_file.parent, "--no-sync", "--allow-actions") as s:
        second = _csrf(s)
    assert first != second  # the same token file: a new key per server
    assert first != hmac.new(tok.encode(), b"csrf", hashlib.sha256).hexdigest()


def _get(s, path: str, host: str | None = None) -> tuple[int, str]:
    """GET with the server's token (its actions are on, so reads need it) and a Host header."""
    hostport = s.base.split("//")[1]
    conn = http.client.HTTPConnection(*hostport.split(":"), timeout=20)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", hostport if host is None else host)
    conn.putheader("Authorization", f"Bearer {s.token()}")
    conn.endheaders()
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    return r.status, body


def test_only_the_bound_names_are_answered(served_u) -> None:
    port = served_u.base.rsplit(":", 1)[1]
    for ok in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert _get(served_u, "/api/runs", ok)[0] == 200, ok
    for bad in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}", ""):
        code, body = _get(served_u, "/api/runs", bad)
        assert code == 421 and "Host" in body, bad


@pytest.mark.parametrize(
    "path",
    [
        f"/api/runs/{RUN}/tasks?page=0",
        f"/api/runs/{RUN}/tasks?page=99999999999999999999",
        f"/api/runs/{RUN}/tasks?page=-1",
        f"/api/runs/{RUN}/tasks?per_page=0",
        f"/api/runs/{RUN}/tasks?per_page=100000000",
        f"/api/runs/{RUN}/history?page=9223372036854775808",
        f"/api/runs/{RUN}/logs/hms/99999999999999999999",
        f"/api/runs/{RUN}/logs/hms/-1",
        f"/api/runs/{RUN}/logs/hms/0?tail=0",
        f"/api/runs/{RUN}/logs/hms/0?tail=99999999999",
        f"/runs/{RUN}/tasks?page=99999999999999999999",
        f"/runs/{RUN}/history?page=0",
        f"/runs/{RUN}/logs/hms/99999999999999999999",
    ],
)
def test_out_of_range_parameters_are_4xx(served_u, path: str) -> None:
    code, _ = _get(served_u, path)
    assert 400 <= code < 500 and code not in (401, 403), (path, code)


@pytest.fixture(scope="module")
def served_u(synth: Path, tmp_path_factory: pytest.TempPathFactory):
    with serving(synth, tmp_path_factory.mktemp("su"), "--no-sync", "--allow-actions") as s:
        yield s


def test_a_fifo_as_a_log_never_blocks_a_worker(synth: Path, served_u) -> None:
    run_dir = synth.parent / "run"
    fifo = Path(log_path(str(run_dir), "hms", 1, "out"))
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    zero = Path(log_path(str(run_dir), "hms", 2, "out"))
    zero.parent.mkdir(parents=True, exist_ok=True)
    zero.symlink_to("/dev/zero")
    t = time.monotonic()
    for i in (1, 2, 1, 2):
        code, _ = _get(served_u, f"/api/runs/{RUN}/logs/hms/{i}")
        assert code == 404, code
    assert _get(served_u, "/api/runs")[0] == 200  # and the server still answers
    assert time.monotonic() - t < 10
