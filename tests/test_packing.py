"""Element packing without Slurm: the pack a step gets, what its task asks for, the plan's
array tasks and links, validation, the job script run by hand, and what a refresh concludes
from each element's own record."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from hpcflow.compile.plan import compile_plan
from hpcflow.errors import InvalidInput
from hpcflow.render.scripts import render_run
from hpcflow.spec.packing import Pack, resolve_pack, task_resources
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow
from hpcflow.spec.workflow import PackSpec, Resources
from hpcflow.states import TaskState
from hpcflow.tracker.reconcile import Change, Tracked, own_result, with_evidence

from .helpers import lab_site


def site(tmp_path: Path, **limits: object):
    return load_site(str(lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits=limits)))


@pytest.mark.parametrize(
    ("spec", "n", "res", "limits", "want"),
    [
        (None, 100, {}, {}, (1, 1)),
        ({"size": 10}, 100, {}, {}, (10, 1)),
        ({"size": 10}, 4, {}, {}, (4, 1)),  # never more than there are elements
        ({"size": 8, "parallel": 4}, 100, {}, {}, (8, 4)),
        ({"size": "auto", "parallel": 4}, 100, {}, {}, (4, 4)),  # no limit: one round
        # 1-minute elements, tasks of at least 5 minutes: 5 per task
        ({"size": "auto"}, 100, {"time": "1m"}, {"min_task_time": "5m"}, (5, 1)),
        ({"size": "auto", "parallel": 2}, 100, {"time": "1m"}, {"min_task_time": "5m"}, (10, 2)),
        # 10,000 elements, 1,000 queued tasks allowed: 10 per task
        ({"size": "auto"}, 10_000, {}, {"max_submit_jobs": 1000}, (10, 1)),
        # ... but the partition's 1-day limit caps 1-hour elements at 24 per task
        ({"size": "auto"}, 100_000, {"time": "1h"}, {"max_submit_jobs": 1000}, (24, 1)),
    ],
)
def test_resolve_pack(tmp_path: Path, spec, n, res, limits, want) -> None:
    s = site(tmp_path, **limits)
    r = Resources(partition="debug", **res)
    got = resolve_pack(PackSpec(**spec) if spec else None, n, r, s)
    assert (got.size, got.parallel) == want


def test_task_resources_multiply_by_parallel_and_rounds() -> None:
    r = Resources(cpus=2, mem="1G", gpus=1, time="10m")
    t = task_resources(r, Pack(10, 4))
    assert (t.cpus, t.mem, t.gpus, t.time) == (8, 4096, 4, 1800)  # MB, s; ceil(10/4) = 3 rounds
    assert task_resources(r, Pack()) == r


WF = """\
name: pk
steps:
  - name: a
    foreach: {i: {range: [0, 24]}}
    pack: PACK_A
    resources: {time: 1m}
    run: echo {{ item.i }} > out
  - name: b
    foreach: {i: {range: [0, 24]}}
    after: {a: each}
    pack: PACK_B
    run: cat {{ upstream.a.task_dir }}/out
