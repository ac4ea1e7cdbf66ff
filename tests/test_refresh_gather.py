"""What a refresh asks Slurm about (tracker/refresh.py gather + window_start), on a real
SQLite tracker without Slurm: finished elements are never gathered again."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select

from hpcflow.tracker.db import Job, Run, StepRow, Task, open_db, session, utcnow
from hpcflow.tracker.refresh import gather, window_start


def _run(tmp_path: Path, states: list[str], ends: list[str | None]) -> object:
    engine = open_db(tmp_path / "t.db")
    with session(engine) as s:
        s.add(Run(id="r", workflow="w", site="lab", state="RUNNING", run_dir="/x",
                  workflow_path="/w.yaml"))  # fmt: skip
        s.flush()
        s.add(StepRow(run_id="r", name="a", position=0, total=len(states), may_skip=True))
        s.add(Job(id=1, run_id="r", step="a", job_index=0, chunk=0, name="hpcflow.r.a.0",
                  slurm_job_id="77", array="0-9", dependency="afterok:5"))  # fmt: skip
        s.add(Job(id=2, run_id="r", step="a", job_index=1, chunk=1, name="hpcflow.r.a.1"))
        s.flush()
        for i, (st, end) in enumerate(zip(states, ends)):
            s.add(Task(run_id="r", step="a", index=i, job_id=1, task_id=i, state=st, end=end))
        s.add(Task(run_id="r", step="a", index=99, job_id=2, task_id=0))  # not submitted
        s.commit()
    return engine


def test_only_unfinished_and_recently_failed_nodes_are_gathered(tmp_path: Path) -> None:
    local = datetime.now()
    recent = (local - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S")
    old = (local - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    states = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "NODE_FAIL", "NODE_FAIL", "UNKNOWN"]
    ends = [None, None, old, recent, recent, old, None]
    engine = _run(tmp_path, states, ends)
    got = gather(engine, ["r"])  # type: ignore[arg-type]
    # COMPLETED/FAILED are never asked about again; NODE_FAIL only while Slurm may requeue it
    assert sorted((t.index, t.state.value) for t in got) == [
        (0, "PENDING"), (1, "RUNNING"), (4, "NODE_FAIL"), (6, "UNKNOWN")
    ]  # fmt: skip
    t = got[0]
    assert (t.slurm_job_id, t.task_id, t.has_dependency, t.may_skip) == ("77", 0, True, True)


def test_window_starts_before_the_last_good_refresh() -> None:
    now = utcnow()
    fresh = Run(id="a", workflow="w", site="s", state="RUNNING", run_dir="/", workflow_path="/",
                submitted_at=now - timedelta(days=3),
                refreshed_at=now - timedelta(minutes=1))  # fmt: skip
    local = window_start([fresh])
    assert timedelta(minutes=10) < datetime.now() - local < timedelta(minutes=12)
    # never refreshed, or the last refresh was degraded (sacct failed): from submission - 1 day
    first = Run(id="b", workflow="w", site="s", state="RUNNING", run_dir="/", workflow_path="/",
                submitted_at=now - timedelta(hours=1))  # fmt: skip
    assert timedelta(hours=24) < datetime.now() - window_start([fresh, first]) < timedelta(hours=26)
    fresh.degraded = "sacct failed"
    assert datetime.now() - window_start([fresh]) > timedelta(days=3)


def test_a_task_missing_once_waits_and_missing_twice_asks_its_job(tmp_path: Path) -> None:
    """Three refreshes on a real tracker: 77_2 left squeue but slurmdbd has no row for it.
    The first refresh asks nothing more and remembers it (not LOST, although its job was
    submitted an hour ago); the second asks its job whole and finds it; the memory is
    cleared, and the third asks nothing about it."""
    import sqlite3

    from hpcflow.runners.base import LocalRunner
    from hpcflow.states import TaskState
    from hpcflow.tracker.refresh import refresh

    from .test_refresh_apply import Slurm, _row

    engine = _run(tmp_path, ["RUNNING"] * 3, [None] * 3)
    hour_ago = (utcnow() - timedelta(hours=1)).isoformat(sep=" ")
    with sqlite3.connect(tmp_path / "t.db") as c:
        c.execute("UPDATE job SET submitted_at = ?, dependency = NULL", (hour_ago,))
    done = "2026-12-06T05:00:09"
    two = _row("77_0", "COMPLETED", done) + _row("77_1", "COMPLETED", done)
    answers = {"77_0,77_1,77_2": two, "77_2": "", "77": _row("77_2", "COMPLETED", done)}
    slurm = type("Lab", (Slurm, LocalRunner), {})("", answers)  # files: the local ones

    def once() -> tuple[list[tuple[str, str]], dict[int, tuple[str, object]]]:
        slurm.calls.clear()
        with session(engine) as s:
            run = s.get(Run, "r")
        refresh(engine, slurm, [run], 0, lost_after=300, force=True)  # type: ignore[arg-type]
        with session(engine) as s:
            rows = {t.index: (t.state, t.absent_at) for t in s.exec(select(Task))}
        return [c for c in slurm.calls if c[0] == "sacct"], rows

    calls, rows = once()
    assert calls == [("sacct", "77_0,77_1,77_2")]
    assert rows[2][0] == TaskState.RUNNING.value and rows[2][1] is not None  # held, remembered
    assert rows[0][0] == "COMPLETED"
    calls, rows = once()
    # missing twice: its job, whole; then (every element ended) the chunk's usage, once
    assert calls == [("sacct", "77_2"), ("sacct", "77"), ("sacct", "77")]
    assert rows[2] == ("COMPLETED", None)
    calls, _ = once()
    assert calls == []  # nothing left to ask
