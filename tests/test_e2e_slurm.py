"""End to end on the lab Slurm cluster (tests/cluster/slurm-lab up): the real CLI, real
sbatch/sacct/squeue, real jobs writing real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import counts, lab_site, path_shim, status, submit, wait_until

pytestmark = pytest.mark.slurm


def test_sst_example_completes(slurm, hpcflow, repo: Path, site_file: Path) -> None:
    sub = submit(hpcflow, site_file, repo / "examples/quickstart/workflow.yaml")
    assert [(j["step"], j["array"]) for j in sub["jobs"]] == [
        ("sample", None),
        ("hms", "0-5%4"),
        ("ras", "0-5"),
        ("ras", "0-5"),
        ("summarize", None),
    ]
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert doc["state"] == "COMPLETED"
    assert counts(doc) == {
        "sample": {"COMPLETED": 1},
        "hms": {"COMPLETED": 6},
        "ras": {"COMPLETED": 12},
        "summarize": {"COMPLETED": 1},
    }
    summary = json.loads((Path(sub["run_dir"]) / "summary.json").read_text())
    assert summary["ras_results"] == 12 and summary["events_complete"] == [1, 2, 3, 4, 5, 6]
    # GPU requests land on the gpu partition with a GPU allocated
    ras_ids = doc["steps"]["ras"]["slurm_jobs"]
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "--format=JobID,Partition,AllocTRES", "-j", ",".join(ras_ids)],
        capture_output=True,
        text=True,
    ).stdout
    rows = [ln.split("|") for ln in out.splitlines() if ln]
    assert len(rows) == 12 and all(r[1] == "gpu" and "gres/gpu=1" in r[2] for r in rows), out
    hms_rows = subprocess.run(
        [
            "sacct",
            "-X",
            "-P",
            "-n",
            "--format=Partition",
            "-j",
            doc["steps"]["hms"]["slurm_jobs"][0],
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(hms_rows) == {"debug"}
    for t in doc["steps"]["ras"]["tasks"]:
        res = json.loads(
            Path(sub["run_dir"], "steps/ras/0", str(t["index"]), "result.json").read_text()
        )
        assert res["gpus_on_node"] == "1"
        assert (res["event"], res["unit"]) == (t["item"]["event"], t["item"]["unit"])
    log = hpcflow("logs", sub["run_id"], "hms", "2", check=True).stdout
    assert "event 3: peak" in log


def test_sst_example_failure_isolation(slurm, hpcflow, repo: Path, site_file: Path) -> None:
    sub = submit(hpcflow, site_file, repo / "examples/quickstart/workflow.yaml", "fail_event=3")
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 1, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert doc["state"] == "FAILED"
    assert counts(doc) == {
        "sample": {"COMPLETED": 1},
        "hms": {"COMPLETED": 5, "FAILED": 1},
        "ras": {"COMPLETED": 10, "UPSTREAM_FAILED": 2},
        "summarize": {"COMPLETED": 1},
    }
    failed = [t for t in doc["steps"]["hms"]["tasks"] if t["state"] == "FAILED"]
    assert [(t["item"], t["exit_code"]) for t in failed] == [({"event": 3}, 1)]
    upstream_failed = [
        t["item"] for t in doc["steps"]["ras"]["tasks"] if t["state"] == "UPSTREAM_FAILED"
    ]
    assert upstream_failed == [{"event": 3, "unit": "A"}, {"event": 3, "unit": "B"}]
    summary = json.loads((Path(sub["run_dir"]) / "summary.json").read_text())
    assert summary["events_complete"] == [1, 2, 4, 5, 6]
    err = hpcflow("logs", sub["run_id"], "hms", "2", "--stderr", check=True).stdout
    assert "simulated HMS failure" in err
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    assert hist["events"][-1]["new_state"] == "FAILED"
    assert any(e["new_state"] == "UPSTREAM_FAILED" and e["step"] == "ras" for e in hist["events"])


CHAIN = """\
name: chain
params: {n: 25}
steps:
  - name: a
    foreach: {e: {range: [1, "{{ params.n }}"]}}
    run: echo $(( {{ item.e }} * 2 )) > out
  - name: b
    after: {a: each}
    foreach: {e: {range: [1, "{{ params.n }}"]}}
    run: echo $(( $(cat {{ upstream.a.task_dir }}/out) + 1 )) > out
  - name: c
    after: {b: each}
    foreach: {e: {range: [1, "{{ params.n }}"]}}
    run: echo {{ item.e }} $(cat {{ upstream.b.task_dir }}/out) > out