"""


def plan(tmp_path: Path, pack_a: str, pack_b: str, max_array: int = 1001, limits=None):
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK_A", pack_a).replace("PACK_B", pack_b))
    s = site(tmp_path, **(limits or {}))
    loaded = load_workflow(wf, site=s)
    return loaded, s, compile_plan(loaded, s, max_array, "pk-1", str(tmp_path / "run"))


def test_packed_layout_and_equal_packs_stay_aftercorr(tmp_path: Path) -> None:
    _, _, p = plan(tmp_path, "10", "10")
    a, b = p.steps["a"], p.steps["b"]
    assert [j.array_spec for j in a.jobs] == ["0-2"]  # 25 elements, 10 per task
    assert a.jobs[0].element_tasks == [0] * 10 + [1] * 10 + [2] * 5
    assert b.jobs[0].deps == [("aftercorr", "a", 0)] and b.loose_each == []


def test_different_packs_wait_for_the_upstream_chunk(tmp_path: Path) -> None:
    # 3 array tasks of 10 per chunk for a (30 positions), 11 tasks per chunk for b
    _, _, p = plan(tmp_path, "10", "null", max_array=11)
    a, b = p.steps["a"], p.steps["b"]
    assert [j.array_spec for j in a.jobs] == ["0-2"]
    assert [j.array_spec for j in b.jobs] == ["0-10", "0-10", "0-2"]
    assert b.loose_each == ["a"]
    assert [j.deps for j in b.jobs] == [[("afterany", "a", 0)]] * 3


def test_rendered_packed_script_and_tasks(tmp_path: Path) -> None:
    loaded, s, p = plan(tmp_path, "{size: 4, parallel: 2}", "null")
    rr = render_run(p, loaded, s)
    script = rr.files["scripts/a.sh"]
    assert "#SBATCH --cpus-per-task=2" in script
    assert "#SBATCH --time=0-00:02:00" in script  # 2 rounds of 1 minute
    lines = rr.files["scripts/a.0.tasks"].splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(i // 4) for i in range(25)]
    assert "UPSTREAM_FAILED" in rr.files["scripts/b.sh"]  # b checks its own a element


def test_packed_task_over_the_partition_limit_is_refused(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK_A", "2000").replace("PACK_B", "null")
                  .replace("[0, 24]", "[0, 1999]"))  # fmt: skip
    with pytest.raises(InvalidInput) as e:
        load_workflow(wf, site=site(tmp_path))
    msg = str(e.value)
    assert "wf.yaml:5:" in msg and "over partition 'debug'" in msg and "pack size <= 1440" in msg


def test_parallel_larger_than_size_is_refused(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK_A", "{size: 2, parallel: 4}").replace("PACK_B", "null"))
    with pytest.raises(InvalidInput) as e:
        load_workflow(wf)
    assert "wf.yaml:5:" in str(e.value) and "parallel (4) is larger than size (2)" in str(e.value)


def run_task(rr, tmp_path: Path, step: str, task: int, **slurm: str) -> subprocess.CompletedProcess:
    """Run a rendered array task by hand, as slurmd would (no Slurm needed)."""
    run_dir = Path(rr.plan.run_dir)
    for rel, text in rr.files.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(text)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "77", **slurm}
    return subprocess.run(
        ["bash", str(run_dir / f"scripts/{step}.sh"), str(run_dir / f"scripts/{step}.0.tasks")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_packed_task_runs_each_element_with_its_own_record(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        WF.replace("PACK_A", "{size: 4, parallel: 2}").replace("PACK_B", "null")
        .replace("echo {{ item.i }} > out", "test {{ item.i }} != 6 || exit 3; echo hi > out; "
                 "test {{ item.i }} != 5 || echo 1 > outputs.json")
    )  # fmt: skip
    s = site(tmp_path)
    loaded = load_workflow(wf, site=s)
    rr = render_run(compile_plan(loaded, s, 1001, "pk-1", str(tmp_path / "run")), loaded, s)
    p = run_task(rr, tmp_path, "a", 1)  # elements 4-7
    assert p.returncode == 3, p.stderr  # the task fails with its failed element's exit code
    results = {}
    for i in range(4, 8):
        d = tmp_path / f"run/steps/a/0/{i}"
        results[i] = json.loads((d / ".hpcflow/result.json").read_text())
        assert (tmp_path / f"run/logs/a/0/{i}.err").exists()
    assert {i: r["state"] for i, r in results.items()} == {
        4: "COMPLETED", 5: "COMPLETED", 6: "FAILED", 7: "COMPLETED"}  # fmt: skip
    assert {r["slurm_job_id"] for r in results.values()} == {"77_1"}
    # whether the refresh needs to read outputs.json at all: only element 5 wrote one
    assert {i: r["outputs"] for i, r in results.items()} == {
        4: False, 5: True, 6: False, 7: False}  # fmt: skip
    assert not (tmp_path / "run/steps/a/0/3").exists()  # other tasks' elements: untouched
    # b's element 6 checks its own upstream element and records UPSTREAM_FAILED
    p = run_task(rr, tmp_path, "b", 6)
    assert p.returncode == 92
    rec = json.loads((tmp_path / "run/steps/b/0/6/.hpcflow/result.json").read_text())
    assert rec["state"] == "UPSTREAM_FAILED"
    assert run_task(rr, tmp_path, "b", 5).returncode == 0


def test_a_requeued_packed_task_keeps_what_it_completed(tmp_path: Path) -> None:
    """Slurm requeues a task (its node died): the elements that task completed before are
    kept, not run twice to completion; the unfinished ones run. A later job (hpcflow's own
    retry, another id) runs every element it is given."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK_A", "{size: 4, parallel: 2}").replace("PACK_B", "null")
                  .replace("echo {{ item.i }} > out", "echo run >> runs"))  # fmt: skip
    s = site(tmp_path)
    loaded = load_workflow(wf, site=s)
    rr = render_run(compile_plan(loaded, s, 1001, "pk-1", str(tmp_path / "run")), loaded, s)
    assert run_task(rr, tmp_path, "a", 1).returncode == 0  # elements 4-7, job 77
    elem = {i: tmp_path / f"run/steps/a/0/{i}" for i in range(4, 8)}
    (elem[6] / ".hpcflow/result.json").unlink()  # 6 was running when the node died
    p = run_task(rr, tmp_path, "a", 1, SLURM_RESTART_COUNT="1")
    assert p.returncode == 0, p.stderr
    assert {i: (d / "runs").read_text().count("run") for i, d in elem.items()} == {
        4: 1, 5: 1, 6: 2, 7: 1}  # fmt: skip
    assert "completed before this task was requeued; kept" in (
        tmp_path / "run/logs/a/0/4.err").read_text()  # fmt: skip
    p = run_task(rr, tmp_path, "a", 1, SLURM_ARRAY_JOB_ID="78", SLURM_RESTART_COUNT="1")
    assert {i: (d / "runs").read_text().count("run") for i, d in elem.items()} == {
        4: 2, 5: 2, 6: 3, 7: 2}  # fmt: skip


