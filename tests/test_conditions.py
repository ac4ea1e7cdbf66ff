"""The `when:` expression language (hpcflow/node/jobtool.py) and its compile-time checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.node import jobtool

from .helpers import edit_yaml

ENV = {"item.event": 4, "item.unit": "A", "params.thr": 3, "params.units": ["A", "B"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("item.event > 3", True),
        ("item.event > 3 and item.unit == 'B'", False),
        ("item.event > 3 and not item.unit == 'B'", True),
        ("item.unit in params.units", True),
        ("item.unit not in ['A']", False),
        ("item.event >= params.thr or false", True),
        ("(item.event < 2 or item.event > 10) and true", False),
        ('"A" == item.unit', True),
        ("item.event != 4.0", False),
        ("null == null", True),
        ("'x' in 'xyz'", True),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert jobtool.evaluate(jobtool.parse(text), ENV.__getitem__) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("item.event >", "ends too early"),
        ("a == 1 == 2", "chained comparison"),
        ("(a == 1", "ends too early"),
        ("a b", "unexpected 'b'"),
        ("f(1)", "unexpected '('"),
        ("1 + 2", "unexpected '+"),
        ("__import__('os')", "unexpected '('"),
        ("a; rm -rf /", "unexpected ';"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(jobtool.ExprError, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        jobtool.parse(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("item.event < 'x'", "both must be numbers or strings"),
        ("item.event and true", "is not true or false"),
        ("item.event in 5", "needs a list or a string"),
        ("true < false", "both must be numbers or strings"),
    ],
)
def test_evaluation_errors(text: str, fragment: str) -> None:
    with pytest.raises(jobtool.ExprError, match=fragment):
        jobtool.evaluate(jobtool.parse(text), ENV.__getitem__)


def test_runtime_reads_upstream_outputs_and_state(tmp_path: Path) -> None:
    """The job-side tool, run as the job script runs it: a separate python, stdlib only."""
    up = tmp_path / "up"
    (up / ".hpcflow").mkdir(parents=True)
    (up / ".hpcflow/result.json").write_text('{"state": "COMPLETED", "exit_code": 0}')
    (up / "outputs.json").write_text('{"peak": {"cfs": 1200}}')
    tool = tmp_path / "hpcflow_job.py"
    tool.write_text(Path(jobtool.__file__).read_text())
    env = dict(os.environ, HPCFLOW_ITEM_event="7", HPCFLOW_INDEX="6", UP=str(up))

    def when(text: str) -> tuple[int, str]:
        spec = {
            "text": text,
            "ast": jobtool.parse(text),
            "params": {"min": 1000},
            "axes": {"event": "int"},
            "upstreams": {"hms": "UP"},
        }
        (tmp_path / "when.json").write_text(json.dumps(spec))
        p = subprocess.run(
            [sys.executable, "-I", str(tool), "when", str(tmp_path / "when.json")],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        return p.returncode, p.stderr

    assert when("upstream.hms.outputs.peak.cfs > params.min and item.event == 7")[0] == 0
    assert when("upstream.hms.state == 'FAILED'")[0] == jobtool.WHEN_FALSE == 10
    assert when("index == 6 and upstream.hms.exit_code == 0")[0] == 0
    rc, err = when("upstream.hms.outputs.volume > 1")
    assert rc == 2 and "has no 'volume'" in err


WF = """\
name: demo
params: {thr: 3}
steps:
  - name: a
    foreach: {event: {range: [1, 3]}}
    run: x
  - name: b
    after: {a: each}
    foreach: {event: {range: [1, 3]}}
    when: {when}
    run: y
