"""Rendered scripts: pinned by golden files, valid bash, values shell-quoted."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from hpcflow.compile.plan import compile_plan
from hpcflow.errors import InvalidInput
from hpcflow.render.scripts import render_run
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow

from .helpers import lab_site

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HPCFLOW_UPDATE_GOLDEN") == "1"


def render(
    repo: Path, wf: Path, sets: list[str] | None = None, site: str = "lab", max_array: int = 1001
):
    s = load_site(str(repo / "site_configs" / f"{site}.yaml"))
    loaded = load_workflow(wf, sets, s)
    plan = compile_plan(
        loaded,
        s,
        max_array,
        "sst-20261122-0153-3f9c",
        "/scratch/hpcflow/sst/sst-20261122-0153-3f9c",
    )
    return render_run(plan, loaded, s)


def bash_n(text: str, tmp_path: Path) -> None:
    f = tmp_path / "script.sh"
    f.write_text(text)
    p = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    "name",
    ["sample.sh", "hms.sh", "ras.sh", "summarize.sh", "hms.0.tasks", "ras.1.tasks", "plan.txt"],
)
def test_golden(repo: Path, name: str, tmp_path: Path) -> None:
    rr = render(repo, repo / "examples/quickstart/workflow.yaml", ["fail_event=3"])
    key = "plan.txt" if name == "plan.txt" else f"scripts/{name}"
    text = rr.files[key].replace(str(repo), "<REPO>")
    golden = GOLDEN / name
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{name} changed; HPCFLOW_UPDATE_GOLDEN=1 to accept"
    if name.endswith(".sh"):
        bash_n(rr.files[key], tmp_path)


def test_every_script_passes_bash_n(repo: Path, tmp_path: Path) -> None:
    rr = render(repo, repo / "examples/quickstart/workflow.yaml")
    scripts = [v for k, v in rr.files.items() if k.endswith(".sh")]
    assert len(scripts) == 4
    for text in scripts:
        bash_n(text, tmp_path)


def wf_with(tmp_path: Path, run: str, params: str = "p: hello", extra: str = "") -> Path:
    wf = tmp_path / "wf.yaml"
    wf.write_text(f"name: t\nparams: {{{params}}}\nsteps:\n  - name: a\n{extra}    run: {run}\n")
    return wf


def test_param_is_quoted(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(tmp_path, "echo {{ params.p }}", params='p: "x\'; touch /tmp/PWNED #"')
    script = render(repo, wf).files["scripts/a.sh"]
    assert "echo 'x'\"'\"'; touch /tmp/PWNED #'" in script


def test_raw_opts_out(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(tmp_path, "echo {{ params.p | raw }}", params="p: '$HOME'")
    assert "echo $HOME\n" in render(repo, wf).files["scripts/a.sh"]


def test_undefined_variable_is_an_error(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(tmp_path, "echo {{ params.nope }}")
    with pytest.raises(InvalidInput, match=r"wf.yaml:5: step 'a': run: .*nope"):
        render(repo, wf)


def test_item_in_jinja_logic_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(
        tmp_path, '"{% if item.e == 1 %}x{% endif %}"', extra="    foreach: {e: {range: [1, 2]}}\n"
    )
    with pytest.raises(InvalidInput, match="item.e is only known when the element runs"):
        render(repo, wf)


def test_env_values_are_one_word(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(
        tmp_path,
        "echo",
        extra="    foreach: {e: {values: ['a b']}}\n"
        "    env: {GREETING: 'hello $USER `id` {{ item.e }}'}\n",
    )
    script = render(repo, wf).files["scripts/a.sh"]
    assert 'export GREETING="hello \\$USER \\`id\\` ${HPCFLOW_ITEM_e}"' in script


@pytest.mark.parametrize(
    "field,value",
    [("partition", "'gpu\\n#SBATCH --uid=0'"), ("constraint", "'a\\rb'"), ("qos", "'x\\x00'")],
)
def test_sbatch_values_cannot_smuggle_directives(
    repo: Path, tmp_path: Path, field: str, value: str
) -> None:
    wf = wf_with(tmp_path, "x", extra=f'    resources: {{{field}: "{value[1:-1]}"}}\n')
    with pytest.raises(InvalidInput, match="must be one word"):
        s = load_site(str(repo / "site_configs" / "lab.yaml"))
        s.partitions.clear()  # so the partition name is not rejected for being unknown
        loaded = load_workflow(wf, None, s)
        render_run(compile_plan(loaded, s, 1001, "r", "/x"), loaded, s)


def test_item_value_with_newline_is_refused(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(tmp_path, "x", extra='    foreach: {e: {values: ["a\\nb"]}}\n')
    with pytest.raises(InvalidInput, match="control character"):
        render(repo, wf)


def test_tasks_file_quotes_item_values(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(tmp_path, "x", extra='    foreach: {e: {values: ["$(reboot)", "it\'s"]}}\n')
    tasks = render(repo, wf).files["scripts/a.0.tasks"]
    assert tasks == (
        "0\texport HPCFLOW_INDEX=0 HPCFLOW_ITEM_e='$(reboot)'\n"
        "1\texport HPCFLOW_INDEX=1 HPCFLOW_ITEM_e='it'\"'\"'s'\n"
    )


def test_retry_waits_rendered(repo: Path, tmp_path: Path) -> None:
    wf = wf_with(
        tmp_path,
        "x",
        extra="    retry: {attempts: 4, backoff: 30s, factor: 3, "
        "max_backoff: 2m, exit_codes: [1, 75], never: [2]}\n",
    )
    script = render(repo, wf).files["scripts/a.sh"]
    assert "hpcflow_waits=(30 90 120)\nhpcflow_attempts=4\n" in script
    assert "hpcflow_retry_on='1 75'\nhpcflow_never=2\n" in script


def test_site_template_directory_overrides(repo: Path, tmp_path: Path) -> None:
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "default.sh.j2").write_text(
        "#!/bin/bash\n{{ directives | raw }}\n# site {{ step }}\n{{ run | raw }}\n"
    )
    site = tmp_path / "mysite.yaml"
    site.write_text((repo / "site_configs/lab.yaml").read_text() + "job_templates: templates\n")
    s = load_site(str(site))
    wf = wf_with(tmp_path, "echo hi")
    loaded = load_workflow(wf, None, s)
    rr = render_run(compile_plan(loaded, s, 1001, "r", "/x"), loaded, s)
    assert "# site a\necho hi\n" in rr.files["scripts/a.sh"]


REMOTE_WF = (
    "name: t\ncontainers:\n  hms: {image: IMAGE}\nsteps:\n"
    "  - name: a\n    container: hms\n    foreach: {e: {range: [1, 50]}}\n    run: x\n"
    "  - name: b\n    after: [a]\n    run: y\n"
)


def _site(repo: Path, tmp_path: Path, **containers: object):
    return load_site(str(lab_site(tmp_path / "site.yaml", containers=containers)))


@pytest.mark.parametrize("runtime", ["apptainer", "singularity", "charliecloud"])
def test_remote_image_pulled_once_by_a_job_the_steps_depend_on(
    repo: Path, tmp_path: Path, runtime: str
) -> None:
    site = _site(repo, tmp_path, runtime=runtime, image_cache="/cache/images")
    wf = tmp_path / "wf.yaml"
    wf.write_text(REMOTE_WF.replace("IMAGE", "docker://ghcr.io/usace/hms-runner:v1.0.3"))
    loaded = load_workflow(wf, None, site)
    plan = compile_plan(loaded, site, 1001, "t-1", "/scratch/hpcflow/t/t-1")
    rr = render_run(plan, loaded, site)
    assert [(j.step, j.array, j.deps) for j in rr.jobs] == [
        ("hpcflow-pull", None, []),
        ("a", "0-49", [("afterok", "hpcflow-pull", 0)]),
        ("b", None, [("afterok", "a", 0)]),  # b runs on the host: it does not wait for images
    ]
    ext = ".img" if runtime == "charliecloud" else ".sif"
    dest = f"/cache/images/hms-runner_v1.0.3-{hashlib.sha256(b'docker://ghcr.io/usace/hms-runner:v1.0.3').hexdigest()[:12]}{ext}"
    pull = rr.files["scripts/hpcflow-pull.sh"]
    assert pull.count("hpcflow_pull docker://ghcr.io/usace/hms-runner:v1.0.3 " + dest) == 1
    if runtime == "charliecloud":
        assert 'ch-convert -i ch-image -o dir "${ref#docker://}" "$tmp"' in pull
    else:
        assert f'{runtime} pull --disable-cache "$tmp" "$ref"' in pull
    assert f" {dest} " in rr.files["scripts/a.sh"]  # the launch uses the cached image
    for name in ("hpcflow-pull.sh", "a.sh"):
        p = subprocess.run(["bash", "-n"], input=rr.files[f"scripts/{name}"], text=True)
        assert p.returncode == 0, name


def test_charliecloud_pulls_docker_references_only(repo: Path, tmp_path: Path) -> None:
    site = _site(repo, tmp_path, runtime="charliecloud")
    wf = tmp_path / "wf.yaml"
    wf.write_text(REMOTE_WF.replace("IMAGE", "oras://x/hms:1"))
    loaded = load_workflow(wf, None, site)
    plan = compile_plan(loaded, site, 1001, "t-1", "/scratch/hpcflow/t/t-1")
    with pytest.raises(
        InvalidInput, match=r"wf.yaml:6: step 'a': Charliecloud pulls docker:// references only"
    ):
        render_run(plan, loaded, site)


def test_login_pull_mode_has_no_pull_job(repo: Path, tmp_path: Path) -> None:
    site = _site(repo, tmp_path, runtime="apptainer", pull="login")
    wf = tmp_path / "wf.yaml"
    wf.write_text(REMOTE_WF.replace("IMAGE", "docker://x/hms:1"))
    loaded = load_workflow(wf, None, site)
    plan = compile_plan(loaded, site, 1001, "t-1", "/scratch/hpcflow/t/t-1")
    assert plan.order == ["a", "b"] and plan.pull_images == []
