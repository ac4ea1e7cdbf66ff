"""job_templates/ and site_configs/ ship inside the wheel: build it, install it in a fresh
virtualenv, render a workflow from another directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_wheel_renders_from_fresh_venv(repo: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(repo)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("hpcflow_slurm-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", str(wheel)], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr
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
    assert "hpcflow/_data/site_configs/lab.yaml" in sites
