"""What a refresh writes (tracker/refresh.py): element rows, events and events.jsonl, on a real
SQLite tracker and real element files, with sacct's answer canned. Decided and read in slices,
it records the same as in one piece, and reads an element's outputs.json only when its record
says it wrote one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hpcflow.runners.base import LocalRunner, Result
from hpcflow.store.db import Job, Run, StepRow, Task, open_db, session, utcnow
from hpcflow.tracker import refresh as refresh_mod
from hpcflow.tracker.events import event_json, move_lines

N = 7


class Canned(LocalRunner):
    """sacct answers from a text; files are the real ones, and every path read is noted."""

    def __init__(self, sacct: str) -> None:
        self.sacct, self.read = sacct, []  # type: list[str]

    def run(self, argv, **_):  # type: ignore[no-untyped-def, override]
        return Result(argv, 0, self.sacct if argv[0] == "sacct" else "", "")

    def read_files(self, paths: list[str]) -> dict[str, bytes | None]:
        self.read.extend(paths)
        return super().read_files(paths)


def _tracker(tmp_path: Path) -> tuple[object, Path]:
    engine = open_db(tmp_path / "t.db")
    run_dir = tmp_path / "run"
    with session(engine) as s:
        s.add(Run(id="r", workflow="w", site="lab", state="RUNNING", run_dir=str(run_dir),
                  workflow_path="/w.yaml"))  # fmt: skip
        s.flush()
        s.add(StepRow(run_id="r", name="a", position=0, total=N))
        s.add(Job(id=1, run_id="r", step="a", job_index=0, chunk=0, name="hpcflow.r.a.0",
                  slurm_job_id="77", array=f"0-{N - 1}", status="SUBMITTED",
                  submitted_at=utcnow()))  # fmt: skip
        s.flush()
        for i in range(N):
            s.add(Task(run_id="r", step="a", index=i, job_id=1, task_id=i, state="RUNNING",
                       attempts=1, start="2026-12-06T05:00:00", node="vm"))  # fmt: skip
        s.commit()
    return engine, run_dir


def _element(run_dir: Path, i: int, flag: bool | None, outputs: object) -> None:
    d = run_dir / f"steps/a/0/{i}"
    (d / ".hpcflow").mkdir(parents=True)
    rec = {"index": i, "state": "COMPLETED", "exit_code": 0, "attempts": 1, "start": 1,
           "end": 2, "slurm_job_id": f"77_{i}"}  # fmt: skip
    if flag is not None:  # records written before the flag existed say nothing
        rec["outputs"] = flag
    (d / ".hpcflow/result.json").write_text(json.dumps(rec))
    if outputs is not None:
        (d / "outputs.json").write_text(json.dumps(outputs))


SACCT = "".join(
    f"77_{i}|77_{i}|hpcflow.r.a.0|COMPLETED|0:0|2026-12-06T05:00:00|2026-12-06T05:00:09|vm|"
    "None||64M\n"
    for i in range(N)
)


@pytest.mark.parametrize("slice_size", [2, 10_000])
def test_refresh_records_every_element_once_and_reads_outputs_only_when_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slice_size: int
) -> None:
    monkeypatch.setattr(refresh_mod, "SLICE", slice_size)
    engine, run_dir = _tracker(tmp_path)
    # (flag in result.json, outputs.json): wrote one / wrote none / an older record
    elements = [(True, {"peak": 1}), (True, {"peak": 2}), (False, None), (False, None),
                (None, {"peak": 5}), (None, None)]  # fmt: skip
    for i, (flag, outputs) in enumerate(elements):
        _element(run_dir, i, flag, outputs)
    # element 6 never wrote a record: it keeps what Slurm said
    runner = Canned(SACCT)
    with session(engine) as s:
        run = s.get(Run, "r")
    refresh_mod.refresh(engine, runner, [run], 0, force=True)  # type: ignore[arg-type]

    with sqlite3.connect(tmp_path / "t.db") as c:
        rows = c.execute('SELECT "index", state, outputs, result FROM task ORDER BY "index"')
        got = {i: (st, json.loads(o) if o else None, bool(r)) for i, st, o, r in rows}
        events = c.execute("SELECT * FROM event WHERE kind = 'TASK' ORDER BY id").fetchall()
        names = [d[0] for d in c.execute("SELECT * FROM event").description]
    assert got == {
        0: ("COMPLETED", {"peak": 1}, True), 1: ("COMPLETED", {"peak": 2}, True),
        2: ("COMPLETED", None, True), 3: ("COMPLETED", None, True),
        4: ("COMPLETED", {"peak": 5}, True), 5: ("COMPLETED", None, True),
        6: ("COMPLETED", None, False),
    }  # fmt: skip
    read_outputs = sorted(int(p.split("/")[-2]) for p in runner.read if p.endswith("outputs.json"))
    assert read_outputs == [0, 1, 4, 5]  # flagged, or an old record that does not say
    # one event per element, in the database and in events.jsonl, with the same text
    assert sorted(e[names.index("index")] for e in events) == list(range(N))
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    task_lines = [json.loads(x) for x in lines if json.loads(x)["kind"] == "TASK"]
    assert sorted(x["index"] for x in task_lines) == list(range(N))
    assert {(x["old_state"], x["new_state"]) for x in task_lines} == {("RUNNING", "COMPLETED")}


@pytest.mark.parametrize(
    "move",
    [
        ("r-1", "hms", 3, "RUNNING", "FAILED", "77_3", 2, "exit code 2"),
        ("r-1", "hms", 0, "PENDING", "UPSTREAM_FAILED", "78", None, None),
        ('q"uote\\', "st\u00e9p", 12, "RUNNING", "COMPLETED", "9_1", 0, "line\nbreak\t\u2603"),
    ],
)
def test_bulk_event_lines_are_what_json_dumps_writes(move: tuple) -> None:
    from datetime import datetime

    when = datetime(2026, 12, 6, 7, 8, 9, 123456)
    ((run_id, line),) = move_lines([move], when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    cols = ("run_id", "step", "index", "old_state", "new_state", "slurm_job_id", "exit_code",
            "reason")  # fmt: skip
    want = json.dumps(event_json(dict(zip(cols, move)) | {"kind": "TASK", "time": when}))
    assert run_id == move[0] and line == want


class Slurm:
    """A runner that answers squeue and sacct from tables keyed by the -j argument."""

    def __init__(self, squeue: str | None, sacct: dict[str, str]) -> None:
        self.squeue, self.sacct, self.calls = squeue, sacct, []  # type: ignore[var-annotated]
        self.starts: list[str] = []

    def run(self, argv, **_):  # type: ignore[no-untyped-def]
        ids = argv[argv.index("-j") + 1]
        self.calls.append((argv[0], ids))
        self.starts.extend(a for a in argv if a.startswith("--starttime="))
        if argv[0] == "squeue":
            return Result(argv, 1 if self.squeue is None else 0, self.squeue or "", "down")
        return Result(argv, 0, self.sacct.get(ids, ""), "")


def _row(jid: str, state: str, end: str = "Unknown") -> str:
    return f"{jid}|{jid}|hpcflow.r.a.0|{state}|0:0|2026-12-06T05:00:00|{end}|vm|None||64M\n"


def _tracked(absent: frozenset[int] = frozenset()):  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta, timezone

    from hpcflow.states import TaskState
    from hpcflow.tracker.reconcile import Tracked

    sub = datetime.now(timezone.utc) - timedelta(hours=1)
    return [Tracked(i, "r", "a", i, "50", i, TaskState.RUNNING if i < 4 else TaskState.PENDING,
                    submitted_at=sub, absent=i in absent) for i in range(10)]  # fmt: skip


def _ask(slurm: Slurm, absent: frozenset[int] = frozenset()):  # type: ignore[no-untyped-def]
    from datetime import datetime

    from hpcflow.slurm.client import SlurmClient
    from hpcflow.tracker.refresh import ask_slurm

    window, late = datetime(2026, 12, 6, 4, 50), datetime(2026, 12, 6, 4, 58)
    ans = ask_slurm(SlurmClient(slurm), _tracked(absent), window, late)  # type: ignore[arg-type]
    return ans.seen, {(r.job_id, r.task_id): r.state for r in ans.queued}, ans.degraded


SQUEUE = "50_[6-9]|PENDING|Resources\n50_4|RUNNING|None\n" + "".join(
    f"50_{i}|RUNNING|None\n" for i in range(3)
)


def test_pending_tasks_come_from_squeue_and_the_rest_from_sacct_by_task() -> None:
    ended = _row("50_3", "COMPLETED", "2026-12-06T05:00:09")
    ended += _row("50_5", "FAILED", "2026-12-06T05:00:09")
    sacct = "".join(_row(f"50_{i}", "RUNNING") for i in (0, 1, 2, 4)) + ended
    slurm = Slurm(SQUEUE, {"50_0,50_1,50_2,50_3,50_4,50_5": sacct})
    seen, queued, degraded = _ask(slurm)
    # squeue first (slurmctld), then sacct only for what is not pending: 6-9 are not asked
    assert slurm.calls == [("squeue", "50"), ("sacct", "50_0,50_1,50_2,50_3,50_4,50_5")]
    assert seen[("50", 3)].state.value == "COMPLETED" and seen[("50", 5)].state.value == "FAILED"
    assert queued[("50", 7)] == "PENDING" and degraded is None


def test_a_task_slurmdbd_has_not_written_yet_is_asked_by_id_again_first() -> None:
    """50_5 left the queue, but sacct has no row of its own for it yet: the first time, the
    refresh asks nothing more (slurmdbd's lag of a second is waited out by the next refresh,
    which asks for 50_5 again) and reports it missing; it is not concluded LOST."""
    from datetime import datetime, timezone

    from hpcflow.slurm.client import SlurmClient
    from hpcflow.tracker.reconcile import reconcile
    from hpcflow.tracker.refresh import ask_slurm

    asked_by_task = "".join(_row(f"50_{i}", "RUNNING") for i in range(5))
    slurm = Slurm(SQUEUE, {"50_0,50_1,50_2,50_3,50_4,50_5": asked_by_task})
    tracked = _tracked()
    ans = ask_slurm(SlurmClient(slurm), tracked, datetime(2026, 12, 6, 4, 50))  # type: ignore[arg-type]
    assert [c[0] for c in slurm.calls] == ["squeue", "sacct"] and ans.missing == {("50", 5)}
    now = datetime.now(timezone.utc)  # an hour after submission: past lost_after
    changes = reconcile(tracked, ans.seen, ans.queued, now=now, lost_after=300,
                        hold=ans.missing)  # fmt: skip
    assert 5 not in [c.task.index for c in changes]  # held: not LOST
    lost = reconcile(tracked, ans.seen, ans.queued, now=now, lost_after=300)
    assert (5, "LOST") in [(c.task.index, c.new.value) for c in lost]  # what hold prevents


def test_a_task_missing_twice_is_asked_for_with_its_job() -> None:
    # 50_5 was missing at the last refresh too: the job again, whole (its meta record)
    meta = "50_[5-9]|50_5|hpcflow.r.a.0|PENDING|0:0|Unknown|Unknown|None assigned|None||64M\n"
    asked_by_task = "".join(_row(f"50_{i}", "RUNNING") for i in range(5))
    slurm = Slurm(SQUEUE, {"50_0,50_1,50_2,50_3,50_4,50_5": asked_by_task, "50": meta})
    seen, _, _ = _ask(slurm, absent=frozenset({5}))
    assert slurm.calls[-1] == ("sacct", "50") and len(slurm.calls) == 3
    # the job again since the last refresh (minus a margin), not the whole 10-minute window
    assert slurm.starts == ["--starttime=2026-12-06T04:50:00", "--starttime=2026-12-06T04:58:00"]
    assert seen[("50", 5)].state.value == "PENDING"  # as slurmdbd has it: not LOST
    assert seen[("50", 2)].state.value == "RUNNING"  # its own row, not the meta record's


def test_without_squeue_a_job_with_pending_elements_is_asked_for_whole() -> None:
    slurm = Slurm(None, {"50": "".join(_row(f"50_{i}", "RUNNING") for i in range(10))})
    seen, queued, _ = _ask(slurm)
    assert ("sacct", "50") in slurm.calls and len(seen) == 10


def test_sacct_is_not_asked_when_squeue_holds_every_element_pending() -> None:
    from datetime import datetime, timedelta, timezone

    from hpcflow.slurm.client import SlurmClient
    from hpcflow.states import TaskState
    from hpcflow.tracker.reconcile import Tracked
    from hpcflow.tracker.refresh import ask_slurm

    sub = datetime.now(timezone.utc) - timedelta(hours=1)
    tracked = [Tracked(i, "r", "a", i, "60", i, TaskState.PENDING, submitted_at=sub)
               for i in range(4)]  # fmt: skip
    slurm = Slurm("60_[0-3]|PENDING|Priority\n", {})
    ans = ask_slurm(SlurmClient(slurm), tracked, datetime.now())  # type: ignore[arg-type]
    assert slurm.calls == [("squeue", "60")] and not ans.sacct_asked and ans.degraded is None
    assert len(ans.queued) == 4 and ans.seen == {}


class Hung(Slurm):
    """sacct never answers (slurmdbd busy): the runner's timeout fires."""

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        from hpcflow.errors import RunnerTimeout

        if argv[0] == "sacct":
            self.calls.append((argv[0], argv[argv.index("-j") + 1]))
            raise RunnerTimeout("sacct -X: no answer within 120s")
        return super().run(argv, **kw)