"""


def test_each_chain_25_elements_chunked_by_11(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "small.yaml", tmp_path / "scratch", limits={"max_array_size": 11})
    wf = tmp_path / "chain.yaml"
    wf.write_text(CHAIN)
    sub = submit(hpcflow, site, wf)
    assert len(sub["jobs"]) == 9  # 3 steps x 3 chunks: one sbatch each
    assert [j["array"] for j in sub["jobs"] if j["step"] == "c"] == ["0-10", "0-10", "0-2"]
    w = hpcflow("watch", sub["run_id"], "--timeout", "400", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    for e in range(1, 26):
        idx = e - 1
        out = Path(sub["run_dir"], "steps/c/0", str(idx), "out").read_text().split()
        assert out == [str(e), str(2 * e + 1)], (e, out)


def test_injection_arrives_literally(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    pwned = Path("/tmp/PWNED")
    if pwned.exists():
        pwned.unlink()
    evil = "x'; touch /tmp/PWNED #"
    wf = tmp_path / "inj.yaml"
    wf.write_text("""\
name: inj
params: {p: plain}
steps:
  - name: a
    foreach: {v: {values: ["$(touch /tmp/PWNED)", "a b", "it's"]}}
    env: {P: "{{ params.p }}"}
    run: |
      printf '%s' {{ params.p }} > param.txt
      printf '%s' "$P" > env.txt
      printf '%s' {{ item.v }} > item.txt
