"""Refresh runs from Slurm: one sacct for every tracked job, one squeue when needed.

Gather (tracker rows, then sacct and squeue through the SlurmClient) -> decide (the pure
``reconcile``) -> apply (one transaction). Serialized across processes by a lock file beside
the database, so concurrent `status` calls inside the poll interval query Slurm once. With
slurmdbd down, sacct fails and the refresh falls back to squeue: live jobs are updated, nothing
that squeue cannot confirm is changed, and the run is marked degraded until sacct answers
again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hpcflow.errors import SlurmUnavailable
from hpcflow.node.jobtool import task_dir
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.slurm.commands import SqueueRow
from hpcflow.states import OWNED, EventKind, JobStatus, RunState, TaskState, run_state
from hpcflow.tracker.db import Job, Run, StepRow, Task, session, utcnow
from hpcflow.tracker.events import EventLog, move_run
from hpcflow.tracker.reconcile import (
    Change,
    Key,
    Observation,
    Tracked,
    observe,
    reconcile,
    skipped,
    squeue_needed,
)
from hpcflow.tracker.resubmission import ESCALATING_STATES, Ended, escalations
from hpcflow.util.locks import FileLock

ACTIVE = (RunState.PENDING.value, RunState.RUNNING.value)


def lock_path(engine: Engine, name: str) -> str:
    db = engine.url.database or "hpcflow"
    return f"{db}.{name}.lock"


@dataclass
class Refreshed:
    runs: list[str] = field(default_factory=list)
    degraded: str | None = None


def refresh(
    engine: Engine,
    runner: Runner,
    runs: list[Run],
    poll_seconds: int,
    lost_after: int = 300,
    force: bool = False,
) -> Refreshed:
    out = Refreshed()
    with FileLock(lock_path(engine, "refresh")):
        now = utcnow()
        with session(engine) as s:
            fresh = [s.get(Run, r.id) for r in runs]
        due = [
            r
            for r in fresh
            if r is not None
            and r.state in ACTIVE
            and (
                force
                or r.refreshed_at is None
                or (now - r.refreshed_at).total_seconds() >= poll_seconds
            )
        ]
        if due:
            _refresh_due(engine, runner, due, lost_after, out)
    return out


def _refresh_due(
    engine: Engine, runner: Runner, due: list[Run], lost_after: int, out: Refreshed
) -> None:
    tracked = gather(engine, [r.id for r in due])
    if not tracked:
        return
    since = min(r.submitted_at for r in due) - timedelta(days=1)
    seen, queued, out.degraded = ask_slurm(SlurmClient(runner), tracked, since)
    changes = reconcile(
        tracked, seen, queued, now=utcnow(), lost_after=lost_after, degraded=bool(out.degraded)
    )
    run_dirs = {r.id: r.run_dir for r in due}
    changes = [_with_marker(runner, run_dirs, c) for c in changes]
    log = EventLog()
    with session(engine) as s:
        _record(s, log, changes)
        for r in due:
            _settle_run(s, log, r.id, out)
        s.commit()
    log.publish(runner, run_dirs)


def gather(engine: Engine, run_ids: list[str]) -> list[Tracked]:
    """The submitted elements of these runs that Slurm may still change."""
    with session(engine) as s:
        jobs = {
            j.id: j
            for j in s.exec(
                select(Job).where(col(Job.run_id).in_(run_ids), col(Job.slurm_job_id).is_not(None))
            )
        }
        tasks = list(s.exec(select(Task).where(col(Task.run_id).in_(run_ids))))
        steps = {
            (r.run_id, r.name): r
            for r in s.exec(select(StepRow).where(col(StepRow.run_id).in_(run_ids)))
        }
    out = []
    for t in tasks:
        job = jobs.get(t.job_id)
        if job is None or job.slurm_job_id is None or TaskState(t.state) in OWNED:
            continue
        st = steps.get((t.run_id, t.step))
        out.append(
            Tracked(
                id=t.id,  # type: ignore[arg-type]
                run_id=t.run_id,
                step=t.step,
                index=t.index,
                slurm_job_id=job.slurm_job_id,
                task_id=t.task_id,
                state=TaskState(t.state),
                attempts=t.attempts,
                exit_code=t.exit_code,
                start=t.start,
                end=t.end,
                node=t.node,
                reason=t.reason,
                submitted_at=job.submitted_at,
                has_dependency=bool(job.dependency),
                compensation=st is not None and (st.role or "").startswith("compensation"),
                may_skip=st is not None and st.may_skip,
            )
        )
    return out


def ask_slurm(
    client: SlurmClient, tracked: list[Tracked], since: datetime
) -> tuple[dict[Key, Observation], list[SqueueRow], str | None]:
    """One sacct for every job, one squeue for the jobs sacct cannot settle: (observations,
    squeue rows, why the answer is degraded or None)."""
    ids = sorted({t.slurm_job_id for t in tracked}, key=int)
    degraded = None
    try:
        rows = client.sacct(ids, since)
    except SlurmUnavailable as e:
        rows = []
        degraded = f"{e}: states from squeue only; finished jobs are not updated"
    seen = observe(rows, tracked, datetime.now())  # sacct prints the cluster's local time
    need = squeue_needed(tracked, seen)
    queued = (client.squeue(need) or []) if need else []
    return seen, queued, degraded


def _with_marker(runner: Runner, run_dirs: dict[str, str], c: Change) -> Change:
    if not c.check_skip:
        return c
    why = skip_marker(runner, run_dirs[c.task.run_id], c.task.step, c.task.index)
    return skipped(c, why) if why is not None else c


def _record(s: Any, log: EventLog, changes: list[Change]) -> None:
    for c in changes:
        if c.moved:
            log.add(
                s,
                run_id=c.task.run_id,
                step=c.task.step,
                index=c.task.index,
                old_state=c.task.state.value,
                new_state=c.new.value,
                slurm_job_id=c.display_id,
                exit_code=c.row["exit_code"],
                reason=c.event_reason,
            )
    if changes:
        stmt = (
            update(Task)
            .where(Task.id == bindparam("_id"))  # type: ignore[arg-type]
            .values({f: bindparam(f) for f in changes[0].row})
        )
        s.connection().execute(stmt, [{"_id": c.task.id, **c.row} for c in changes])


def _settle_run(s: Any, log: EventLog, run_id: str, out: Refreshed) -> None:
    run = s.get(Run, run_id)
    assert run is not None
    if move_run(s, log, run, derive_run_state(s, run), "derive"):
        out.runs.append(run.id)
    if run.degraded != out.degraded:
        log.add(
            s,
            run_id=run.id,
            kind=EventKind.DEGRADED if out.degraded else EventKind.RECOVERED,
            reason=out.degraded or "sacct answers again",
        )
    run.degraded = out.degraded
    run.refreshed_at = utcnow()
    s.add(run)


def skip_marker(runner: Runner, run_dir: str, step: str, index: int) -> str | None:
    """Why the element skipped itself (its wrapper exits 0 and leaves .hpcflow/skipped), or
    None if it ran."""
    try:
        text = runner.read_file(f"{task_dir(run_dir, step, index)}/.hpcflow/skipped")
    except OSError:
        return None
    return "skipped: " + (text.decode(errors="replace").strip() or "when: false")


def escalatable(s: Any, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    """Tasks a step's retry.on_oom / retry.on_timeout will resubmit (see ``escalations``)."""
    policy = {r.name: r.policy for r in s.exec(select(StepRow).where(StepRow.run_id == run_id))}
    states = [st.value for st in ESCALATING_STATES]
    rows = s.exec(
        select(Task.id, Task.step, Task.state, Task.attempts).where(
            Task.run_id == run_id, col(Task.state).in_(states)
        )
    )
    return escalations((Ended(i, step, TaskState(st), n) for i, step, st, n in rows), policy)


def derive_run_state(s: Any, run: Run) -> str:
    states = [TaskState(x) for x in s.exec(select(Task.state).where(Task.run_id == run.id))]
    if s.exec(
        select(Job).where(Job.run_id == run.id, Job.status == JobStatus.PLANNED.value)
    ).first():
        return run.state  # submission not finished: leave it to the submitter / reconcile
    if escalatable(s, run.id):
        return RunState.RUNNING.value  # some elements are about to be resubmitted
    return run_state(states, run.cancelled).value