def change(new: TaskState, display: str = "5_1") -> Change:
    t = Tracked(id=1, run_id="r", step="a", index=4, slurm_job_id="5", task_id=1,
                state=TaskState.RUNNING, reads_result=True)  # fmt: skip
    row = {"state": new.value, "exit_code": 0, "start": "s", "end": "e", "node": "vm",
           "attempts": 1, "reason": None}  # fmt: skip
    return Change(t, new, row)


EPOCH = int(datetime(2026, 12, 2, 12, 0, 5).timestamp())


@pytest.mark.parametrize(
    ("task_fate", "result", "want"),
    [
        # the element finished before Slurm killed its task: its own record decides
        (TaskState.TIMEOUT, {"state": "COMPLETED", "exit_code": 0}, TaskState.COMPLETED),
        (TaskState.FAILED, {"state": "COMPLETED", "exit_code": 0}, TaskState.COMPLETED),
        (TaskState.FAILED, {"state": "FAILED", "exit_code": 3}, TaskState.FAILED),
        (TaskState.COMPLETED, {"state": "SKIPPED", "exit_code": 0}, TaskState.SKIPPED),
        # it had not finished: the task's fate
        (TaskState.TIMEOUT, None, TaskState.TIMEOUT),
        (TaskState.OUT_OF_MEMORY, None, TaskState.OUT_OF_MEMORY),
        (TaskState.NODE_FAIL, None, TaskState.NODE_FAIL),
        # a record left by an earlier attempt of the element is not this task's
        (
            TaskState.TIMEOUT,
            {"state": "FAILED", "exit_code": 1, "slurm_job_id": "4_0"},
            TaskState.TIMEOUT,
        ),  # fmt: skip
        (TaskState.TIMEOUT, {"state": "WEIRD"}, TaskState.TIMEOUT),
    ],
)
def test_own_result_decides_a_packed_element(task_fate, result, want) -> None:
    if result is not None:
        result = {"slurm_job_id": "5_1", "start": EPOCH, "end": EPOCH, **result}
    c = change(task_fate)
    assert c.needs_evidence
    got = own_result(c, result, "when: condition is false\n")
    assert got.new is want
    if result is not None and want is not task_fate or want is TaskState.COMPLETED:
        assert got.row["end"] == "2026-12-02T12:00:05"
    if want is TaskState.SKIPPED:
        assert got.row["reason"] == "skipped: when: condition is false"


def test_unpacked_elements_store_their_record_once() -> None:
    ran = change(TaskState.COMPLETED)
    ran = replace(ran, task=replace(ran.task, reads_result=False))
    assert ran.needs_evidence  # it ran: its result.json and outputs.json are read, once
    rec = {"slurm_job_id": "5_1", "state": "COMPLETED", "exit_code": 0, "attempts": 2}
    got = with_evidence(ran, rec, None, {"peak": 3})
    assert got.new is TaskState.COMPLETED and got.row["result"] == rec
    assert got.row["outputs"] == {"peak": 3}
    stale = with_evidence(ran, rec | {"slurm_job_id": "4_1"}, None, {"peak": 1})
    assert stale.row["result"] is None and stale.row["outputs"] is None  # not this attempt's
    never = replace(ran, row=ran.row | {"node": None}, new=TaskState.UPSTREAM_FAILED)
    assert not never.needs_evidence  # never started: nothing to read
    done = replace(ran, task=replace(ran.task, state=TaskState.COMPLETED))
    assert not done.needs_evidence  # already ended: never read again


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("true", "pack must be a whole number, auto, or {size: N, parallel: k}"),
        ("0", "pack size must be a whole number from 1 to 1000000, or auto"),
        ("lots", "Input should be a valid dictionary"),
        ("{size: 4, parallel: 0}", "greater than or equal to 1"),
        ("{size: 4, speed: 2}", "speed"),
    ],
)
def test_bad_pack_values_are_refused_with_their_line(tmp_path: Path, value, fragment) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK_A", value).replace("PACK_B", "null"))
    with pytest.raises(InvalidInput) as e:
        load_workflow(wf)
    assert "wf.yaml:5:" in str(e.value) and fragment in str(e.value), str(e.value)


