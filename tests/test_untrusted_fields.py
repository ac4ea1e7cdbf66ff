"""Only template fields are templates; images may use params; resources must fit a node of
the site's partition and Slurm's fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main

BASE = """\
name: demo
params: {hms_version: v1.0.3, note: "{{ literal }}"}
description: "uses {{ braces }} in prose"
containers:
  hms: {image: "docker://ghcr.io/usace/hms:{{ params.hms_version }}"}
steps:
  - name: a
    container: hms
    run: echo hi
"""


def validate(tmp_path: Path, text: str, *args: str, site: Path | None = None):
    (tmp_path / "wf.yaml").write_text(text)
    pre = ["--site", str(site)] if site else []
    return CliRunner().invoke(main, [*pre, "validate", str(tmp_path / "wf.yaml"), *args])


def test_image_reference_may_use_params(tmp_path: Path, site_file: Path) -> None:
    from hpcflow.compile.plan import remote_images_used
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow

    (tmp_path / "wf.yaml").write_text(BASE)
    site = load_site(str(site_file))
    loaded = load_workflow(tmp_path / "wf.yaml", ["hms_version=v2.0"], site)
    assert remote_images_used(loaded) == ["docker://ghcr.io/usace/hms:v2.0"]


def test_image_template_problems_are_located(tmp_path: Path) -> None:
    res = validate(tmp_path, BASE.replace("params.hms_version", "params.nope"))
    assert res.exit_code == 2 and "wf.yaml:5:" in res.stderr and "params.nope" in res.stderr
    res = validate(tmp_path, BASE, "--set", "hms_version=v1 --net=host")
    assert res.exit_code == 2 and "is not one image reference" in res.stderr


@pytest.mark.parametrize(
    "extra,line",
    [
        ("    resources: {partition: '{{ params.p }}'}\n", 10),
        ("    outputs: ['{{ params.x }}/*.csv']\n", 10),
        ("    throttle: 2\n    after: []\n    when: always\n    retry: {never: [1]}\n", None),
    ],
)
def test_braces_outside_template_fields_are_refused(
    tmp_path: Path, extra: str, line: int | None
) -> None:
    res = validate(tmp_path, BASE + extra)
    if line is None:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 2
        assert f"wf.yaml:{line}:" in res.stderr and "is not a template" in res.stderr


@pytest.mark.parametrize(
    "resources,fragment",
    [
        ("{cpus: 32}", "asks for 32 CPUs but a node of partition 'debug' has 16"),
        ("{mem: 64G}", "asks for 64G of memory but a node of partition 'debug' has 16000M"),
        ("{gpus: 3, nodes: 2, partition: gpu}", "gpus is still per node"),
        ("{cpus: 70000}", "less than or equal to 65535"),
        ("{mem: 99999999T}", "absurdly large"),
        ("{time: 400d}", "over Slurm's limit of 365 days"),
        ("{nodes: 99999999}", "less than or equal to 1000000"),
    ],
)
def test_resources_must_fit_the_site(
    tmp_path: Path, repo: Path, resources: str, fragment: str
) -> None:
    text = BASE + f"    resources: {resources}\n"
    res = validate(tmp_path, text, site=repo / "site_configs" / "lab.yaml")
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr and "wf.yaml:" in res.stderr


def test_validate_reports_every_template_problem_at_once(tmp_path: Path) -> None:
    text = BASE.replace("echo hi", "echo {{ params.nope }}") + "    env: {X: '{{ item.z }}'}\n"
    text = text.replace("steps:\n", "steps:\n  - {name: b, run: 'echo {{ run_idd }}'}\n")
    res = validate(tmp_path, text)
    assert res.exit_code == 2
    assert "params.nope is undefined" in res.stderr
    assert "item.z" in res.stderr and "run_idd" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 3
