"""Container command lines, built by pure functions, pinned against each runtime's documented
CLI: Apptainer/Singularity `exec [--cleanenv] [--bind src:dst[:opts]] [--pwd DIR] [--nv]
IMAGE CMD`, environment through APPTAINERENV_/SINGULARITYENV_ variables (applied even with
--cleanenv); Charliecloud `ch-run [--unset-env=GLOB] [--env-no-expand] [--set-env=NAME=VALUE]
[-b SRC:DST] [-c DIR] IMAGE -- CMD`. Charliecloud runs for real in test_containers_slurm.py."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hpcflow.compile.plan import compile_plan
from hpcflow.containers.runtimes import Bind, launch
from hpcflow.render.scripts import render_run
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow

from .helpers import lab_site

BINDS = [Bind("/scratch/run", "/scratch/run"), Bind("/wf", "/wf", "ro")]
ENV = ["HPCFLOW_INDEX", "CC_EVENT_IDENTIFIER"]


def test_apptainer() -> None:
    la = launch(
        "apptainer",
        "/img/hms.sif",
        binds=BINDS,
        env_names=ENV,
        workdir_var="HPCFLOW_TASK_DIR",
        gpu=True,
        gpu_flag="--nv",
    )
    assert la.prelude == [
        'export APPTAINERENV_HPCFLOW_INDEX="${HPCFLOW_INDEX}"',
        'export APPTAINERENV_CC_EVENT_IDENTIFIER="${CC_EVENT_IDENTIFIER}"',
    ]
    assert la.argv == [
        "apptainer",
        "exec",
        "--cleanenv",
        "--bind",
        "/scratch/run:/scratch/run",
        "--bind",
        "/wf:/wf:ro",
        "--pwd",
        '"${HPCFLOW_TASK_DIR}"',
        "--nv",
        "/img/hms.sif",
    ]


def test_singularity_without_gpu() -> None:
    la = launch(
        "singularity",
        "/img/ras.sif",
        binds=BINDS[:1],
        env_names=["X"],
        workdir_var="HPCFLOW_TASK_DIR",
        gpu=False,
    )
    assert la.prelude == ['export SINGULARITYENV_X="${X}"']
    assert la.argv == [
        "singularity",
        "exec",
        "--cleanenv",
        "--bind",
        "/scratch/run:/scratch/run",
        "--pwd",
        '"${HPCFLOW_TASK_DIR}"',
        "/img/ras.sif",
    ]


def test_charliecloud() -> None:
    la = launch(
        "charliecloud",
        "/img/dir with space",
        binds=BINDS,
        env_names=ENV,
        workdir_var="HPCFLOW_TASK_DIR",
        gpu=True,
    )
    assert la.prelude == ['export USER="${USER:-$(id -un)}"']
    assert la.argv == [
        "ch-run",
        "--unset-env='*'",
        "--env-no-expand",
        '--set-env=HPCFLOW_INDEX="${HPCFLOW_INDEX}"',
        '--set-env=CC_EVENT_IDENTIFIER="${CC_EVENT_IDENTIFIER}"',
        "-b",
        "/scratch/run:/scratch/run",
        "-b",
        "/wf:/wf",
        "-c",
        '"${HPCFLOW_TASK_DIR}"',
        "'/img/dir with space'",
        "--",
    ]


def test_none_runs_on_host() -> None:
    la = launch("none", "/img/x.sif", binds=BINDS, env_names=ENV, workdir_var="D", gpu=True)
    assert la.prelude == [] and la.argv == []


@pytest.mark.parametrize(
    "spec,ok",
    [
        ("/a", True),
        ("/a:/b", True),
        ("/a:/b:ro", True),
        ("/a:/b:rx", False),
        ("", False),
        ("/a,/b", False),
    ],
)
def test_bind_specs(spec: str, ok: bool) -> None:
    if ok:
        Bind.parse(spec)
    else:
        with pytest.raises(ValueError):
            Bind.parse(spec)


@pytest.mark.parametrize("runtime", ["apptainer", "singularity", "charliecloud"])
def test_rendered_container_script(repo: Path, tmp_path: Path, runtime: str) -> None:
    site_path = lab_site(
        tmp_path / "site.yaml", containers={"runtime": runtime, "binds": ["/data/ffrd:/data:ro"]}
    )
    site = load_site(str(site_path))
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        yaml.safe_dump(
            {
                "name": "c",
                "containers": {"hms": {"image": "images/hms.sif"}},
                "steps": [
                    {
                        "name": "hms",
                        "container": "hms",
                        "foreach": {"event": {"range": [1, 3]}},
                        "env": {"CC_EVENT_IDENTIFIER": "{{ item.event }}"},
                        "resources": {"gpus": 1, "partition": "gpu"},
                        "run": 'echo "it\'s {{ item.event }}" > out',
                    }
                ],
            }
        )
    )
    loaded = load_workflow(wf, None, site)
    rr = render_run(compile_plan(loaded, site, 1001, "r", "/scratch/r"), loaded, site)
    script = rr.files["scripts/hms.sh"]
    (tmp_path / "s.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0
    start = min(
        script.index(w) for w in ("apptainer exec", "singularity exec", "ch-run ") if w in script
    )
    launch_line = script[start : script.index("\n}\n", start)]
    words = shlex.split(launch_line)
    assert f"{tmp_path}/images/hms.sif" in words  # relative to the workflow file
    assert words[-3:] == ["/bin/sh", "-c", 'set -e\necho "it\'s "${HPCFLOW_ITEM_event}"" > out']
    assert ("--nv" in words) == (runtime != "charliecloud")
    assert any("/data/ffrd:/data" in w for w in words)
    assert "CC_EVENT_IDENTIFIER" in script