""")
    sub = submit(hpcflow, site_file, wf, f"p={evil}")
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    items = ["$(touch /tmp/PWNED)", "a b", "it's"]
    for i, item in enumerate(items):
        d = Path(sub["run_dir"], "steps/a/0", str(i))
        assert (d / "param.txt").read_text() == evil
        assert (d / "env.txt").read_text() == evil
        assert (d / "item.txt").read_text() == item
    assert not pwned.exists()


def test_refused_midway_cancels_and_records(slurm, hpcflow, tmp_path: Path) -> None:

    site = lab_site(
        tmp_path / "ghost.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        partitions={"ghost": {"gpus": 0, "max_time": "1d"}},  # not on the cluster
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: ref\nsteps:\n  - {name: a, run: sleep 30}\n"
        "  - {name: b, run: 'true', after: [a], resources: {partition: ghost}}\n"
    )
    p = hpcflow("--site", str(site), "submit", str(wf))
    assert p.returncode == 3, p.stdout + p.stderr
    assert "Invalid partition name specified" in p.stderr
    assert "Traceback" not in p.stderr
    runs = json.loads(hpcflow("runs", "--json", check=True).stdout)["runs"]
    assert len(runs) == 1 and runs[0]["state"] == "CANCELLED"
    doc = json.loads(
        hpcflow("status", runs[0]["run_id"], "--json", "--no-refresh", check=True).stdout
    )
    (a_job,) = doc["steps"]["a"]["slurm_jobs"]
    assert doc["steps"]["b"]["slurm_jobs"] == []
    state = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=State", "-j", a_job], capture_output=True, text=True
    ).stdout.strip()
    assert state.startswith("CANCELLED"), state


def test_cancel(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: slow\nsteps:\n  - name: a\n    foreach: {i: {range: [1, 4]}}\n"
        "    run: sleep 300\n  - {name: b, run: 'true', after: [a]}\n"
    )
    sub = submit(hpcflow, site_file, wf)
    w = hpcflow("watch", sub["run_id"][:-2], "--timeout", "2", "--interval", "1")  # prefix
    assert w.returncode == 124 and "timed out after 2s" in w.stdout, w.stdout + w.stderr
    out = hpcflow("cancel", sub["run_id"], check=True).stdout
    assert "cancelled 2 Slurm job(s)" in out
    doc = status(hpcflow, sub["run_id"])
    assert doc["state"] == "CANCELLED"
    assert counts(doc) == {"a": {"CANCELLED": 4}, "b": {"CANCELLED": 1}}
    ids = [j["slurm_job_id"] for j in sub["jobs"]]
    q = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True)
    assert q.stdout.strip() == ""


def test_status_without_run_uses_one_sacct(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    """Two active runs refresh with one sacct call (counted with a PATH shim). The elements
    run first: sacct is not asked about elements squeue shows pending."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: two\nsteps:\n  - name: a\n    foreach: {i: {range: [1, 3]}}\n    run: sleep 20\n"
    )
    s1, s2 = submit(hpcflow, site_file, wf), submit(hpcflow, site_file, wf)
    r1, r2 = s1["run_id"], s2["run_id"]
    ids = [s["jobs"][0]["slurm_job_id"] for s in (s1, s2)]
    wait_until(
        lambda: (
            subprocess.run(
                ["squeue", "-h", "-t", "R", "-r", "-j", ",".join(ids)],
                capture_output=True,
                text=True,
            ).stdout.count("\n")
            == 6
        ),
        60,
        what="all six elements running",
    )
    log = tmp_path / "calls.log"
    env_path = path_shim(tmp_path, "sacct", f'echo "sacct $*" >> {log}')
    p = subprocess.run(
        [sys.executable, "-m", "hpcflow", "status", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH=env_path, HPCFLOW_DB=str(tmp_path / "db" / "tracker.db")),
    )
    assert p.returncode == 0, p.stderr
    assert {d["run_id"] for d in json.loads(p.stdout)["runs"]} == {r1, r2}
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and all(i in calls[0] for i in ids), calls
    hpcflow("cancel", r1)
    hpcflow("cancel", r2)


RETRY = """\
name: retry
steps:
  - name: flaky
    foreach: {i: {values: [1, 2]}}
    retry: {attempts: 3, backoff: 1s, factor: 1, exit_codes: [75]}
    run: |
      n=$(cat count 2>/dev/null || echo 0); echo $((n + 1)) > count
      # element 1 fails twice with a retryable code, then succeeds;
      # element 2 fails with a code that is not in exit_codes: no retry
      if [ {{ item.i }} = 1 ] && [ $n -lt 2 ]; then exit 75; fi
      if [ {{ item.i }} = 2 ]; then exit 3; fi
"""


