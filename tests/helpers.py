"""Helpers shared by test modules (import from here, not from other test modules)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def merge(base: dict, changes: dict) -> dict:
    """``changes`` laid over ``base``: dicts merge key by key, anything else replaces, and
    None deletes the key."""
    out = dict(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def lab_site(path: Path, scratch: Path | None = None, **sections: Any) -> Path:
    """Write a copy of site_configs/lab.yaml to ``path``, with scratch moved to ``scratch``
    and each keyword (a top-level section: limits=, tracker=, containers=, ...) laid over it
    (see ``merge``). The conftest fixture ``lab_site`` does this inside the test's tmp_path."""
    doc = yaml.safe_load((REPO / "site_configs" / "lab.yaml").read_text())
    if scratch is not None:
        doc["paths"]["scratch"] = str(scratch)
    path.write_text(yaml.safe_dump(merge(doc, sections)))
    return path


def edit_yaml(path: Path, **sections: Any) -> Path:
    """Lay ``sections`` over the YAML file at ``path`` (see ``merge``), in place."""
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), sections)))
    return path


def status(hpcflow: Callable, run_id: str) -> dict:
    """``hpcflow status RUN --json --tasks`` as a dict."""
    return json.loads(hpcflow("status", run_id, "--json", "--tasks", check=True).stdout)


def counts(doc: dict) -> dict[str, dict[str, int]]:
    """step -> {state: count} from a status document."""
    return {name: st["states"] for name, st in doc["steps"].items()}


def submit(hpcflow: Callable, site: Path, wf: Path, *sets: str) -> dict:
    args = ["--site", str(site), "submit", str(wf), "--json"]
    for s in sets:
        args += ["--set", s]
    return json.loads(hpcflow(*args, check=True).stdout)


def wait_until(
    check: Callable[[], Any], timeout: float = 60, every: float = 0.5, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy and return that; fail after
    ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def path_shim(tmp_path: Path, command: str, before: str) -> str:
    """A PATH whose ``command`` runs ``before`` (shell) and then the real command; for counting
    or slowing real Slurm calls. Returns the PATH value to use."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    real = shutil.which(command)
    assert real, command
    (shim / command).write_text(f'#!/bin/sh\n{before}\nexec {real} "$@"\n')
    (shim / command).chmod(0o755)
    return f"{shim}:{os.environ['PATH']}"


def ssh_site(path: Path, scratch: Path, sshd: dict, **login: object) -> Path:
    """The lab site reached over SSH through the test sshd."""
    return lab_site(
        path,
        scratch,
        login={
            "host": "127.0.0.1",
            "port": sshd["port"],
            "key": sshd["key"],
            "known_hosts": sshd["known_hosts"],
            **login,
        },
    )


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def run_measured(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``python -m hpcflow ARGS`` and measure its wall time and peak RSS (VmHWM of the
    process itself: wait4's maxrss would include the forking test process)."""
    out, err, peak = cwd / "m.stdout", cwd / "m.stderr", cwd / "m.peak"
    with out.open("w") as fo, err.open("w") as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(
            [sys.executable, "-c", _PEAK, *args],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {}), "HPCFLOW_TEST_PEAK": str(peak)},
            cwd=cwd,
        )
        p.wait()
        seconds = time.monotonic() - t0
    return Measured(
        p.returncode, out.read_text(), err.read_text(), seconds, int(peak.read_text()) / 1024
    )


_PEAK = (
    "import atexit, os, runpy, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            open(os.environ['HPCFLOW_TEST_PEAK'], 'w').write(line.split()[1])\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['hpcflow'] + sys.argv[1:]\n"
    "runpy.run_module('hpcflow', run_name='__main__')\n"
)


def recording_sacct(tmp_path: Path) -> dict[str, str]:
    """A wrapper around the real sacct that appends its arguments to ``calls`` and every row
    it printed to ``rows`` (in tmp_path); returns the environment that puts it on PATH."""
    shim = tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("sacct")
    (shim / "sacct").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n{real} "$@" | tee -a {tmp_path}/rows\n'
    )
    (shim / "sacct").chmod(0o755)
    return {"PATH": f"{shim}:{os.environ['PATH']}"}


