"""Every terminal state on the real lab cluster, each matching what sacct says, nothing lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import lab_site, status, submit, wait_until

pytestmark = pytest.mark.slurm

STATES = """\
name: states
steps:
  - {name: ok, run: 'true'}
  - {name: fail, run: exit 3}
  - name: signal
    run: kill -9 $$   # $$ is the batch script itself: Slurm sees signal 9
  - name: timeout
    resources: {time: 1m}
    run: sleep 600
  - name: oom
    resources: {mem: 100M}
    retry: {attempts: 2, on_oom: {mem_factor: 8}}
    run: python3 -c "import time; x = bytearray(600 * 1024 * 1024); time.sleep(3)"
  - name: sleeper
    run: sleep 600
  - {name: exit130, run: exit 130}   # sacct prints '2:0'
  - name: oomkill   # SIGKILLed alone at its memory limit, as a cgroup OOM kill does
    resources: {mem: 400M}
    run: |
      python3 - <<'PY'
      import os, time
      def status(pid, key):
          with open(f"/proc/{pid}/status") as f:
              return next(ln.split()[1] for ln in f if ln.startswith(key + ":"))
      def step_kb():  # what Slurm sums: this process and its shells up to slurmstepd
          pid, kb = os.getpid(), 0
          while status(pid, "Name") != "slurmstepd":
              kb, pid = kb + int(status(pid, "VmRSS")), int(status(pid, "PPid"))
          return kb
      held, limit_kb = [], int(os.environ["SLURM_MEM_PER_NODE"]) * 1024
      while step_kb() < 0.97 * limit_kb:
          held.append(b"1" * (1024 * 1024))
      time.sleep(2.5)  # sampled (JobAcctGatherFrequency=1), below OverMemoryKill's limit
      os.kill(os.getpid(), 9)
      PY
