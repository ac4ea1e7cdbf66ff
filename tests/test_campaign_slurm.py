"""Storm campaigns on the lab cluster: repeated ticks until done, overlapping ticks, failed
events retried then reported, max_submit_jobs, Slurm refusals, and the same over SSH."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helpers import campaign_file, lab_site, path_shim, ssh_site

pytestmark = pytest.mark.slurm


def _campaign(tmp_path: Path, site: Path, file: str = "campaign.yaml", **changes: object) -> Path:
    return campaign_file(tmp_path, site, file, **changes)


def _j(hpcflow, *args: str, **kw) -> dict:
    p = hpcflow(*args, "--json", **kw)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def _drive(hpcflow, camp: Path, timeout: float = 240, **kw) -> list[dict]:
    ticks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks.append(_j(hpcflow, "campaign", "tick", str(camp), **kw))
        if _j(hpcflow, "campaign", "status", str(camp), **kw)["finished"]:
            return ticks
        time.sleep(2)
    raise AssertionError(f"campaign not finished after {timeout}s: {ticks[-3:]}")


def test_campaign_runs_to_the_end_with_retry_and_failure_report(
    slurm, hpcflow, tmp_path: Path
) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    camp = _campaign(tmp_path, site, params={"fail_events": [7], "flaky_events": [33]})
    first = _j(hpcflow, "campaign", "tick", str(camp))
    assert [s["batch"] for s in first["submitted"]] == [0, 1]  # max_in_flight 2
    ticks = [first, *_drive(hpcflow, camp)]
    submitted = [s["batch"] for t in ticks for s in t["submitted"]]
    assert submitted == [0, 1, 2]  # each batch exactly once
    retried = [r["batch"] for t in ticks for r in t["retried"]]
    assert sorted(retried) == [0, 1]  # event 7 (batch 0) and event 33 (batch 1) failed once
    doc = _j(hpcflow, "campaign", "status", str(camp), "--failed-csv", str(tmp_path / "f.csv"))
    assert doc["events"] == {"total": 60, "done": 59, "failed": 1, "running": 0, "pending": 0}
    assert doc["finished"] is True
    assert [(b["index"], b["state"], b["events"]) for b in doc["batches"]] == [
        (0, "FAILED", 20),
        (1, "COMPLETED", 20),
        (2, "COMPLETED", 20),
    ]
    assert doc["batches"][0]["retries"] == 1 and doc["throughput_per_hour"] > 0
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    assert [(r["event"], r["steps"], r["states"]) for r in rows] == [("7", "hms", "FAILED")]
    # the failed events file is a campaign's event set as it is
    rerun = _campaign(
        tmp_path, site, "rerun.yaml", name="rerun", events={"file": "f.csv", "column": "event"}
    )
    plan = _j(hpcflow, "campaign", "plan", str(rerun))
    assert plan["events"] == 1 and plan["batches"][0]["first"] == 7
    # one run per batch in the tracker, labelled with the batch's idempotency key
    runs = _j(hpcflow, "runs")["runs"]
    assert sorted(r["label"] for r in runs) == [f"demo-storms#{i}#1" for i in range(3)]
    # ticking a finished campaign does nothing
    again = _j(hpcflow, "campaign", "tick", str(camp))
    assert again["submitted"] == [] and again["retried"] == []


def test_overlapping_ticks_submit_one_batch(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    camp = _campaign(tmp_path, site, max_in_flight=1)
    # sbatch holds until the test says go: the tick that got the lock waits inside it, so
    # the other finds the lock held however the two are scheduled (no sleep to arrange it)
    go = tmp_path / "go"
    hold = f"i=0; while [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    env = dict(
        os.environ,
        HPCFLOW_DB=str(tmp_path / "db" / "tracker.db"),
        PATH=path_shim(tmp_path, "sbatch", hold),
    )
    cmd = [sys.executable, "-m", "hpcflow", "campaign", "tick", str(camp), "--json"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)  # the skipped tick ends first, by itself
    go.touch()
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted("skipped" in o for o in outs) == [False, True], outs
    done = next(o for o in outs if "skipped" not in o)
    assert [s["batch"] for s in done["submitted"]] == [0]
    assert len(_j(hpcflow, "runs")["runs"]) == 1
    hpcflow("cancel", done["submitted"][0]["run_id"], check=True)


def _queued() -> list[str]:
    user = os.environ.get("USER") or "root"
    out = subprocess.run(
        ["squeue", "-h", "-r", "-u", user, "-o", "%i"], capture_output=True, text=True
    )
    return out.stdout.split()


@pytest.mark.lab_alone
def test_max_submit_jobs_throttles_batches(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001, "max_submit_jobs": 50},
    )
    camp = _campaign(tmp_path, site, max_in_flight=3)
    before = len(_queued())  # normally 0; anything else in the queue counts against the limit
    t = _j(hpcflow, "campaign", "tick", str(camp))
    fit = min(3, (50 - before) // 21)  # 2 x 21 jobs fit under 50 in an empty queue, 3 do not
    assert [s["batch"] for s in t["submitted"]] == list(range(fit))
    assert any(n.startswith("throttled:") for n in t["notes"]), t
    assert len(_queued()) <= 50
    for s in t["submitted"]:
        hpcflow("cancel", s["run_id"], check=True)
    # a batch that alone would exceed the limit is made smaller, and the plan says so
    site15 = lab_site(
        tmp_path / "s15.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001, "max_submit_jobs": 15},
    )
    plan = _j(hpcflow, "campaign", "plan", str(_campaign(tmp_path, site15, "s.yaml", name="s")))
    assert plan["batch_size"] == 14 and plan["jobs_per_batch"] == 15
    assert len(plan["batches"]) == 5 and "max_submit_jobs (15)" in plan["note"]


@pytest.mark.lab_alone
def test_refused_batch_backs_off(slurm, hpcflow, tmp_path: Path) -> None:
    """QOS lab-tiny lets a user have 2 jobs: Slurm refuses the batch; the tick records it,
    leaves the batch waiting and backs off instead of hammering slurmctld."""
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    camp = _campaign(tmp_path, site)
    wf = tmp_path / "workflow.yaml"
    doc = yaml.safe_load(wf.read_text())
    doc["defaults"]["resources"]["qos"] = "lab-tiny"
    wf.write_text(yaml.safe_dump(doc))
    t = _j(hpcflow, "campaign", "tick", str(camp))
    assert t["submitted"] == [] and "backing off" in t["notes"][0], t
    assert "QOSMaxSubmitJobPerUserLimit" in t["notes"][0] or "policy" in t["notes"][0]
    st = _j(hpcflow, "campaign", "status", str(camp))
    assert st["backoff_until"] and st["batches"][0]["state"] == "WAITING"
    t2 = _j(hpcflow, "campaign", "tick", str(camp))
    assert t2["submitted"] == [] and "not submitting before" in t2["notes"][0]


def test_campaign_over_ssh(slurm, sshd, hpcflow, tmp_path: Path) -> None:
    site = ssh_site(tmp_path / "site.yaml", tmp_path / "scratch", sshd)
    camp = _campaign(tmp_path, site, max_in_flight=3)
    ticks = _drive(hpcflow, camp)
    assert [s["batch"] for t in ticks for s in t["submitted"]] == [0, 1, 2]
    doc = _j(hpcflow, "campaign", "status", str(camp))
    assert doc["events"]["done"] == 60 and doc["finished"]


def test_tick_that_died_mid_submission_is_settled(slurm, hpcflow, tmp_path: Path) -> None:
    """A tick killed after recording a batch's idempotency key: if its run exists (found by
    label) the batch adopts it; if not, nothing reached Slurm and the batch waits again."""
    import sqlite3

    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    camp = _campaign(tmp_path, site, max_in_flight=1)
    wf = tmp_path / "workflow.yaml"  # batch 0 stays in flight through the second tick
    wf.write_text(wf.read_text().replace("sleep 1\n", "sleep 120\n"))
    t = _j(hpcflow, "campaign", "tick", str(camp))
    run_id = t["submitted"][0]["run_id"]
    db = sqlite3.connect(tmp_path / "db" / "tracker.db")
    with db:  # batch 0: died after submitting; batch 1: died before its run was recorded
        db.execute("UPDATE batch SET state='SUBMITTING', run_id=NULL WHERE \"index\"=0")
        db.execute("UPDATE batch SET state='SUBMITTING', attempt=1 WHERE \"index\"=1")
    db.close()
    t2 = _j(hpcflow, "campaign", "tick", str(camp))
    assert t2["submitted"] == [] and t2["in_flight"] == 1
    st = _j(hpcflow, "campaign", "status", str(camp))
    assert st["batches"][0]["run_id"] == run_id
    assert [b["state"] for b in st["batches"][1:]] == ["WAITING", "WAITING"]
    assert len(_j(hpcflow, "runs")["runs"]) == 1
    hpcflow("cancel", run_id, check=True)


OOM_BATCH = """\
name: oom-batch
params: {events: [1]}
defaults:
  resources: {cpus: 1, mem: 100M, time: 5m}