def test_the_job_tool_runs_packed_elements_and_records_each_ones_peak(tmp_path: Path) -> None:
    """`hpcflow_job.py pack K LINE...` (what a packed task runs when the node has python):
    each element in `bash -c hpcflow_element`, K at once, its own peak RSS from wait4 added
    to its result.json, and the task's exit code the first non-zero one. Real processes."""
    import subprocess
    import sys

    from hpcflow.node import jobtool

    run_dir = tmp_path / "run"
    script = tmp_path / "task.sh"
    script.write_text(f"""
hpcflow_element() {{
  eval "${{1#*$'\\t'}}"
  d="$HPCFLOW_RUN_DIR/steps/$HPCFLOW_STEP/0/$HPCFLOW_INDEX/.hpcflow"
  mkdir -p "$d"
  python3 -c "x = b'1' * ($HPCFLOW_INDEX * 50 * 1024 * 1024)"
  printf '{{"index": %d, "state": "COMPLETED"}}\\n' "$HPCFLOW_INDEX" > "$d/result.json"
  [ "$HPCFLOW_INDEX" = 3 ] && exit 7
  exit 0
}}
export -f hpcflow_element
export HPCFLOW_RUN_DIR={run_dir} HPCFLOW_STEP=s
exec {sys.executable} {jobtool.__file__} pack 2 "$@"
""")
    lines = [f"0\texport HPCFLOW_INDEX={i}" for i in (1, 2, 3, 4)]
    p = subprocess.run(["bash", str(script), *lines], capture_output=True, text=True)
    assert p.returncode == 7, p.stderr  # element 3's exit code is the task's
    peaks = {}
    for i in (1, 2, 3, 4):
        res = json.loads((run_dir / f"steps/s/0/{i}/.hpcflow/result.json").read_text())
        peaks[i] = res["max_rss_kb"] / 1024
    for i, mb in peaks.items():  # i x 50 MB, plus the interpreter
        assert i * 50 <= mb <= i * 50 + 40, peaks


@pytest.mark.parametrize(
    ("sacct_code", "own_code", "stored"),
    [(9, 137, 137), (0, 128, 128), (2, 130, 130), (137, 137, 137), (3, 3, 3),
     (9, 9, 9), (143, 0, 143), (9, 201, 9)],
)  # fmt: skip
def test_an_unpacked_element_keeps_its_own_exit_code(sacct_code, own_code, stored) -> None:
    """sacct prints an exit status of 128 or more less 128 ('9:0' for exit 137): the
    element's own record restores it, and only that (a task killed after its element
    ended keeps the task's code)."""
    failed = change(TaskState.FAILED)
    failed = replace(failed, task=replace(failed.task, reads_result=False))
    failed = replace(failed, row=failed.row | {"exit_code": sacct_code})
    rec = {"slurm_job_id": "5_1", "state": "FAILED", "exit_code": own_code, "attempts": 1}
    assert with_evidence(failed, rec, None).row["exit_code"] == stored
    stale = with_evidence(failed, rec | {"slurm_job_id": "4_1"}, None)
    assert stale.row["exit_code"] == sacct_code


def test_a_tasks_line_has_one_writer_and_one_reader() -> None:
    from hpcflow.node.jobtool import line_index, task_line

    line = task_line(7, 123, ["HPCFLOW_ITEM_e='HPCFLOW_INDEX=9 x'", "HPCFLOW_ITEM_u=A"])
    assert line == "7\texport HPCFLOW_INDEX=123 HPCFLOW_ITEM_e='HPCFLOW_INDEX=9 x' HPCFLOW_ITEM_u=A"
    assert line_index(line) == 123 and line_index(task_line(0, 5, [])) == 5
    assert line_index("7\techo HPCFLOW_INDEX=3") is None and line_index("") is None
