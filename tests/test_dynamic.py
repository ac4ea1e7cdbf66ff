"""Dynamic foreach without Slurm: what validation refuses (with its line), how a producer's
file becomes values (or a FAILED expansion with the file's line), and what the first submission
lays out. The lab runs it for real in tests/test_dynamic_slurm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.compile.plan import compile_plan
from hpcflow.launch.expansion import EXPANDED, FAILED, SKIPPED, expand
from hpcflow.render.scripts import render_run
from hpcflow.runners.base import LocalRunner
from hpcflow.spec.validate import load_workflow

CHAIN = """\
name: dyn
steps:
  - name: sample
    run: echo
  - name: hms
    foreach:
      event: {from: {step: sample, file: events.csv, column: event}}
    after: {sample: ok}
    run: echo {{ item.event }}
  - name: ras
    foreach:
      event: {from: {step: sample, file: events.csv, column: event}}
      unit: {values: [u1, u2]}
    after: {hms: each}
    run: echo {{ item.event }} {{ item.unit }}
"""

# (a change to CHAIN, the line the problem is reported at, a fragment of its message)
REFUSED = [
    (("step: sample, file: events.csv", "step: nope, file: events.csv"), 7, "no such step"),
    (
        ("file: events.csv, column: event}}\n    after", "file: ../x.csv}}\n    after"),
        7,
        "without ..",
    ),  # fmt: skip
    (("after: {sample: ok}", "after: {}"), 7, "must run after 'sample'"),
    (("after: {sample: ok}", "after: {sample: any}"), 8, "use ok"),
    (("name: dyn\n", "name: dyn\ncleanup: always\n"), 2, "cleanup: is not supported"),
    (
        (
            "  - name: sample\n    run: echo\n",
            "  - name: sample\n    foreach: {k: {values: [1, 2]}}\n    run: echo\n",
        ),
        8,
        "the producer must have no foreach",
    ),  # fmt: skip
]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "wf.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("change", "line", "fragment"), REFUSED)
def test_validation_refuses_what_cannot_be_expanded(
    tmp_path: Path, change: tuple[str, str], line: int, fragment: str
) -> None:
    old, new = change
    assert old in CHAIN
    wf = _write(tmp_path, CHAIN.replace(old, new, 1))
    res = CliRunner().invoke(main, ["validate", str(wf)])
    assert res.exit_code == 2, res.output
    assert f"{wf}:{line}:" in res.output and fragment in res.output, res.output


def test_a_deferred_step_may_wait_only_for_producers_and_deferred_steps(tmp_path: Path) -> None:
    text = CHAIN.replace("  - name: hms\n", "  - name: prep\n    run: echo\n  - name: hms\n")
    text = text.replace("after: {sample: ok}", "after: {sample: ok, prep: ok}")
    res = CliRunner().invoke(main, ["validate", str(_write(tmp_path, text))])
    assert res.exit_code == 2
    assert "can wait only for producers (sample)" in res.output
    assert "make 'sample' wait for 'prep' instead" in res.output


def test_validate_names_what_is_laid_out_at_run_time(tmp_path: Path) -> None:
    wf = _write(tmp_path, CHAIN)
    res = CliRunner().invoke(main, ["validate", str(wf)])
    assert res.exit_code == 0, res.output
    assert "laid out at run time, after sample: hms, ras" in res.output
    doc = json.loads(CliRunner().invoke(main, ["validate", str(wf), "--json"]).output)
    assert doc["dynamic"] == {"deferred": ["hms", "ras"], "producers": ["sample"]}
    assert doc["elements"] == 1  # the producer; the rest is not known yet


def test_a_template_problem_in_a_deferred_step_is_found_at_validate(tmp_path: Path) -> None:
    wf = _write(tmp_path, CHAIN.replace("echo {{ item.event }} {{", "echo {{ item.evnt }} {{"))
    res = CliRunner().invoke(main, ["validate", str(wf)])
    assert res.exit_code == 2 and "evnt" in res.output, res.output


def _submitted(tmp_path: Path, events: str | None, max_elements: int = 1000) -> tuple:
    """The first submission's plan, and the expansion of a producer that wrote ``events``."""
    wf = _write(tmp_path, CHAIN)
    loaded = load_workflow(wf, max_elements=max_elements)
    run_dir = tmp_path / "run"
    plan = compile_plan(loaded, None, 1001, "dyn-1", str(run_dir))
    rr = render_run(plan, loaded, None)
    for rel, content in rr.files.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(content)
    producer = run_dir / "steps/sample/0/0"
    producer.mkdir(parents=True)
    if events is not None:
        (producer / "events.csv").write_text(events)
    spec = json.loads((run_dir / "dynamic/spec.json").read_text())
    return plan, spec, producer


def test_the_first_submission_holds_the_producer_and_the_expand_job(tmp_path: Path) -> None:
    plan, spec, _ = _submitted(tmp_path, None)
    assert plan.order == ["sample", "hpcflow-expand"]
    expander = plan.steps["hpcflow-expand"].jobs[0]
    assert expander.deps == [("afterok", "sample", 0)]
    assert spec["deferred"] == ["hms", "ras"] and spec["max_elements"] == 1000
    assert spec["expand_in"] == "login"  # no site: the login node expands
    assert spec["axes"]["ras"] == {"event": [], "unit": ["u1", "u2"]}