"""


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("item.evnt > 1", "item.evnt: the step has no such axis (axes: event)"),
        ("params.nope == 1", "params.nope: no such parameter (params: thr)"),
        ("upstream.zz.state == 'X'", "needs a step this one depends on"),
        ("upstream.a.stat == 1", "use upstream.a.state, .exit_code or .outputs.<key>"),
        ("'item.event > 1 >'", "when: chained comparison at column 16: use and"),
        ("os.system == 1", "unknown name 'os.system'"),
    ],
)
def test_when_validation(tmp_path: Path, when: str, fragment: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("{when}", when))
    r = CliRunner().invoke(main, ["validate", str(wf)])
    assert r.exit_code == 2, r.output
    assert f"{wf}:10: step 'b': when: " in r.output and fragment in r.output, r.output


def test_when_always_and_valid_conditions_pass(tmp_path: Path) -> None:
    for when in ("always", "upstream.a.outputs.peak >= params.thr and item.event in [1, 2]"):
        wf = tmp_path / "wf.yaml"
        wf.write_text(WF.replace("{when}", json.dumps(when)))
        r = CliRunner().invoke(main, ["validate", str(wf)])
        assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("step", "line", "fragment"),
    [
        ("outputs: ['../x']", 4, "must be relative to the element's directory"),
        ("outputs: ['/etc/*']", 4, "must be relative to the element's directory"),
        ("outputs: ['a/../../b']", 4, "must be relative"),
        ("ffrd: {writable: [sim]}", 4, "must be absolute"),
        ("ffrd: {writable: ['/a:/b']}", 4, "must be absolute"),
        ("ffrd: {payload: missing.json}", 4, "ffrd payload file 'missing.json' not found"),
        ("ffrd: {config_via: email}", 4, "config_via"),
    ],
)
def test_outputs_and_ffrd_validation(tmp_path: Path, step: str, line: int, fragment: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(f"name: demo\nsteps:\n  - name: a\n    {step}\n    run: x\n")
    r = CliRunner().invoke(main, ["validate", str(wf)])
    assert r.exit_code == 2, r.output
    assert f"{wf}:{line}:" in r.output and fragment in r.output, r.output


def test_reserved_cleanup_name(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: demo\nsteps:\n  - name: hpcflow-cleanup\n    run: x\n")
    r = CliRunner().invoke(main, ["validate", str(wf)])
    assert r.exit_code == 2 and "reserved for hpcflow's own jobs" in r.output, r.output


def test_outputs_need_a_results_directory(tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        textwrap.dedent("""\
        name: demo
        steps:
          - name: a
            outputs: ['*.csv']
            run: x
        """)
    )
    r = CliRunner().invoke(main, ["--site", str(site_file), "validate", str(wf)])
    assert r.exit_code == 2 and "has no paths.results" in r.output, r.output


COND = """\
name: demo
params: {go: false}
steps:
  - name: a
    when: params.go
    run: echo ran > ran.txt
"""


def _run_element(tmp_path: Path, site_file: Path, python: str) -> tuple[int, Path]:
    """Render the step and run its real job script with bash as Slurm would (no Slurm)."""

    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow
    from hpcflow.tracker.submit import prepare

    edit_yaml(site_file, python=python)
    (tmp_path / "wf.yaml").write_text(COND)
    site = load_site(str(site_file))
    rr = prepare(load_workflow(tmp_path / "wf.yaml", [], site), site, None)  # type: ignore[arg-type]
    run_dir = Path(rr.plan.run_dir)
    for rel, content in rr.files.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(content)
    p = subprocess.run(
        ["bash", str(run_dir / "scripts/a.sh"), str(run_dir / "scripts/a.0.tasks")],
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
        cwd=tmp_path,
    )
    return p.returncode, run_dir / "steps/a/0/0"


def test_false_condition_skips_the_element(tmp_path: Path, site_file: Path) -> None:
    rc, tdir = _run_element(tmp_path, site_file, sys.executable)
    assert rc == 0 and (tdir / ".hpcflow/skipped").exists()
    assert json.loads((tdir / ".hpcflow/result.json").read_text())["state"] == "SKIPPED"


def test_a_crashing_python_fails_the_element_instead_of_skipping_it(
    tmp_path: Path, site_file: Path
) -> None:
    """Python 3.6 exits 1 on the job tool's syntax, as on any uncaught exception: that must
    fail the element (95), never read as `when:` false."""
    crash = tmp_path / "python36"
    crash.write_text("#!/bin/sh\necho 'SyntaxError: future feature annotations' >&2\nexit 1\n")
    crash.chmod(0o755)
    rc, tdir = _run_element(tmp_path, site_file, str(crash))
    assert rc == 95
    assert not (tdir / ".hpcflow/skipped").exists()
    assert json.loads((tdir / ".hpcflow/result.json").read_text())["state"] == "FAILED"


@pytest.mark.parametrize(
    "script,version,fragment",
    [
        (None, "ok", None),
        ("echo 3.6.8", "3.6.8", "needs 3.7 or newer"),
        ("echo boom >&2; exit 1", None, "failed: boom"),
        ("missing", None, "cannot be run"),
    ],
)
def test_sites_check_reports_the_site_python(
    tmp_path: Path, site_file: Path, script: str | None, version: str | None, fragment: str | None
) -> None:

    from hpcflow.runners.base import LocalRunner
    from hpcflow.slurm.sitecheck import check_python
    from hpcflow.spec.site import load_site

    python = sys.executable
    if script == "missing":
        python = str(tmp_path / "no-such-python")
    elif script:
        (tmp_path / "py").write_text(f"#!/bin/sh\n{script}\n")
        (tmp_path / "py").chmod(0o755)
        python = str(tmp_path / "py")
    edit_yaml(site_file, python=python)
    got, problem = check_python(load_site(str(site_file)), LocalRunner())
    if version == "ok":
        assert got == ".".join(map(str, sys.version_info[:3])) and problem is None
    else:
        assert got == version and fragment in (problem or "")
