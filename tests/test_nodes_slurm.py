"""Node faults on the lab's extra nodes n1-n4 (docs/faults.md, docs/slurm-lab.md#many-nodes-n1-n4):
a node that dies mid-array, a black-hole node, elements that fail on every node. Each test has
the four nodes to itself (``lab_nodes``); the fixture brings them back afterwards."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import lab, node_state, preempt, status, submit, wait_until
from .webhook_server import check_schema, webhook

pytestmark = [pytest.mark.slurm, pytest.mark.lab_nodes]

# the extra nodes' partitions (site_configs/lab.yaml has only vm's)
PARTITIONS = {
    "multi": {"max_time": "1d", "gpus": 0, "cpus": 4, "mem": "4000M"},
    "bigmem": {"max_time": "1d", "gpus": 0, "cpus": 4, "mem": "32000M"},
    "accel": {"max_time": "1d", "gpus": 2, "cpus": 4, "mem": "8000M"},
}


def work(path: Path, n: int, body: str, pack: str = "null") -> Path:
    """A foreach of ``n`` elements on partition multi; each appends its node to its own
    ``completions`` file when it has done its work (a second line: run twice to completion)."""
    path.write_text(
        f"name: nodes\nsteps:\n  - name: work\n    foreach: {{i: {{range: [0, {n - 1}]}}}}\n"
        f"    pack: {pack}\n"
        "    resources: {partition: multi, cpus: 1, mem: 100M, time: 10m}\n"
        f"    run: |\n      {body}\n      hostname >> completions\n"
    )
    return path


def elements(doc: dict) -> list[dict]:
    return doc["steps"]["work"]["tasks"]


def completions(scratch: Path, run_id: str, n: int) -> dict[int, list[str]]:
    run_dir = next(scratch.glob(f"**/{run_id}"))
    out = {}
    for i in range(n):
        f = run_dir / "steps" / "work" / str(i // 1000) / str(i) / "completions"
        out[i] = f.read_text().split() if f.exists() else []
    return out


def history(hpcflow, run_id: str) -> list[dict]:
    return json.loads(hpcflow("history", run_id, "--json", check=True).stdout)["events"]


def on_node(node: str) -> bool:
    p = subprocess.run(["squeue", "-h", "-t", "R", "-w", node, "-o", "%i"], capture_output=True,
                       text=True)  # fmt: skip
    return bool(p.stdout.strip())


def test_a_node_dies_mid_array(slurm, hpcflow, tmp_path: Path, lab_site, lab_nodes) -> None:
    """500 packed elements over n1-n4, n2 killed while its tasks run. The site asks Slurm not
    to requeue (--no-requeue): its tasks end NODE_FAIL, their finished elements are kept,
    the others are resubmitted (Slurm keeps them off n2 while it is down), and the run
    completes on the other nodes. No element is lost and none ran twice to completion."""
    site = lab_site(partitions=PARTITIONS, sbatch_extra=["--no-requeue"])
    n = 500
    wf = work(tmp_path / "wf.yaml", n, "sleep 1", pack="{size: 10, parallel: 2}")
    t0 = time.monotonic()
    sub = submit(hpcflow, site, wf)
    wait_until(lambda: on_node("n2"), 60, what="elements running on n2")
    time.sleep(1)  # some of n2's elements done, some half-way
    lab("node-kill", "n2")
    w = hpcflow("watch", sub["run_id"], "--timeout", "400", "--interval", "2")
    took = time.monotonic() - t0
    doc = status(hpcflow, sub["run_id"])
    states = {t["state"] for t in elements(doc)}
    assert w.returncode == 0 and states == {"COMPLETED"}, (w.stdout[-2000:], states)
    done = completions(tmp_path / "scratch", sub["run_id"], n)
    assert [i for i, c in done.items() if len(c) != 1] == []  # none lost, none run twice
    events = history(hpcflow, sub["run_id"])
    failed_on_n2 = [e for e in events if e["new_state"] == "NODE_FAIL"]
    assert failed_on_n2 and all("on node n2" in (e["reason"] or "") for e in failed_on_n2)
    assert any("node fault: resubmitted" in (e["reason"] or "") for e in events), events[-5:]
    retried = {e["index"] for e in failed_on_n2}
    assert all(done[i] != ["n2"] for i in retried)  # they completed elsewhere
    assert {t["node"] for t in elements(doc) if t["index"] in retried} <= {"n1", "n3", "n4"}
    print(f"\nnode kill: {len(retried)} elements affected, run took {took:.0f} s")
    assert node_state("n2").startswith("down")  # the fixture brings it back


def test_a_black_hole_node_is_found_and_avoided(
    slurm, hpcflow, tmp_path: Path, lab_site, lab_nodes
) -> None:
    """400 elements over n1-n4, where n3 fails every job at once (the scratch directory is
    read-only there: Slurm cannot open the job's output). hpcflow names n3, keeps the run's
    pending tasks and retries off it, and every element completes."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    lab("black-hole", "n3", str(scratch))
    lab_nodes.append(("n3", str(scratch)))
    n = 400
    wf = work(tmp_path / "wf.yaml", n, "sleep 1")
    with webhook() as hook:
        site = lab_site(partitions=PARTITIONS, notify=[{"name": "team", "webhook": hook.url}])
        t0 = time.monotonic()
        sub = submit(hpcflow, site, wf)
        w = hpcflow("watch", sub["run_id"], "--timeout", "400", "--interval", "2")
        took = time.monotonic() - t0
    faults = [d for d in hook.received if d["kind"] == "node_fault"]
    assert [(d["node"], d["fault"]) for d in faults] == [("n3", "black_hole")]  # once
    check_schema(faults[0])
    doc = status(hpcflow, sub["run_id"])
    states = {t["state"] for t in elements(doc)}
    assert w.returncode == 0 and states == {"COMPLETED"}, (w.stdout[-2000:], states)
    assert [a["node"] for a in doc["nodes_avoided"]] == ["n3"]
    assert "failed within 60 s" in doc["nodes_avoided"][0]["why"]
    assert {t["node"] for t in elements(doc)} <= {"n1", "n2", "n4"}
    done = completions(scratch, sub["run_id"], n)
    assert [i for i, c in done.items() if len(c) != 1] == []
    events = history(hpcflow, sub["run_id"])
    assert any("node n3 looks like a black hole" in (e["reason"] or "") for e in events)
    hit = {e["index"] for e in events if e["new_state"] == "FAILED"}
    text = hpcflow("status", sub["run_id"], check=True).stdout
    assert "avoiding node n3" in text
    print(f"\nblack hole: {len(hit)} elements failed on n3 and were retried, run took {took:.0f} s")


def test_elements_that_fail_on_every_node_blame_no_node(
    slurm, hpcflow, tmp_path: Path, lab_site, lab_nodes
) -> None:
    """The workflow's own bug fails fast everywhere: the run fails, no node is avoided, and
    nothing is resubmitted for a node's fault."""
    site = lab_site(partitions=PARTITIONS)
    wf = work(tmp_path / "wf.yaml", 40, "exit 3")
    sub = submit(hpcflow, site, wf)
    w = hpcflow("watch", sub["run_id"], "--timeout", "200", "--interval", "2")
    doc = status(hpcflow, sub["run_id"])
    assert w.returncode == 1 and {t["state"] for t in elements(doc)} == {"FAILED"}
    assert doc["nodes_avoided"] == []
    assert len({t["node"] for t in elements(doc)}) > 1  # it ran on several nodes
    assert not any("resubmitted" in (e["reason"] or "") for e in history(hpcflow, sub["run_id"]))


def test_preempted_elements_are_requeued_and_counted_once(
    slurm, hpcflow, tmp_path: Path, lab_site, lab_nodes
) -> None:
    """A job in partition urgent (PriorityTier 10, PreemptMode=REQUEUE) takes all four nodes:
    the running elements end PREEMPTED and Slurm requeues them under the same job id. Each
    completes once; its attempts count the requeue; efficiency and the report count each
    element once."""
    site = lab_site(partitions={**PARTITIONS, "urgent": PARTITIONS["multi"]})
    n = 16  # one per CPU of n1-n4: all running when the urgent job comes
    wf = work(tmp_path / "wf.yaml", n, "sleep 8")
    t0 = time.monotonic()
    sub = submit(hpcflow, site, wf)
    run_id = sub["run_id"]

    def all_running() -> bool:
        hpcflow("status", run_id, check=True)
        return {t["state"] for t in elements(status(hpcflow, run_id))} == {"RUNNING"}

    wait_until(all_running, 90, 1, what="all 16 elements running")
    urgent = preempt(3)
    try:
        w = hpcflow("watch", run_id, "--timeout", "400", "--interval", "3")
    finally:
        subprocess.run(["scancel", urgent], capture_output=True)
    took = time.monotonic() - t0
    doc = status(hpcflow, run_id)
    assert w.returncode == 0 and {t["state"] for t in elements(doc)} == {"COMPLETED"}
    done = completions(tmp_path / "scratch", run_id, n)
    assert [i for i, c in done.items() if len(c) != 1] == []
    events = history(hpcflow, run_id)
    requeued = {e["index"] for e in events if "requeued by Slurm" in (e["reason"] or "")}
    assert requeued, events[-10:]
    jobs = {t["slurm_job_id"].split("_")[0] for t in elements(doc)}
    assert len(jobs) == 1  # the same job id, requeued: no resubmission by hpcflow
    assert all(t["attempts"] == 2 for t in elements(doc) if t["index"] in requeued)
    eff = json.loads(hpcflow("efficiency", run_id, "--json", check=True).stdout)
    assert eff["steps"]["work"]["elements"] == n  # each element once, not once per start
    from hpcflow.report.data import element_times
    from hpcflow.store.reads import ReadOnly

    db = ReadOnly(tmp_path / "db" / "tracker.db")  # the report's timeline: one bar each
    assert sorted(x[3] for x in element_times(db, run_id)["work"]) == list(range(n))
    db.close()
    print(f"\npreemption: {len(requeued)} elements requeued, run took {took:.0f} s")


@pytest.mark.lab_alone  # slurmctld restarts under every test
def test_daemons_restart_during_a_5000_element_packed_run(
    slurm, hpcflow, tmp_path: Path, lab_site, lab_nodes
) -> None:
    """slurmctld restarts, then n1's slurmd alone, while 5,000 packed elements run over the
    four nodes: nothing is lost and no element completes twice."""
    site = lab_site(partitions=PARTITIONS)
    n = 5000
    wf = work(tmp_path / "wf.yaml", n, "true", pack="{size: 50, parallel: 4}")
    t0 = time.monotonic()
    sub = submit(hpcflow, site, wf)
    run_id = sub["run_id"]
    wait_until(lambda: on_node("n1"), 60, what="tasks running on n1")
    lab("ctld-restart")
    time.sleep(3)
    lab("slurmd-restart", "n1")
    w = hpcflow("watch", run_id, "--timeout", "500", "--interval", "3")
    took = time.monotonic() - t0
    doc = status(hpcflow, run_id)
    assert w.returncode == 0 and doc["steps"]["work"]["states"] == {"COMPLETED": n}, doc["steps"]
    done = completions(tmp_path / "scratch", run_id, n)
    assert [i for i, c in done.items() if len(c) != 1] == []
    print(f"\ndaemon restarts: run took {took:.0f} s")
