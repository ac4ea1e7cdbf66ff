"""What a refresh asks Slurm about (tracker/refresh.py gather + window_start), on a real
SQLite tracker without Slurm: finished elements are never gathered again."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from hpcflow.store.db import Job, Run, StepRow, Task, open_db, session, utcnow
from hpcflow.store.tracked import gather
from hpcflow.tracker.refresh import window_start


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


@pytest.mark.parametrize(
    ("squeue", "ranges"),
    [
        ("50_[6-9]|PENDING|Priority\n50_4|RUNNING|None\n", [("50", 6, 9, "Priority")]),
        ("50_[1-3,7]|PENDING|Dependency\n",
         [("50", 1, 3, "Dependency"), ("50", 7, 7, "Dependency")]),
        ("50_[0-4%2]|PENDING|JobArrayTaskLimit\n50_5|PENDING|Resources\n60_[0-1]|PENDING|Priority\n",
         [("50", 0, 4, "JobArrayTaskLimit"), ("50", 5, 5, "Resources"), ("60", 0, 1, "Priority")]),
        ("50_[0-3]|PENDING|DependencyNeverSatisfied\n", []),  # not pending: UPSTREAM_FAILED
        ("70|PENDING|Priority\n", []),  # not an array
    ],
)  # fmt: skip
def test_pending_ranges_from_squeue(squeue: str, ranges: list) -> None:
    from hpcflow.slurm.commands import parse_squeue
    from hpcflow.tracker.asking import pending_ranges

    assert pending_ranges(parse_squeue(squeue)) == ranges


def test_elements_squeue_shows_pending_as_tracked_are_not_read(tmp_path: Path) -> None:
    """Skipped: PENDING, never started, the reason squeue gives. Read: another reason, a
    started element, and everything outside the ranges."""
    engine = _run(tmp_path, ["PENDING"] * 8 + ["RUNNING", "UNKNOWN"], [None] * 10)
    import sqlite3

    with sqlite3.connect(tmp_path / "t.db") as c:
        c.execute("UPDATE task SET reason = 'Priority' WHERE \"index\" BETWEEN 0 AND 7")
        c.execute("UPDATE task SET reason = 'Resources' WHERE \"index\" = 5")
        c.execute("UPDATE task SET node = 'vm' WHERE \"index\" = 6")  # requeued after a start
    got = gather(engine, ["r"], [("77", 2, 9, "Priority")])  # type: ignore[arg-type]
    assert sorted(t.index for t in got) == [0, 1, 5, 6, 8, 9]
    with sqlite3.connect(tmp_path / "t.db") as c:  # missed at the last refresh: read
        c.execute("UPDATE task SET absent_at = '2026-12-06T05:00:00' WHERE \"index\" = 3")
    got = gather(engine, ["r"], [("77", 2, 9, "Priority")])  # type: ignore[arg-type]
    assert sorted(t.index for t in got) == [0, 1, 3, 5, 6, 8, 9]
    assert len(gather(engine, ["r"], [("99", 0, 9, "Priority")])) == 10  # another job: all  # type: ignore[arg-type]


@pytest.mark.parametrize("skipping", [True, False])
def test_a_refresh_decides_the_same_without_reading_the_queued_elements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skipping: bool
) -> None:
    """The same run, the same Slurm answers: with the queued elements left unread, and with
    every element read, the tracker ends up the same (checked against one expected table)."""
    import sqlite3

    from hpcflow.runners.base import LocalRunner
    from hpcflow.store import tracked
    from hpcflow.tracker.refresh import refresh

    from .test_refresh_apply import Slurm, _row

    if not skipping:
        monkeypatch.setattr(tracked, "MAX_SKIP_RANGES", 0)
    engine = _run(tmp_path, ["RUNNING"] * 4 + ["PENDING"] * 6, [None] * 10)
    with sqlite3.connect(tmp_path / "t.db") as c:
        c.execute("UPDATE task SET reason = 'Priority' WHERE state = 'PENDING'")
        c.execute("UPDATE task SET node = 'vm', start = '2026-12-06T05:00:00' "
                  "WHERE state = 'RUNNING'")  # fmt: skip
        c.execute("UPDATE job SET dependency = NULL")
    squeue = "77_[6-9]|PENDING|Priority\n" + "".join(f"77_{i}|RUNNING|None\n" for i in (0, 1, 2, 4))
    done = "2026-12-06T05:00:09"
    sacct = "".join(_row(f"77_{i}", "RUNNING") for i in (0, 1, 2, 4))
    sacct += _row("77_3", "COMPLETED", done) + _row("77_5", "FAILED", done)
    slurm = type("Lab", (Slurm, LocalRunner), {})(squeue, {"77_0,77_1,77_2,77_3,77_4,77_5": sacct})
    with session(engine) as s:
        run = s.get(Run, "r")
    refresh(engine, slurm, [run], 0, force=True)  # type: ignore[arg-type]
    with sqlite3.connect(tmp_path / "t.db") as c:
        states = dict(c.execute('SELECT "index", state FROM task WHERE job_id = 1'))
    want = ["RUNNING"] * 3 + ["COMPLETED", "RUNNING", "FAILED"] + ["PENDING"] * 4
    assert states == dict(enumerate(want))
    assert [c for c in slurm.calls if c[0] == "sacct"][0] == (
        "sacct",
        "77_0,77_1,77_2,77_3,77_4,77_5",
    )