"""


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def test_terminal_states(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "states.yaml"
    wf.write_text(STATES)
    sub = submit(hpcflow, site_file, wf)
    (sleeper,) = [j["slurm_job_id"] for j in sub["jobs"] if j["step"] == "sleeper"]
    wait_until(lambda: sacct_states([sleeper]) == {sleeper: "RUNNING"}, 60, what="sleeper runs")
    assert (
        "cancelled 1 Slurm job(s)"
        in hpcflow("cancel", sub["run_id"], "--step", "sleeper", check=True).stdout
    )
    w = hpcflow("watch", sub["run_id"], "--timeout", "240", "--interval", "2")
    assert w.returncode == 1, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    tasks = {name: st["tasks"][0] for name, st in doc["steps"].items()}
    assert {n: t["state"] for n, t in tasks.items()} == {
        "ok": "COMPLETED",
        "fail": "FAILED",
        "signal": "FAILED",
        "timeout": "TIMEOUT",
        "oom": "COMPLETED",
        "sleeper": "CANCELLED",
        "exit130": "FAILED",
        "oomkill": "OUT_OF_MEMORY",
    }
    assert (tasks["fail"]["exit_code"], tasks["signal"]["exit_code"]) == (3, 137)
    # sacct says '2:0' and '9:0' for these: the elements' own records keep the real codes
    assert (tasks["exit130"]["exit_code"], tasks["oomkill"]["exit_code"]) == (130, 137)
    # the OOM element ran out of memory once, was escalated with 8x memory, then completed
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)["events"]
    oom = [
        (e["old_state"], e["new_state"], e["reason"])
        for e in hist
        if e["step"] == "oom" and e["index"] is not None
    ]
    assert "OUT_OF_MEMORY" in [b for _, b, _ in oom] and "FAILED" not in [b for _, b, _ in oom]
    assert any(r == "automatic on_oom: mem_factor 8.0" for _, _, r in oom)
    assert tasks["oom"]["attempts"] == 2
    new_job = tasks["oom"]["slurm_job_id"]
    req = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=ReqMem", "-j", new_job],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert req == "800M"
    # nothing lost: every element's state matches what sacct says of its current job
    slurm = sacct_states([t["slurm_job_id"] for t in tasks.values()])
    expect = {
        "COMPLETED": "COMPLETED",
        "FAILED": "FAILED",
        "TIMEOUT": "TIMEOUT",
        "CANCELLED": "CANCELLED",
        "OUT_OF_MEMORY": "FAILED",  # no cgroups on the lab: an over-memory kill is FAILED
    }
    for name, t in tasks.items():
        assert slurm[t["slurm_job_id"]].split()[0] == expect[t["state"]], (name, slurm)


@pytest.fixture
def node_back():
    yield
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)


@pytest.mark.lab_alone
def test_node_fail_and_requeue(slurm, hpcflow, tmp_path: Path, node_back) -> None:
    """Node goes down under three running jobs: the requeueable one is requeued by Slurm and
    completes on its second attempt; a --no-requeue one ends NODE_FAIL, and hpcflow
    resubmits it (the site's faults.node_retries, default 2: docs/faults.md), on the same
    node once it is back (the partition's only one: it is not excluded), unless the site
    turned that off (node_retries: 0), when it stays NODE_FAIL."""
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    plain = lab_site(tmp_path / "plain.yaml", tmp_path / "s1", limits={"max_array_size": 1001})
    norq = lab_site(
        tmp_path / "norq.yaml",
        tmp_path / "s2",
        limits={"max_array_size": 1001},
        sbatch_extra=["--no-requeue"],
        faults={"node_retries": 0},  # hpcflow does not resubmit it either (docs/faults.md)
    )
    retried = lab_site(tmp_path / "retried.yaml", tmp_path / "s3",
                       limits={"max_array_size": 1001}, sbatch_extra=["--no-requeue"])  # fmt: skip
    wf = tmp_path / "nf.yaml"
    wf.write_text(
        "name: nf\nsteps:\n  - name: work\n    run: |\n"
        "      if [ ! -e first ]; then touch first; sleep 600; fi\n"
    )
    a = submit(hpcflow, plain, wf)
    b = submit(hpcflow, norq, wf)
    c = submit(hpcflow, retried, wf)
    three = [x["jobs"][0]["slurm_job_id"] for x in (a, b, c)]
    wait_until(lambda: list(sacct_states(three).values()) == ["RUNNING"] * 3, 30,
               what="all three run")  # fmt: skip
    for x in (a, b, c):
        hpcflow("status", x["run_id"], check=True)  # the tracker has seen them running
    subprocess.run(
        ["scontrol", "update", f"nodename={node}", "state=down", "reason=hpcflow-test"], check=True
    )

    def back() -> bool:  # ReturnToService=2 may bring it back by itself; else resume it
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True
        )
        state = subprocess.run(
            ["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        return state in ("idle", "mixed", "allocated")

    wait_until(back, 60, 1, what="the node to come back")
    assert hpcflow("watch", b["run_id"], "--timeout", "120", "--interval", "1").returncode == 1
    assert hpcflow("watch", a["run_id"], "--timeout", "180", "--interval", "1").returncode == 0
    ta = status(hpcflow, a["run_id"])["steps"]["work"]["tasks"][0]
    tb = status(hpcflow, b["run_id"])["steps"]["work"]["tasks"][0]
    assert (ta["state"], tb["state"]) == ("COMPLETED", "NODE_FAIL")
    assert ta["attempts"] == 2  # the requeue counted as an attempt
    assert hpcflow("watch", c["run_id"], "--timeout", "180", "--interval", "1").returncode == 0
    tc = status(hpcflow, c["run_id"])["steps"]["work"]["tasks"][0]
    assert tc["state"] == "COMPLETED" and tc["slurm_job_id"] != c["jobs"][0]["slurm_job_id"]
    hist_c = json.loads(hpcflow("history", c["run_id"], "--json", check=True).stdout)["events"]
    assert any(e["new_state"] == "NODE_FAIL" and f"on node {node}" in (e["reason"] or "")
               for e in hist_c), hist_c  # fmt: skip
    assert any(e["reason"] == "node fault: resubmitted" for e in hist_c), hist_c
    hist = json.loads(hpcflow("history", a["run_id"], "--json", check=True).stdout)["events"]
    assert any("requeued by Slurm" in (e["reason"] or "") for e in hist), hist
