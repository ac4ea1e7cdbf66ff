"""The polling budget on the lab (docs/tracker.md): a refresh asks sacct only about jobs with
unfinished elements, allocation rows only, and only rows alive since the last refresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import counts, recording_sacct, status, submit, wait_until

pytestmark = pytest.mark.slurm


WF = """\
name: budget
steps:
  - name: fast
    foreach: {i: {range: [1, 30]}}
    run: 'true'
  - name: slow
    run: sleep 25
"""


def test_refresh_asks_only_about_unfinished_work(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    sub = submit(hpcflow, site_file, wf)
    jobs = {j["step"]: j["slurm_job_id"] for j in sub["jobs"]}
    wait_until(
        lambda: counts(status(hpcflow, sub["run_id"])) == {
            "fast": {"COMPLETED": 30}, "slow": {"RUNNING": 1}
        },
        120,
        what="fast done while slow runs",
    )  # fmt: skip
    # a recording wrapper around the real sacct: arguments and every row it printed
    env = recording_sacct(tmp_path)

    def refreshed_through_wrapper() -> bool:  # poll_interval is 1s: a status soon refreshes
        hpcflow("status", sub["run_id"], check=True, extra_env=env)
        return (tmp_path / "calls").exists()

    wait_until(refreshed_through_wrapper, 30, what="a refresh through the wrapper")

    def verbose_refresh():
        r = hpcflow("-v", "status", sub["run_id"], "--json", check=True, extra_env=env)
        return r if "refresh: " in r.stderr else None

    p = wait_until(verbose_refresh, 30, what="a -v status that refreshes")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls and all(c.split()[0] == "-X" for c in calls), calls
    for c in calls:
        asked = c.split("-j ", 1)[1].split(",")
        assert asked == [jobs["slow"]], c  # the finished array is never asked about again
    rows = [r for r in (tmp_path / "rows").read_text().splitlines() if r]
    assert len(rows) <= 2 * len(calls)  # per refresh: 1 unfinished element + 1 job
    assert "refresh: 1 unfinished elements in 1 jobs" in p.stderr, p.stderr
    w = hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {
        "fast": {"COMPLETED": 30},
        "slow": {"COMPLETED": 1},
    }


def test_one_sacct_per_user_per_poll_interval(slurm, hpcflow, tmp_path: Path, lab_site) -> None:
    """Two runs, statuses of each, in turn: one sacct covers both within the interval."""
    site = lab_site(limits={"max_array_size": 1001}, tracker={"poll_interval": "60s"})
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: two\nsteps:\n  - name: s\n    run: sleep 20\n")
    a, b = submit(hpcflow, site, wf), submit(hpcflow, site, wf)
    env = recording_sacct(tmp_path)
    for run in (a, b, a, b, a):
        hpcflow("status", run["run_id"], check=True, extra_env=env)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1, calls
    # ... and that one sacct asked about both runs' jobs
    ids = {a["jobs"][0]["slurm_job_id"], b["jobs"][0]["slurm_job_id"]}
    assert all(i in calls[0] for i in ids), calls
    hpcflow("cancel", a["run_id"], check=True, extra_env=env)
    hpcflow("cancel", b["run_id"], check=True, extra_env=env)


TAIL = """\
name: tail
steps:
  - name: work
    foreach: {i: {range: [1, 20]}}
    run: 'if [ {{ item.i }} -gt 17 ]; then sleep 30; fi'
"""


def test_the_tail_of_an_array_is_asked_for_by_task(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    """Once every element left of an array runs, sacct is asked for those tasks alone
    (A_17,A_18,A_19): the 17 that ended within the time window do not come back."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(TAIL)
    sub = submit(hpcflow, site_file, wf)
    job = sub["jobs"][0]["slurm_job_id"]
    wait_until(
        lambda: counts(status(hpcflow, sub["run_id"])) == {
            "work": {"COMPLETED": 17, "RUNNING": 3}
        },
        60,
        what="17 done, 3 running",
    )  # fmt: skip
    env = recording_sacct(tmp_path)
    wait_until(
        lambda: (
            hpcflow("status", sub["run_id"], check=True, extra_env=env)
            and (tmp_path / "calls").exists()
        ),
        30,
        what="a refresh through the wrapper",
    )
    call = (tmp_path / "calls").read_text().splitlines()[0]
    assert call.split("-j ", 1)[1] == f"{job}_17,{job}_18,{job}_19", call
    rows = [r for r in (tmp_path / "rows").read_text().splitlines() if r]
    assert len(rows) == 3, rows  # the 17 finished tasks are in the window, but not asked
    w = hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {"work": {"COMPLETED": 20}}


BUSY = """\
name: busy
steps:
  - name: work
    foreach: {i: {range: [1, 40]}}
    run: sleep 6
"""


def test_pending_elements_are_asked_of_squeue_not_sacct(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    """40 elements on 16 slots: squeue says which are still pending; sacct is asked only
    about the others, task by task, so its rows stay within the elements that left the queue."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(BUSY)
    sub = submit(hpcflow, site_file, wf)
    job = sub["jobs"][0]["slurm_job_id"]
    wait_until(
        lambda: counts(status(hpcflow, sub["run_id"]))["work"].get("RUNNING", 0) > 0,
        60,
        what="some elements running",
    )
    env = recording_sacct(tmp_path)

    def verbose_refresh():
        r = hpcflow("-v", "status", sub["run_id"], "--json", check=True, extra_env=env)
        return r if "squeue first for 1 jobs" in r.stderr else None

    p = wait_until(verbose_refresh, 30, what="a -v status that asks squeue first")
    call = [c for c in (tmp_path / "calls").read_text().splitlines() if c.startswith("-X")][-1]
    asked = call.split("-j ", 1)[1].split(",")
    assert asked and all(a.startswith(f"{job}_") for a in asked), call  # by task, not whole
    assert len(asked) < 40, call  # the pending ones are left to squeue
    lines = p.stderr.splitlines()
    assert any("sacct -j with" in x for x in lines), p.stderr
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {"work": {"COMPLETED": 40}}
