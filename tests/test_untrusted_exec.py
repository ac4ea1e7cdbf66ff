"""Values against the kernel's exec limits (docs/workflow-format.md#values, docs/packing.md):
a value too long to be an environment string, or a packed element line too long to be an
argument, is refused by validate with its line; a pack whose lines together are over ARG_MAX
runs, since the job tool reads them from the tasks file (on the lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main

from .helpers import counts, status, submit

WF = """\
name: big
steps:
  - name: a
    foreach: {{v: {{file: values.txt}}}}
{pack}    run: test "$(expr length "$HPCFLOW_ITEM_v")" -ge {size}
"""


def _validate(tmp_path: Path, values: list[str], pack: str = "", size: int = 1):
    (tmp_path / "values.txt").write_text("\n".join(values) + "\n")
    (tmp_path / "wf.yaml").write_text(WF.format(pack=pack, size=size))
    return CliRunner().invoke(main, ["validate", str(tmp_path / "wf.yaml")])


def test_a_value_too_long_for_an_environment_is_refused_at_its_line(tmp_path: Path) -> None:
    r = _validate(tmp_path, ["small", "x" * 131_072])
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'wf.yaml'}:4:" in r.stderr and "131,072 bytes" in r.stderr, r.stderr
    assert "Argument list too long" in r.stderr and "Traceback" not in r.stderr


def test_a_value_just_under_the_limit_is_fine(tmp_path: Path) -> None:
    r = _validate(tmp_path, ["x" * (131_072 - len("HPCFLOW_ITEM_v=") - 1)])
    assert r.exit_code == 0, r.stderr


def test_a_packed_line_too_long_for_an_argument_is_refused(tmp_path: Path) -> None:
    # each value fits an environment string, but quoted ("'" -> '"'"') the line does not
    r = _validate(tmp_path, ["'" * 40_000, "b"], pack="    pack: 2\n")
    assert r.exit_code == 2, r.output
    assert "wf.yaml:5:" in r.stderr and "packed element's line" in r.stderr, r.stderr
    assert _validate(tmp_path, ["'" * 40_000, "b"]).exit_code == 0  # unpacked: no argv


def test_the_job_tool_reads_a_tasks_lines_from_the_file(tmp_path: Path) -> None:
    from hpcflow.node.jobtool import task_lines

    tasks = tmp_path / "tasks"
    tasks.write_bytes(b"0\texport A=1\n1\texport A=2\x0bB\n10\texport A=3\n1\texport A=4\n")
    assert task_lines(str(tasks), "1") == ["1\texport A=2\x0bB", "1\texport A=4"]
    assert task_lines(str(tasks), "0") == ["0\texport A=1"]


@pytest.mark.slurm
def test_a_pack_over_arg_max_runs_on_the_lab(slurm, hpcflow, tmp_path: Path, lab_site) -> None:
    # 48 elements of 60,000 bytes in one task: 2.9 MB of lines, over ARG_MAX (2 MiB)
    values = [f"{i:02d}" + "v" * 59_998 for i in range(48)]
    (tmp_path / "values.txt").write_text("\n".join(values) + "\n")
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.format(pack="    pack: {size: 48, parallel: 8}\n", size=60_000))
    sub = submit(hpcflow, lab_site(), wf)
    assert [j["array"] for j in sub["jobs"]] == ["0"]
    w = hpcflow("watch", sub["run_id"], "--timeout", "240", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {"a": {"COMPLETED": 48}}
    log = hpcflow("logs", sub["run_id"], "a", "0", "--stderr", check=True).stdout
    assert "Argument list too long" not in log
    peaks = [
        json.loads(p.read_text()).get("max_rss_kb")
        for p in Path(sub["run_dir"]).glob("steps/a/0/*/.hpcflow/result.json")
    ]
    assert len(peaks) == 48 and all(peaks), peaks  # run by the job tool (wait4), not bash


def test_every_step_over_the_limits_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 131_072 + "\n")
    (tmp_path / "values.txt").write_text("'" * 40_000 + "\nb\n")
    (tmp_path / "wf.yaml").write_text(
        "name: two\nsteps:\n  - name: a\n    foreach: {v: {file: big.txt}}\n    run: c\n"
        "  - name: b\n    foreach: {v: {file: values.txt}}\n    pack: 2\n    run: c\n"
    )
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "wf.yaml")])
    assert r.exit_code == 2 and "wf.yaml:4:" in r.stderr and "wf.yaml:8:" in r.stderr, r.stderr
