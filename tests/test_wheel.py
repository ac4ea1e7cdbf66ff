"""job_templates/ and site_configs/ ship inside the wheel: build it, install it in a fresh
virtualenv, render a workflow from another directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click


def test_wheel_renders_from_fresh_venv(repo: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        # the build backend tests/run installed (dev extra), not one fetched from the registry
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(repo),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("hpcflow_slurm-*.whl")
    venv = tmp_path / "venv"
    # a venv without pip, the wheel installed by this pip: seconds instead of 20 s. Only the
    # dependencies come from the test's environment (a .pth line: that folder's own .pth
    # files, the editable hpcflow among them, are not read), so hpcflow is the wheel's.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python")]
        + ["install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "deps.pth").write_text(str(Path(click.__file__).parent.parent) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "wf.yaml").write_text((repo / "examples/quickstart/workflow.yaml").read_text())
    out = subprocess.run(
        [str(venv / "bin/hpcflow"), "--site", "lab", "render", "wf.yaml", "-o", "out"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    script = (work / "out/scripts/hms.sh").read_text()
    assert script.startswith("#!/bin/bash\n#SBATCH --partition=debug\n")
    sites = subprocess.run(
        [str(venv / "bin/hpcflow"), "sites", "list"], cwd=work, capture_output=True, text=True
    ).stdout
    assert f"{site_packages}/hpcflow/_data/site_configs/lab.yaml" in sites, sites