def test_in_job_retry_with_backoff(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "retry.yaml"
    wf.write_text(RETRY)
    sub = submit(hpcflow, site_file, wf)
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 1, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    tasks = {t["item"]["i"]: t for t in doc["steps"]["flaky"]["tasks"]}
    assert (tasks[1]["state"], tasks[2]["state"]) == ("COMPLETED", "FAILED")
    assert tasks[2]["exit_code"] == 3
    base = Path(sub["run_dir"], "steps/flaky/0")
    assert (base / "0/count").read_text().strip() == "3"
    assert (base / "1/count").read_text().strip() == "1"
    r0 = json.loads((base / "0/.hpcflow/result.json").read_text())
    assert (r0["exit_code"], r0["attempts"]) == (0, 3)
    err = hpcflow("logs", sub["run_id"], "flaky", "0", "--stderr", check=True).stdout
    assert err.count("exit code 75; retrying in 1s") == 2
    assert hpcflow("logs", sub["run_id"], "flaky", "7").returncode == 1
    runs = json.loads(
        hpcflow("runs", "--workflow", "retry", "--state", "failed", "--json", check=True).stdout
    )["runs"]
    assert [r["run_id"] for r in runs] == [sub["run_id"]]
    assert json.loads(hpcflow("runs", "--workflow", "nope", "--json").stdout)["runs"] == []


def test_sites_check_against_live_cluster(slurm, hpcflow, tmp_path: Path) -> None:

    assert hpcflow("sites", "check", "lab").returncode == 0
    site = lab_site(
        tmp_path / "bad.yaml",
        tmp_path / "s",
        limits={"max_array_size": 20000},
        partitions={"gpu": {"gpus": 4}, "nosuch": {"gpus": 0}, "debug": {"cpus": 32, "mem": "64G"}},
    )
    p = hpcflow("sites", "check", str(site))
    assert p.returncode == 2
    assert "partition 'debug': config says 32 CPUs per node, cluster has 16" in p.stderr
    assert "partition 'debug': config says 64G per node, cluster has 16000M" in p.stderr
    assert p.stdout.startswith("python: python3 3.")
    assert "partition 'nosuch' does not exist on the cluster" in p.stderr
    assert "partition 'gpu': config says 4 GPUs per node, cluster has 2" in p.stderr
    assert "max_array_size 20000 is over the cluster's MaxArraySize 10001" in p.stderr


def test_shard_dirs_before_jobs_element_dirs_by_jobs_and_clean(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(  # a waits for the gate: none of its elements can have started yet below
        "name: dirs\nsteps:\n  - {name: gate, run: sleep 5}\n  - name: a\n    after: [gate]\n"
        "    foreach: {i: {range: [1, 1500]}}\n"
        "    throttle: 1\n    run: 'true'\n  - {name: b, after: [a], run: 'true'}\n"
    )
    sub = submit(hpcflow, site_file, wf)
    run_dir = Path(sub["run_dir"])
    # submit makes the shard directories (1,000 elements each), not the elements' own: at
    # most one metadata operation per 1,000 elements on the login node
    assert sorted(p.name for p in (run_dir / "steps/a").iterdir()) == ["0", "1"]
    assert list((run_dir / "steps/a/1").iterdir()) == []  # no element has started yet
    # each element's job makes its directory, mode 0750
    wait_until(lambda: (run_dir / "steps/a/0/1/.hpcflow/result.json").exists(), 60,
               what="element 1 to run")  # fmt: skip
    for d in (run_dir, run_dir / "steps/a/1", run_dir / "logs/a/1", run_dir / "steps/a/0/1",
              run_dir / "steps/a/0/1/.hpcflow"):  # fmt: skip
        assert d.stat().st_mode & 0o777 == 0o750, d
    refused = hpcflow("clean", sub["run_id"])
    assert refused.returncode == 1 and "cancel it first" in refused.stderr
    hpcflow("cancel", sub["run_id"], check=True)
    out = hpcflow("clean", sub["run_id"], check=True).stdout
    assert out.strip() == f"removed {run_dir}" and not run_dir.exists()
    assert (tmp_path / "scratch").is_dir()  # nothing outside the run directory


def test_clean_refuses_a_directory_outside_scratch(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    import sqlite3

    wf = tmp_path / "wf.yaml"
    wf.write_text("name: esc\nsteps:\n  - {name: a, run: 'true'}\n")
    sub = submit(hpcflow, site_file, wf)
    assert hpcflow("watch", sub["run_id"], "--timeout", "60").returncode == 0
    victim = tmp_path / "precious"
    victim.mkdir()
    with sqlite3.connect(tmp_path / "db" / "tracker.db") as c:  # a tampered record
        c.execute("update run set run_dir=?", (f"{sub['run_dir']}/../../../../precious",))
    p = hpcflow("clean", sub["run_id"])
    assert p.returncode == 1 and "not removing it" in p.stderr
    assert victim.is_dir()
