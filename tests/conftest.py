from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import helpers
from .helpers import REPO


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def lab_site(tmp_path: Path) -> Callable[..., Path]:
    """The lab site config with overrides: ``lab_site(limits={"max_array_size": 11})`` writes
    tmp_path/site.yaml (or ``name=``) with scratch in tmp_path/scratch; see helpers.lab_site."""

    def make(name: str = "site.yaml", **sections: Any) -> Path:
        return helpers.lab_site(tmp_path / name, tmp_path / "scratch", **sections)

    return make


@pytest.fixture
def site_file(lab_site: Callable[..., Path]) -> Path:
    return lab_site(limits={"max_array_size": 1001})


@pytest.fixture
def hpcflow(tmp_path: Path, request: pytest.FixtureRequest):
    """Run the real CLI in a subprocess with its own tracker database. Afterwards, pass or
    fail, the Slurm jobs of every run those databases hold are cancelled (lab tests only: a
    fast-lane test's job ids are made up, and scancel waits for a controller that may be
    down), so a failed test leaves nothing in the queue to load the tests after it."""
    env = dict(os.environ, HPCFLOW_DB=str(tmp_path / "db" / "tracker.db"))
    env.pop("HPCFLOW_SITE", None)
    dbs = {env["HPCFLOW_DB"]}

    def run(
        *args: str, check: bool = False, timeout: float = 300, extra_env: dict | None = None
    ) -> subprocess.CompletedProcess:
        full = {**env, **(extra_env or {})}
        dbs.add(full["HPCFLOW_DB"])
        p = subprocess.run(
            [sys.executable, "-m", "hpcflow", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"hpcflow {' '.join(args)} -> {p.returncode}\n"
                f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    yield run
    if request.node.get_closest_marker("slurm") is not None:
        helpers.cancel_jobs_of([Path(d) for d in dbs])


@pytest.fixture(autouse=True)
def _lab_share(request: pytest.FixtureRequest):
    """Lab tests run side by side (``pytest -n``, tests/run): each shares the lab cluster,
    except those marked ``lab_alone``, which have it to themselves (helpers.lab_share). Set
    up before and torn down after every other fixture, so a test's jobs are cancelled
    before the next ``lab_alone`` test starts."""
    if request.node.get_closest_marker("slurm") is None:
        yield
        return
    alone = request.node.get_closest_marker("lab_alone") is not None
    if request.node.get_closest_marker("lab_nodes") is None:
        with helpers.lab_share(alone=alone):
            yield
        return
    # the nodes first: a lab_alone test that waited for them while it held the whole lab
    # kept every other lab test waiting too (2-5 min of setup each in CI)
    with helpers.nodes_alone(), helpers.lab_share(alone=alone):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lab tests first (they wait on Slurm, the longest first in each file as written), the
    tests that need the lab alone next, the fast lane last: while a ``lab_alone`` test
    holds the cluster, the other workers run fast-lane tests instead of waiting."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("lab_alone") is not None:
            return 1
        return 0 if item.get_closest_marker("slurm") is not None else 2

    items.sort(key=rank)  # stable: the order inside each group is kept


@pytest.fixture
def lab_nodes():
    """The extra nodes n1-n4 (a test marked ``lab_nodes``), restored afterwards: every node
    back up and every black hole the test made (``holes.append((node, path))``) healed."""
    holes: list[tuple[str, str]] = []
    helpers.restore_nodes([])
    yield holes
    helpers.restore_nodes(holes)


@pytest.fixture(scope="session")
def slurm() -> None:
    """The lab cluster must be up: tests that need Slurm fail (not skip) without it."""
    if shutil.which("sbatch") is None:
        pytest.fail("Slurm is not installed: run `tests/cluster/slurm-lab up` as root first")
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        pytest.fail(
            f"the lab cluster is not up ({p.stderr.strip()}): "
            "run `tests/cluster/slurm-lab up` as root first"
        )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real OpenSSH server on 127.0.0.1 with a throwaway host key and user key."""
    import time

    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists():
        pytest.fail("sshd not installed: tests/cluster/slurm-lab up installs openssh-server")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("hostkey", "userkey", "otherkey"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "userkey.pub").read_text())
    port = helpers.free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nLogLevel VERBOSE\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    log = open(d / "sshd.log", "w")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen(
        [sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log
    )
    for _ in range(100):
        if "Server listening" in (d / "sshd.log").read_text():
            break
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
        time.sleep(0.05)
    host_pub = (d / "hostkey.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    other = (d / "otherkey.pub").read_text().split()
    (d / "known_hosts_changed").write_text(f"[127.0.0.1]:{port} {other[0]} {other[1]}\n")
    (d / "known_hosts_empty").write_text("")
    yield {
        "port": port,
        "dir": d,
        "key": str(d / "userkey"),
        "known_hosts": str(d / "known_hosts"),
        "log": d / "sshd.log",
    }
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
