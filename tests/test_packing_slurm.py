"""Element packing on the lab: several elements per array task, each keeping its identity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import counts, status, submit, wait_until

pytestmark = pytest.mark.slurm


def watch(hpcflow, run_id: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return hpcflow("watch", run_id, "--timeout", str(timeout), "--interval", "1")


def array_tasks(run_id: str, step: str) -> list[str]:
    """The Slurm array tasks sacct has for a step of the run (allocations only)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,JobName", "-S", "now-2hours"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        ln.split("|")[0]
        for ln in out.splitlines()
        if ln.split("|")[-1].startswith(f"hpcflow.{run_id}.{step}.")
    ]


FAILING = """\
name: packfail
steps:
  - name: a
    foreach: {i: {range: [0, 9]}}
    pack: 4
    run: |
      echo "element {{ item.i }} says hello"
      if [ {{ item.i }} = 5 ] && [ ! -e {{ run_dir }}/fixed ]; then
        echo "boom {{ item.i }}" >&2; exit 7
      fi
      echo done > out
"""


def test_one_failing_element_of_a_packed_task(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(FAILING)
    sub = submit(hpcflow, site_file, wf)
    assert [j["array"] for j in sub["jobs"]] == ["0-2"]  # 10 elements in 3 array tasks
    assert watch(hpcflow, sub["run_id"]).returncode == 1
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 9, "FAILED": 1}}
    tasks = {t["item"]["i"]: t for t in doc["steps"]["a"]["tasks"]}
    assert (tasks[5]["state"], tasks[5]["exit_code"]) == ("FAILED", 7)
    # its own logs, and its neighbours in the same array task have theirs
    assert "boom 5" in hpcflow("logs", sub["run_id"], "a", "5", "--stderr", check=True).stdout
    assert "element 4 says hello" in hpcflow("logs", sub["run_id"], "a", "4", check=True).stdout
    assert "boom" not in hpcflow("logs", sub["run_id"], "a", "4", "--stderr", check=True).stdout
    assert len(array_tasks(sub["run_id"], "a")) == 3

    Path(sub["run_dir"], "fixed").touch()
    before = {i: Path(sub["run_dir"], f"steps/a/0/{i}/.hpcflow/result.json").read_text()
              for i in range(10)}  # fmt: skip
    r = hpcflow("retry", sub["run_id"], "--json", check=True)
    assert json.loads(r.stdout)["resubmitted"] == 1
    assert watch(hpcflow, sub["run_id"]).returncode == 0
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 10}}
    after = {i: Path(sub["run_dir"], f"steps/a/0/{i}/.hpcflow/result.json").read_text()
             for i in range(10)}  # fmt: skip
    # only element 5 ran again: every other element's record is the first attempt's
    assert [i for i in range(10) if before[i] != after[i]] == [5]
    out = hpcflow("logs", sub["run_id"], "a", "5", check=True).stdout
    assert out.count("element 5 says hello") == 2


TIMEOUT = """\
name: packtime
steps:
  - name: a
    foreach: {i: {range: [0, 5]}}
    pack: 6
    resources: {time: 10s}
    run: if [ {{ item.i }} -ge 2 ]; then sleep 300; fi; echo ok > out
"""


def test_packed_task_killed_by_its_time_limit(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(TIMEOUT)
    sub = submit(hpcflow, site_file, wf)
    script = Path(sub["run_dir"], "scripts/a.sh").read_text()
    assert "#SBATCH --time=0-00:01:00" in script  # 6 elements x 10 s, one after another
    assert watch(hpcflow, sub["run_id"], 400).returncode == 1
    doc = status(hpcflow, sub["run_id"])
    states = {t["item"]["i"]: t["state"] for t in doc["steps"]["a"]["tasks"]}
    # the two that finished before Slurm killed the task are COMPLETED; the rest TIMEOUT
    assert states == {0: "COMPLETED", 1: "COMPLETED", 2: "TIMEOUT", 3: "TIMEOUT",
                      4: "TIMEOUT", 5: "TIMEOUT"}  # fmt: skip
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    ended = [e for e in hist["events"] if e["new_state"] in ("COMPLETED", "TIMEOUT")]
    assert sorted(e["index"] for e in ended) == list(range(6))  # each counted once


PARALLEL = """\
name: packpar
steps:
  - name: a
    foreach: {i: {range: [0, 7]}}
    pack: {parallel: 4}
    resources: {cpus: 1, mem: 100M}
    run: date +%s.%N > start; sleep 3; echo {{ item.i }} > out
  - name: b
    foreach: {i: {range: [0, 7]}}
    after: {a: each}
    run: echo $(( $(cat {{ upstream.a.task_dir }}/out) * 10 )) > out
"""


def test_parallel_pack_then_unpacked_each(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(PARALLEL)
    sub = submit(hpcflow, site_file, wf)
    script = Path(sub["run_dir"], "scripts/a.sh").read_text()
    assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH --mem=400M" in script
    assert [j["array"] for j in sub["jobs"]] == ["0-1", "0-7"]
    assert watch(hpcflow, sub["run_id"]).returncode == 0
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 8}, "b": {"COMPLETED": 8}}
    base = Path(sub["run_dir"], "steps")
    for i in range(8):
        assert (base / f"b/0/{i}/out").read_text().strip() == str(i * 10)
    starts = [float((base / f"a/0/{i}/start").read_text()) for i in range(4)]
    assert max(starts) - min(starts) < 2.5  # the first four ran at once, not one by one


SKIPPING = """\
name: packskip
steps:
  - name: a
    foreach: {i: {range: [0, 5]}}
    pack: 3
    when: item.i % 2 == 0
    run: echo ran > out
"""


def test_packed_elements_skipped_by_when(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SKIPPING.replace("item.i % 2 == 0", "item.i in [0, 2, 4]"))
    sub = submit(hpcflow, site_file, wf)
    assert watch(hpcflow, sub["run_id"]).returncode == 0
    doc = status(hpcflow, sub["run_id"])
    states = {t["item"]["i"]: t["state"] for t in doc["steps"]["a"]["tasks"]}
    assert states == {0: "COMPLETED", 1: "SKIPPED", 2: "COMPLETED", 3: "SKIPPED",
                      4: "COMPLETED", 5: "SKIPPED"}  # fmt: skip
    reasons = {t["item"]["i"]: t["reason"] for t in doc["steps"]["a"]["tasks"]}
    assert "when: condition is false" in reasons[1]


CANCEL = """\
name: packcancel
steps:
  - name: a
    foreach: {i: {range: [0, 3]}}
    pack: 4
    run: if [ {{ item.i }} -ge 1 ]; then sleep 300; fi; echo ok > out
"""


def test_cancelled_packed_task_keeps_what_finished(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(CANCEL)
    sub = submit(hpcflow, site_file, wf)
    done = Path(sub["run_dir"], "steps/a/0/0/.hpcflow/result.json")
    wait_until(done.exists, 120, what="element 0 to finish inside the running task")
    hpcflow("cancel", sub["run_id"], check=True)
    wait_until(
        lambda: counts(status(hpcflow, sub["run_id"]))["a"] == {"COMPLETED": 1, "CANCELLED": 3},
        120,
        what="element 0 COMPLETED, the rest CANCELLED",
    )