def test_expansion_lays_out_the_chain_like_a_static_foreach(tmp_path: Path) -> None:
    _, spec, _ = _submitted(tmp_path, "event,weight\r\nB,1\r\nA,2\r\n\r\n")
    exp = expand(LocalRunner(), spec, None)
    assert (exp.outcome, exp.reason) == (EXPANDED, "6 elements (hms.event 2, ras.event 2)")
    assert [j.name for j in exp.jobs()] == ["hpcflow.dyn-1.hms.0", "hpcflow.dyn-1.ras.0",
                                            "hpcflow.dyn-1.ras.1"]  # fmt: skip
    assert [j.deps for j in exp.jobs()] == [
        [("afterok", "sample", 0)],  # met already: the expansion leaves it out when submitting
        [("aftercorr", "hms", 0)],
        [("aftercorr", "hms", 0)],
    ]
    files = exp.files()
    assert sorted(files) == [
        "dynamic/plan.json", "dynamic/plan.txt", "scripts/hms.0.tasks", "scripts/hms.sh",
        "scripts/ras.0.tasks", "scripts/ras.1.tasks", "scripts/ras.sh",
    ]  # fmt: skip
    assert "HPCFLOW_ITEM_event=B" in files["scripts/hms.0.tasks"].splitlines()[0]
    # the same files give the same expansion: what lets the login node adopt the job's
    again = expand(LocalRunner(), spec, None)
    assert again.files() == files and [j.name for j in again.jobs()] == [j.name for j in exp.jobs()]


@pytest.mark.parametrize(
    ("events", "outcome", "fragment"),
    [
        ("event\n", SKIPPED, "holds no values"),
        ("", SKIPPED, "holds no values"),
        (None, FAILED, "events.csv:1: not found: the producer did not write events.csv"),
        ("event\nA\nB\nA\n", FAILED, "events.csv:4: value 'A' (#3) repeats 'A' (#1)"),
        ("storm\nA\n", FAILED, "events.csv:1: no column 'event'"),
        ('event\nA\n"B\x01"\n', FAILED, "events.csv:3: foreach value 'B\\x01' contains"),
        (
            "event\n" + "".join(f"e{i}\n" for i in range(400)),
            FAILED,
            "makes 1,201 elements, over the bound of 1,000",
        ),  # fmt: skip
    ],
)
def test_expansion_edges(tmp_path: Path, events: str | None, outcome: str, fragment: str) -> None:
    _, spec, producer = _submitted(tmp_path, events)
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == outcome and fragment in exp.reason, exp.reason
    if outcome == FAILED and "bound" not in fragment:
        assert exp.reason.startswith(f"{producer}/events.csv:")
    assert exp.jobs() == [] and exp.files() == {}


def test_a_skipped_producer_skips_the_fan_out(tmp_path: Path) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    (producer / ".hpcflow").mkdir()
    (producer / ".hpcflow" / "skipped").write_text("when: condition is false\n")
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == SKIPPED and "the producer was skipped" in exp.reason


def test_an_oversized_file_is_refused_unread(tmp_path: Path, monkeypatch) -> None:
    import hpcflow.launch.expansion as ex

    monkeypatch.setattr(ex, "MAX_CSV_BYTES", 64)
    _, spec, _ = _submitted(tmp_path, "event\n" + "x" * 100 + "\n")
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == FAILED and "events.csv:1: over" in exp.reason


def test_status_labels(tmp_path: Path) -> None:
    from hpcflow.spec.dynamic import EXPAND_STEP as SPEC_EXPAND
    from hpcflow.store.lite import EXPAND_STEP, dynamic_doc, dynamic_label

    assert EXPAND_STEP == SPEC_EXPAND
    stored = {"state": "waiting", "producers": ["sample"], "reason": None}
    assert dynamic_label(dynamic_doc(stored, {"PENDING": 1})) == "waiting for sample"
    assert dynamic_doc(stored, {"UPSTREAM_FAILED": 1})["state"] == "upstream_failed"
    assert dynamic_doc(stored, {"CANCELLED": 1})["state"] == "cancelled"
    done = {**stored, "state": "skipped", "reason": "x.csv holds no values"}
    assert dynamic_label(dynamic_doc(done, {"COMPLETED": 1})) == "SKIPPED: x.csv holds no values"


def test_the_expand_job_script(tmp_path: Path) -> None:
    from hpcflow.spec.site import Site

    _submitted(tmp_path, None)
    script = (tmp_path / "run/scripts/hpcflow-expand.sh").read_text()
    assert "the next hpcflow sync on the login node expands the run" in script
    assert script.rstrip().endswith("exit 0")
    dyn = {"expand_in": "job", "hpcflow_python": "/opt/v/bin/python"}
    site = Site.model_validate({"name": "x", "dynamic": dyn})
    loaded = load_workflow(_write(tmp_path, CHAIN))
    plan = compile_plan(loaded, site, 1001, "dyn-2", "/scratch/r un")
    script = render_run(plan, loaded, site).files["scripts/hpcflow-expand.sh"]
    assert "/opt/v/bin/python -m hpcflow.launch.expander '/scratch/r un'" in script
    with pytest.raises(ValueError, match="absolute path"):
        Site.model_validate({"name": "x", "dynamic": {"hpcflow_python": "python; rm -rf ~"}})