def test_a_sacct_that_hangs_degrades_the_refresh_instead_of_failing_it(tmp_path: Path) -> None:
    """A hung sacct is an unavailable one: the refresh answers from squeue and says why,
    and the once-per-chunk usage is left for later; neither fails the command."""
    from datetime import datetime, timezone

    from sqlmodel import select

    from hpcflow.slurm.client import SlurmClient
    from hpcflow.store.db import Job, Run, Task, open_db, session
    from hpcflow.tracker.usage import collect_usage

    slurm = Hung(SQUEUE, {})
    seen, queued, degraded = _ask(slurm)
    assert degraded is not None and "no answer within 120 s" in degraded
    assert queued[("50", 7)] == "PENDING" and queued[("50", 0)] == "RUNNING"
    engine = open_db(tmp_path / "t.db")  # a real tracker: job 50 ended, its usage not read
    with session(engine) as s:
        s.add(Run(id="r", workflow="w", site="lab", state="COMPLETED", run_dir="/x",
                  workflow_path="/w.yaml"))  # fmt: skip
        s.flush()
        s.add(Job(id=1, run_id="r", step="a", job_index=0, chunk=0, name="hpcflow.r.a.0",
                  slurm_job_id="50",
                  submitted_at=datetime(2026, 12, 6, tzinfo=timezone.utc)))  # fmt: skip
        s.flush()
        s.add(Task(run_id="r", step="a", index=0, job_id=1, state="COMPLETED",
                   end="2026-12-06T05:00:09"))  # fmt: skip
        s.commit()
    with session(engine) as s:
        assert collect_usage(s.connection(), SlurmClient(slurm), ["r"]) == 0
        s.commit()
    assert slurm.calls[-1][0] == "sacct"  # it was asked, and gave no answer
    with session(engine) as s:  # left for later: the next refresh asks again
        assert [j.usage_done for j in s.exec(select(Job))] == [False]
