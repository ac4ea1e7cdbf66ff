from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


def write_site(path: Path, scratch: Path, **limits: object) -> Path:
    """A copy of site_configs/lab.yaml with scratch (and limits) changed."""
    doc = yaml.safe_load((REPO / "site_configs" / "lab.yaml").read_text())
    doc["paths"]["scratch"] = str(scratch)
    doc["limits"].update(limits)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site.yaml", tmp_path / "scratch", max_array_size=1001)


@pytest.fixture
def hpcflow(tmp_path: Path):
    """Run the real CLI in a subprocess with its own tracker database."""
    env = dict(os.environ, HPCFLOW_DB=str(tmp_path / "db" / "tracker.db"))
    env.pop("HPCFLOW_SITE", None)

    def run(
        *args: str, check: bool = False, timeout: float = 300, extra_env: dict | None = None
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [sys.executable, "-m", "hpcflow", *args],
            env={**env, **(extra_env or {})},
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

    return run


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