steps:
  - name: hms
    foreach: {event: {values: "{{ params.events }}"}}
    retry: {attempts: 2, on_oom: {mem_factor: 8}}
    run: python3 -c "import time; x = bytearray(600 * 1024 * 1024); time.sleep(3)"
"""


def test_tick_escalates_out_of_memory_elements(slurm, hpcflow, tmp_path: Path) -> None:
    """Only ticks drive this campaign (no `status`): its OOM elements must still be
    resubmitted with more memory by the tick's sync, and the campaign must end done."""
    (tmp_path / "wf.yaml").write_text(OOM_BATCH)
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    camp = {
        "name": "oom-camp",
        "workflow": "wf.yaml",
        "site": str(site),
        "events": {"range": [1, 2]},
        "batch_size": 2,
        "batch_param": "events",
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(camp))
    _drive(hpcflow, tmp_path / "c.yaml", timeout=300)
    st = _j(hpcflow, "campaign", "status", str(tmp_path / "c.yaml"))
    run_id = st["batches"][0]["run_id"]
    hist = _j(hpcflow, "history", run_id)["events"]
    # on failure, the run's history says what each attempt was seen as (a flake once)
    assert st["events"]["done"] == 2 and st["events"]["failed"] == 0, (st, hist)
    assert any(e["reason"] == "automatic on_oom: mem_factor 8.0" for e in hist), hist


