"""Slurm degraded, hpcflow killed, processes racing: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import REPO, counts, lab_site, path_shim, status, submit, wait_until

pytestmark = pytest.mark.slurm
LAB = str(REPO / "tests/cluster/slurm-lab")


def sacct_ok() -> bool:
    return subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True).returncode == 0


def jobs_named(name: str) -> list[str]:
    """Every Slurm job with this name: squeue (slurmctld) and sacct (slurmdbd, may lag)."""
    q = subprocess.run(
        ["squeue", "-h", "-o", "%F", "--name", name], capture_output=True, text=True
    ).stdout.split()
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,JobName", "--name", name, "-S", "now-1hour"],
        capture_output=True,
        text=True,
    ).stdout
    return sorted(set(q) | {ln.split("|")[0].split("_")[0] for ln in out.splitlines() if ln})


def db_jobs(db: Path, run_id: str) -> list[tuple[str, str | None, str]]:
    with sqlite3.connect(db) as c:
        return list(
            c.execute("select name, slurm_job_id, status from job where run_id=?", (run_id,))
        )


@pytest.fixture
def lab_restored():
    yield
    subprocess.run(["pkill", "-CONT", "-x", "slurmctld"])
    subprocess.run(["bash", LAB, "up"], capture_output=True)


@pytest.mark.lab_alone
def test_slurmdbd_down_then_back(
    slurm, hpcflow, tmp_path: Path, site_file: Path, lab_restored
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: dbd\nsteps:\n  - name: a\n    foreach: {i: {range: [1, 3]}}\n    run: sleep 6\n"
    )
    sub = submit(hpcflow, site_file, wf)
    subprocess.run(["pkill", "-x", "slurmdbd"], check=True)
    wait_until(lambda: not sacct_ok(), 30)
    wait_until(lambda: counts(status(hpcflow, sub["run_id"]))["a"].get("RUNNING") == 3, 60)
    doc = status(hpcflow, sub["run_id"])
    assert doc["degraded"] and "squeue only" in doc["degraded"]
    text = hpcflow("status", sub["run_id"], check=True).stdout
    assert "degraded:" in text
    ids = [j["slurm_job_id"] for j in sub["jobs"]]
    wait_until(
        lambda: (
            not subprocess.run(
                ["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True
            ).stdout.strip()
        ),
        60,
    )
    gone = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = wait_until(  # a refresh after they left the queue (poll_interval 1s)
        lambda: (d := status(hpcflow, sub["run_id"]))["refreshed_at"] > gone and d,
        30,
        what="a refresh after the jobs left squeue",
    )  # finished, but nothing can confirm how
    assert counts(doc)["a"] == {"RUNNING": 3} and doc["state"] == "RUNNING"
    subprocess.run(["bash", LAB, "up"], check=True, capture_output=True)
    wait_until(sacct_ok, 60)
    wait_until(lambda: status(hpcflow, sub["run_id"])["state"] == "COMPLETED", 120, 2)
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc)["a"] == {"COMPLETED": 3} and doc["degraded"] is None
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)["events"]
    assert [e["new_state"] for e in hist if e["new_state"] in ("DEGRADED", "RECOVERED")] == [
        "DEGRADED",
        "RECOVERED",
    ]


@pytest.mark.lab_alone
def test_slurmctld_paused_during_submit(slurm, tmp_path: Path, lab_restored) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        tracker={"submit_timeout": "3s"},
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: pause\nsteps:\n  - {name: a, run: 'true'}\n"
        "  - {name: b, after: [a], foreach: {i: {range: [1, 3]}}, run: 'true'}\n"
        "  - {name: c, after: {b: any}, run: 'true'}\n"
    )
    db = tmp_path / "db" / "t.db"
    env = dict(os.environ, HPCFLOW_DB=str(db))
    log = tmp_path / "submit.log"
    subprocess.run(["pkill", "-STOP", "-x", "slurmctld"], check=True)
    try:
        with log.open("w") as err:
            p = subprocess.Popen(
                [sys.executable, "-m", "hpcflow", "-v", "--site", str(site), "submit", str(wf)]
                + ["--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        # hold the controller until an sbatch has timed out and a lookup by name has failed
        wait_until(
            lambda: re.search(r"local: sbatch .*-> timeout(.|\n)*local: squeue .*-> ",
                              log.read_text()),
            120,
            what="an sbatch timing out and a lookup by name failing after it",
        )  # fmt: skip
    finally:
        subprocess.run(["pkill", "-CONT", "-x", "slurmctld"], check=True)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, log.read_text()
    sub = json.loads(out)
    assert len(sub["jobs"]) == 3
    for name, sid, st in db_jobs(db, sub["run_id"]):
        assert st == "SUBMITTED"
        wait_until(lambda n=name: len(jobs_named(n)) >= 1, 60)
        assert jobs_named(name) == [sid], name  # exactly one Slurm job, the recorded one


def test_kill_9_during_submit_is_adopted(slurm, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: k9\nsteps:\n"
        + "".join(
            f"  - {{name: s{i}, run: 'true'{f', after: [s{i - 1}]' if i else ''}}}\n"
            for i in range(5)
        )
    )
    marks = tmp_path / "sbatch-calls"
    marks.mkdir()
    slow = path_shim(tmp_path, "sbatch", f'touch "{marks}/$$"; sleep 1')
    db = tmp_path / "db" / "t.db"
    env = dict(os.environ, HPCFLOW_DB=str(db), PATH=slow)
    p = subprocess.Popen(
        [sys.executable, "-m", "hpcflow", "--site", str(site), "submit", str(wf)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: db.exists() and any(s == "SUBMITTED" for _, _, s in _all_jobs(db)), 60, 0.05)
    # inside the next sbatch (the shim sleeps): it will submit without us
    wait_until(
        lambda: len(list(marks.iterdir())) > sum(s == "SUBMITTED" for _, _, s in _all_jobs(db)),
        60,
        0.02,
    )
    p.send_signal(signal.SIGKILL)
    p.wait()
    (run_id,) = {r for (r,) in sqlite3.connect(db).execute("select id from run")}
    before = db_jobs(db, run_id)
    assert any(st == "PLANNED" for _, _, st in before), before
    wait_until(  # the orphaned sbatch has finished (its command line names the run)
        lambda: subprocess.run(["pgrep", "-f", run_id], capture_output=True).returncode == 1,
        60,
        0.1,
    )
    env.pop("PATH")
    env["PATH"] = os.environ["PATH"]
    r = subprocess.run(
        [sys.executable, "-m", "hpcflow", "status", run_id], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    after = db_jobs(db, run_id)
    assert all(st == "SUBMITTED" for _, _, st in after), after
    for name, sid, _ in after:
        wait_until(lambda n=name: jobs_named(n), 60)  # sacct may lag a just-finished job
        assert jobs_named(name) == [sid], name
    hist = subprocess.run(
        [sys.executable, "-m", "hpcflow", "history", run_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert "adopted by job name" in hist or "(resumed)" in hist
    w = subprocess.run(
        [sys.executable, "-m", "hpcflow", "watch", run_id, "--timeout", "120", "--interval", "1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert w.returncode == 0, w.stdout + w.stderr


def _all_jobs(db: Path) -> list[tuple[str, str | None, str]]:
    try:
        with sqlite3.connect(db) as c:
            return list(c.execute("select name, slurm_job_id, status from job"))
    except sqlite3.Error:
        return []


def test_kill_9_during_refresh_and_concurrent_status(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        tracker={"poll_interval": "30s"},
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: conc\nsteps:\n  - name: a\n    foreach: {i: {range: [1, 20]}}\n    run: 'true'\n"
    )
    sub = submit(hpcflow, site, wf)
    db = tmp_path / "db" / "tracker.db"
    calls = tmp_path / "sacct-calls"
    counted = path_shim(tmp_path, "sacct", f'echo "x $*" >> {calls}\nsleep 2')
    env = dict(os.environ, HPCFLOW_DB=str(db), PATH=counted)
    cmd = [sys.executable, "-m", "hpcflow", "status", sub["run_id"], "--json"]
    ids = ",".join(j["slurm_job_id"] for j in sub["jobs"])

    def all_recorded() -> bool:  # slurmdbd may lag behind squeue: wait for sacct itself
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "--format=State", "-j", ids],
            capture_output=True,
            text=True,
        ).stdout.split()
        return out.count("COMPLETED") == 20

    # the elements have left the queue, so the refresh asks sacct (not squeue) about them
    wait_until(all_recorded, 90)
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(calls.exists, 30, 0.05)
    victim.send_signal(signal.SIGKILL)  # in the middle of a refresh
    victim.wait()
    assert sqlite3.connect(db).execute("pragma integrity_check").fetchone() == ("ok",)
    calls.unlink()

    def run_all(commands: list[list[str]]) -> list[tuple[str, str]]:
        procs = [
            subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in commands
        ]
        results = [p.communicate(timeout=120) for p in procs]
        for c, p, (_out, err) in zip(commands, procs, results):
            # two retries at once: one submits, the other is told so (never a locked DB)
            busy = "retry" in c and "being submitted by another hpcflow process" in err
            assert p.returncode == 0 or busy, err
            assert "database is locked" not in err
        return results

    # five concurrent `status`: the first to take the refresh lock asks sacct; the others wait
    # on the lock, then find the run refreshed within the poll interval (30s): one call
    results = run_all([cmd] * 5)
    lines = calls.read_text().splitlines()
    polls = [c for c in lines if " -X " in c]
    usage = [c for c in lines if "AllocCPUS" in c]  # what the elements used: once per chunk
    assert len(polls) == 1 and len(usage) <= 1 and len(lines) == len(polls) + len(usage), lines
    # status and retry racing (retry forces its own refresh and writes): no "database is locked"
    retry = [sys.executable, "-m", "hpcflow", "retry", sub["run_id"]]
    run_all([cmd, retry, cmd, retry, cmd])
    doc = json.loads(results[0][0])
    assert doc["state"] == "COMPLETED" and doc["steps"]["a"]["states"] == {"COMPLETED": 20}


def test_job_known_to_neither_sacct_nor_squeue_becomes_lost(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        tracker={"lost_after": "20s"},
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: lost\nsteps:\n  - {name: a, run: 'true'}\n  - {name: b, run: 'true'}\n")
    sub = submit(hpcflow, site, wf)
    a_id, b_id = (j["slurm_job_id"] for j in sub["jobs"])
    # right after submission, before the grace period, nothing is LOST
    assert counts(status(hpcflow, sub["run_id"]))["a"] in (
        {"PENDING": 1},
        {"RUNNING": 1},
        {"COMPLETED": 1},
    )
    # make job `a` vanish: finished, purged by slurmctld (MinJobAge), then its accounting
    # row removed (after the purge, so no late completion message re-creates it)
    wait_until(
        lambda: subprocess.run(["squeue", "-h", "-j", a_id], capture_output=True).returncode != 0,
        90,
        1,
    )
    with sqlite3.connect(tmp_path / "db" / "tracker.db") as c:  # as if never refreshed
        c.execute("update task set state='PENDING' where step='a'")
        c.execute("update run set state='PENDING', refreshed_at=NULL")
    subprocess.run(
        ["mariadb", "slurm_acct_db", "-e", f"delete from lab_job_table where id_job={int(a_id)}"],
        check=True,
    )
    assert (
        subprocess.run(
            ["sacct", "-X", "-n", "-j", a_id], capture_output=True, text=True
        ).stdout.strip()
        == ""
    )
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"LOST": 1}, "b": {"COMPLETED": 1}}
    assert doc["state"] == "FAILED"
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)["events"]
    assert any(e["new_state"] == "LOST" and "not in sacct or squeue" in e["reason"] for e in hist)


@pytest.mark.lab_alone
def test_qos_limit_refusal_is_reported_not_retried(slurm, tmp_path: Path) -> None:
    """QOS lab-tiny allows 2 submitted jobs per user: the 3rd sbatch is refused with
    QOSMaxSubmitJobPerUserLimit, which is reported at once (no retry storm), and the two jobs
    already submitted are cancelled."""
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: qos\ndefaults: {resources: {qos: lab-tiny}}\nsteps:\n"
        "  - {name: a, run: sleep 30}\n  - {name: b, run: sleep 30}\n"
        "  - {name: c, run: sleep 30}\n"
    )
    calls = tmp_path / "sbatch-calls"
    counted = path_shim(tmp_path, "sbatch", f"echo x >> {calls}")
    db = tmp_path / "db" / "t.db"
    env = dict(os.environ, HPCFLOW_DB=str(db), PATH=counted)
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "hpcflow", "--site", str(site), "submit", str(wf)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 3, p.stderr
    assert "QOSMaxSubmitJobPerUserLimit" in p.stderr and "Traceback" not in p.stderr
    assert calls.read_text().count("x") == 3 and time.monotonic() - t0 < 20
    (run_id,) = {r for (r,) in sqlite3.connect(db).execute("select id from run")}
    jobs = db_jobs(db, run_id)
    assert [st for _, _, st in jobs] == ["SUBMITTED", "SUBMITTED", "NOT_SUBMITTED"]
    for _, sid, _ in jobs[:2]:
        wait_until(
            lambda s=sid: subprocess.run(
                ["sacct", "-X", "-n", "-P", "--format=State", "-j", s],
                capture_output=True,
                text=True,
            ).stdout.startswith("CANCELLED"),
            30,
        )


def test_suspended_counts_as_running(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: susp\nsteps:\n  - {name: a, run: sleep 15}\n")
    sub = submit(hpcflow, site_file, wf)
    sid = sub["jobs"][0]["slurm_job_id"]
    wait_until(lambda: counts(status(hpcflow, sub["run_id"]))["a"] == {"RUNNING": 1}, 30)
    subprocess.run(["scontrol", "suspend", sid], check=True)
    wait_until(
        lambda: (
            subprocess.run(
                ["squeue", "-h", "-o", "%T", "-j", sid], capture_output=True, text=True
            ).stdout.strip()
            == "SUSPENDED"
        ),
        30,
        what="squeue to show the job SUSPENDED",
    )
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc)["a"] == {"RUNNING": 1} and doc["state"] == "RUNNING"
    subprocess.run(["scontrol", "resume", sid], check=True)
    assert hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1").returncode == 0