def in_process(db: Path) -> Callable[..., Any]:
    """The CLI run in this process by click's runner on database ``db``: the same commands
    without a process's start-up (0.8 s each with SQLAlchemy). For tests of what commands
    print; what a process does (its exit code as a shell sees it, its imports) needs one."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from hpcflow.cli import main

    def run(*args: str) -> SimpleNamespace:
        r = CliRunner().invoke(main, ["--db", str(db), *args], catch_exceptions=False)
        return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)

    return run


def cancel_jobs_of(dbs: list[Path]) -> list[str]:
    """scancel every Slurm job recorded in these tracker databases (a test's teardown);
    the ids. Nothing without Slurm."""
    import sqlite3

    if not shutil.which("scancel"):
        return []
    ids: set[str] = set()
    for db in dbs:
        if not db.is_file():
            continue
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
                ids |= {str(r[0]) for r in c.execute(
                    "SELECT slurm_job_id FROM job WHERE slurm_job_id IS NOT NULL")}  # fmt: skip
        except sqlite3.Error:
            continue
    if ids:  # an ended job's id is an error line of scancel's, nothing more
        subprocess.run(["scancel", *sorted(ids)], capture_output=True, text=True, timeout=30)
    return sorted(ids)


def campaign_file(tmp_path: Path, site: Path, file: str = "campaign.yaml", **changes: Any) -> Path:
    """examples/campaign (its workflow copied beside it) on ``site``, with ``changes``."""
    import shutil

    shutil.copy(REPO / "examples/campaign/workflow.yaml", tmp_path / "workflow.yaml")
    doc = yaml.safe_load((REPO / "examples/campaign/campaign.yaml").read_text())
    doc["site"] = str(site)
    doc.update(changes)
    path = tmp_path / file
    path.write_text(yaml.safe_dump(doc))
    return path


LAB_LOCKS = Path("/tmp/hpcflow-lab-tests")


@contextmanager
def lab_share(alone: bool) -> Iterator[None]:
    """The lab cluster, shared by the lab tests that run at once (``pytest -n``): a test that
    breaks part of it (a daemon stopped, the node down, the whole queue counted) holds it
    ``alone``; the others share it. A readers-writer lock on two flock files: a waiting
    ``alone`` test holds the turnstile, so tests that come after it wait for it instead of
    starving it."""
    LAB_LOCKS.mkdir(mode=0o700, exist_ok=True)
    with open(LAB_LOCKS / "turnstile", "a") as turn, open(LAB_LOCKS / "lab", "a") as lab:
        fcntl.flock(turn, fcntl.LOCK_EX)
        fcntl.flock(lab, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turn, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lab, fcntl.LOCK_UN)
            fcntl.flock(turn, fcntl.LOCK_UN)


# The lab's extra nodes (tests/cluster/slurm-lab: n1-n4, each its own slurmd): tests marked
# `lab_nodes` have them to themselves and may kill, black-hole and preempt them.
LAB_SCRIPT = REPO / "tests" / "cluster" / "slurm-lab"
EXTRA_NODES = ("n1", "n2", "n3", "n4")


def lab(*args: str, timeout: float = 180) -> str:
    """Run ``tests/cluster/slurm-lab ARGS`` (node-kill N, node-up N, black-hole N PATH, ...)."""
    p = subprocess.run(["bash", str(LAB_SCRIPT), *args], capture_output=True, text=True,
                       timeout=timeout)  # fmt: skip
    assert p.returncode == 0, f"slurm-lab {' '.join(args)}: {p.stderr}"
    return p.stdout


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True,
                          text=True).stdout.split("\n")[0].strip()  # fmt: skip


@contextmanager
def nodes_alone() -> Iterator[None]:
    """The extra nodes to this test alone (other lab tests use the node vm meanwhile)."""
    LAB_LOCKS.mkdir(mode=0o700, exist_ok=True)
    with open(LAB_LOCKS / "nodes", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def preempt(seconds: int = 3) -> str:
    """A job in partition urgent (PriorityTier 10) that needs all four extra nodes whole:
    it preempts what runs there (PreemptMode=REQUEUE). Its Slurm job id (scancel it)."""
    return subprocess.run(
        ["sbatch", "--parsable", "-p", "urgent", "-N", str(len(EXTRA_NODES)), "--exclusive",
         "-o", "/dev/null", "--wrap", f"sleep {int(seconds)}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def restore_nodes(healed: list[tuple[str, str]]) -> None:
    """Every extra node running, usable and healed (a test's teardown)."""
    for node, path in healed:
        lab("heal", node, path)
    for node in EXTRA_NODES:
        if node_state(node).rstrip("*~#") not in ("idle", "mixed", "allocated"):
            lab("node-up", node)