def test_campaign_whose_workflow_packs(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001, "max_submit_jobs": 15},
    )
    camp = _campaign(tmp_path, site, params={"fail_events": [], "flaky_events": [33]})
    wf = yaml.safe_load((tmp_path / "workflow.yaml").read_text())
    wf["steps"][0]["pack"] = {"size": 5, "parallel": 5}
    (tmp_path / "workflow.yaml").write_text(yaml.safe_dump(wf))
    plan = _j(hpcflow, "campaign", "plan", str(camp))
    # 20 events in 4 packed tasks + the summary: a whole batch fits under 15 queued jobs
    # (unpacked it would be 21, and the batch would be cut to 14 events)
    assert plan["batch_size"] == 20 and plan["jobs_per_batch"] == 5
    ticks = _drive(hpcflow, camp)
    assert sorted(r["batch"] for t in ticks for r in t["retried"]) == [1]  # event 33, once
    doc = _j(hpcflow, "campaign", "status", str(camp))
    assert doc["events"] == {"total": 60, "done": 60, "failed": 0, "running": 0, "pending": 0}
    run_id = doc["batches"][1]["run_id"]
    st = _j(hpcflow, "status", run_id, "--tasks")
    hms = {t["item"]["event"]: t for t in st["steps"]["hms"]["tasks"]}
    assert len(hms) == 20 and all(t["state"] == "COMPLETED" for t in hms.values())
    # one Slurm array task ran events 21-25; event 33 ran again alone, in its retry's job
    assert len({hms[e]["slurm_job_id"] for e in range(21, 26)}) == 1
    assert len({t["slurm_job_id"] for t in hms.values()}) == 5
    assert st["steps"]["hms"]["pack"] == {"size": 5, "parallel": 5}
