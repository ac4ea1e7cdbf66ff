"""Refresh runs from Slurm: one sacct for every tracked job, one squeue when needed.

Serialized across processes by a lock file beside the database, so concurrent `status` calls
inside the poll interval query Slurm once. With slurmdbd down, sacct fails and the refresh
falls back to squeue: live jobs are updated, nothing that squeue cannot confirm is changed,
and the run is marked degraded until sacct answers again.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hpcflow.node.jobtool import task_dir
from hpcflow.runners.base import Runner
from hpcflow.slurm.commands import parse_sacct, parse_squeue, sacct_argv, squeue_argv
from hpcflow.states import (
    HPCFLOW_MOVES,
    OWNED,
    TERMINAL,
    JobStatus,
    RunState,
    TaskState,
    is_requeue,
    map_slurm_state,
    run_state,
    slurm_move_allowed,
)
from hpcflow.tracker.db import Job, Run, StepRow, Task, session, utcnow
from hpcflow.tracker.events import EventLog, move_run

ACTIVE = (RunState.PENDING.value, RunState.RUNNING.value)
# sacct may lag slurmctld: a job it shows NODE_FAIL or PREEMPTED may already be requeued, which
# squeue (slurmctld itself) shows as PENDING; PENDING rows need squeue for their reason.
MAYBE_REQUEUED = frozenset({TaskState.PENDING, TaskState.NODE_FAIL, TaskState.PREEMPTED})


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_path(engine: Engine, name: str) -> str:
    db = engine.url.database or "hpcflow"
    return f"{db}.{name}.lock"


@dataclass
class Observation:
    state: TaskState
    exit_code: int | None = None
    start: str | None = None
    end: str | None = None
    node: str | None = None
    reason: str = ""


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
    with file_lock(lock_path(engine, "refresh")):
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
        if not due:
            return out
        _refresh_locked(engine, runner, due, lost_after, out)
    return out


def _refresh_locked(
    engine: Engine, runner: Runner, due: list[Run], lost_after: int, out: Refreshed
) -> None:
    ids = [r.id for r in due]
    with session(engine) as s:
        jobs = {
            j.id: j
            for j in s.exec(
                select(Job).where(col(Job.run_id).in_(ids), col(Job.slurm_job_id).is_not(None))
            ).all()
        }
        tasks = [
            t
            for t in s.exec(select(Task).where(col(Task.run_id).in_(ids))).all()
            if TaskState(t.state) not in OWNED
        ]
    current = {t.job_id for t in tasks}
    slurm_ids = sorted({jobs[j].slurm_job_id for j in current if j in jobs}, key=int)  # type: ignore[arg-type]
    if not slurm_ids:
        return
    start = min(r.submitted_at for r in due) - timedelta(days=1)
    res = runner.run(sacct_argv(slurm_ids, start.strftime("%Y-%m-%dT%H:%M:%S")), timeout=120)
    seen: dict[tuple[str, int | None], Observation] = {}
    with_dep = {j.slurm_job_id for j in jobs.values() if j.dependency}
    local_now = datetime.now()  # sacct prints the cluster's local time
    if res.ok:
        for row in parse_sacct(res.stdout):
            if row.killed_without_step_data(local_now):
                continue  # OOM or not is not known yet: leave the element as it was
            seen[(row.job_id, row.task_id)] = Observation(
                TaskState.OUT_OF_MEMORY
                if row.oom_evidence
                else map_slurm_state(
                    row.state,
                    row.reason,
                    started=row.node is not None,
                    has_dependency=row.job_id in with_dep,
                ),
                128 + row.signal if row.signal else row.exit_code,
                row.start,
                row.end,
                row.node,
                row.reason,
            )
    else:
        out.degraded = (
            "sacct failed ("
            + (res.stderr or res.stdout).strip().splitlines()[-1]
            + "): states from squeue only; finished jobs are not updated"
        )
    # squeue for: pending reasons, jobs sacct does not show yet, and everything when degraded
    need_q = set()
    for t in tasks:
        sid = jobs[t.job_id].slurm_job_id if t.job_id in jobs else None
        if sid is None:
            continue
        o = seen.get((sid, t.task_id))
        if o is None or o.state in MAYBE_REQUEUED:
            need_q.add(sid)
    queued: dict[tuple[str, int | None], tuple[str, str]] = {}
    if need_q:
        q = runner.run(squeue_argv(sorted(need_q, key=int)), timeout=60)
        if q.ok:
            queued = {(r.job_id, r.task_id): (r.state, r.reason) for r in parse_squeue(q.stdout)}
    log = EventLog()
    now = utcnow()
    updates: list[dict[str, Any]] = []
    run_dirs = {r.id: r.run_dir for r in due}
    with session(engine) as s:
        skippable = {
            (r.run_id, r.name)
            for r in s.exec(select(StepRow).where(col(StepRow.run_id).in_(ids))).all()
            if json.loads(r.policy_json).get("may_skip")
        }
        for t in tasks:
            job = jobs.get(t.job_id)
            if job is None or job.slurm_job_id is None:
                continue
            sid = job.slurm_job_id
            key = (sid, t.task_id)
            o = seen.get(key)
            if key in queued:
                qstate, qreason = queued[key]
                qo = Observation(map_slurm_state(qstate, qreason), reason=qreason)
                if o is None or o.state in MAYBE_REQUEUED:
                    o = Observation(
                        qo.state, None, o.start if o else None, None, o.node if o else None, qreason
                    )
            elif o is not None and o.state is TaskState.PENDING and t.state != "PENDING":
                # sacct (slurmdbd) lags slurmctld: a job it still shows PENDING after we saw it
                # start is a requeue only if slurmctld, in squeue, says so
                continue
            if o is None:
                age = (now - (job.submitted_at or now)).total_seconds()
                if out.degraded or age < lost_after or TaskState(t.state) in TERMINAL:
                    continue  # cannot confirm anything: leave it
                o = Observation(
                    TaskState.LOST, reason=f"not in sacct or squeue {age:.0f}s after submission"
                )
            if o.state is TaskState.UPSTREAM_FAILED and only_notok(job.dependency):
                o = Observation(
                    TaskState.SKIPPED, reason="compensation not needed: upstream succeeded"
                )
            if o.state is TaskState.COMPLETED and (t.run_id, t.step) in skippable:
                if t.state == TaskState.SKIPPED.value:
                    continue  # Slurm says COMPLETED; the element's wrapper said why: skipped
                why = skip_marker(runner, run_dirs[t.run_id], t.step, t.index)
                if why is not None:
                    o = Observation(TaskState.SKIPPED, 0, o.start, o.end, o.node, why)
            _apply(t, o, sid, updates, log, s)
        if updates:
            stmt = (
                update(Task)
                .where(Task.id == bindparam("_id"))  # type: ignore[arg-type]
                .values(
                    state=bindparam("state"),
                    exit_code=bindparam("exit_code"),
                    start=bindparam("start"),
                    end=bindparam("end"),
                    node=bindparam("node"),
                    attempts=bindparam("attempts"),
                    reason=bindparam("reason"),
                )
            )
            s.connection().execute(stmt, updates)
        for r in due:
            run = s.get(Run, r.id)
            assert run is not None
            if move_run(s, log, run, derive_run_state(s, run), "derive"):
                out.runs.append(run.id)
            if run.degraded != out.degraded:
                log.add(
                    s,
                    run_id=run.id,
                    new_state="DEGRADED" if out.degraded else "RECOVERED",
                    reason=out.degraded or "sacct answers again",
                )
            run.degraded = out.degraded
            run.refreshed_at = utcnow()
            s.add(run)
        s.commit()
    log.publish(runner, {r.id: r.run_dir for r in due})


def _apply(
    t: Task, o: Observation, sid: str, updates: list[dict[str, Any]], log: EventLog, s: Any
) -> None:
    old = TaskState(t.state)
    new = o.state
    allowed = (
        old in HPCFLOW_MOVES["lost"] if new is TaskState.LOST else slurm_move_allowed(old, new)
    )
    if not allowed:
        return
    attempts = t.attempts
    started = o.start is not None and o.node is not None
    if new is not old and (
        new is TaskState.RUNNING or (old is TaskState.PENDING and started and new in TERMINAL)
    ):
        attempts += 1
    requeued = is_requeue(old, new)
    row = {
        "state": new.value,
        "exit_code": o.exit_code if new in TERMINAL else None,
        "start": o.start,
        "end": o.end if new in TERMINAL else None,
        "node": o.node,
        "attempts": attempts,
        "reason": o.reason or None,
    }
    before = {
        "state": t.state,
        "exit_code": t.exit_code,
        "start": t.start,
        "end": t.end,
        "node": t.node,
        "attempts": t.attempts,
        "reason": t.reason,
    }
    if row == before:
        return
    updates.append({"_id": t.id, **row})
    if new is not old:
        display = f"{sid}_{t.task_id}" if t.task_id is not None else sid
        reason = ("requeued by Slurm; " if requeued else "") + (o.reason or "")
        log.add(
            s,
            run_id=t.run_id,
            step=t.step,
            index=t.index,
            old_state=old.value,
            new_state=new.value,
            slurm_job_id=display,
            exit_code=row["exit_code"],
            reason=reason.strip("; ") or None,
        )


def skip_marker(runner: Runner, run_dir: str, step: str, index: int) -> str | None:
    """Why the element skipped itself (its wrapper exits 0 and leaves .hpcflow/skipped), or
    None if it ran."""
    try:
        text = runner.read_file(f"{task_dir(run_dir, step, index)}/.hpcflow/skipped")
    except OSError:
        return None
    return "skipped: " + (text.decode(errors="replace").strip() or "when: false")


def only_notok(dependency: str | None) -> bool:
    """A job whose every dependency is afternotok (a compensation step): Slurm cancels it when
    the upstream succeeded, which means it was not needed."""
    parts = [p for p in (dependency or "").split(",") if p]
    return bool(parts) and all(p.startswith("afternotok:") for p in parts)


ESCALATIONS = (
    (TaskState.OUT_OF_MEMORY, "on_oom", "mem_factor"),
    (TaskState.TIMEOUT, "on_timeout", "time_factor"),
)


def escalatable(s: Any, run_id: str) -> dict[str, list[tuple[Task, float]]]:
    """Tasks a step's retry.on_oom / retry.on_timeout will resubmit: key -> [(task, factor)]."""
    policy = {
        r.name: json.loads(r.policy_json)
        for r in s.exec(select(StepRow).where(StepRow.run_id == run_id))
    }
    out: dict[str, list[tuple[Task, float]]] = {}
    states = [st.value for st, _, _ in ESCALATIONS]
    for t in s.exec(select(Task).where(Task.run_id == run_id, col(Task.state).in_(states))):
        p = policy.get(t.step, {})
        for st, key, factor in ESCALATIONS:
            if t.state == st.value and p.get(key) and t.attempts < p.get("attempts", 1):
                out.setdefault(key, []).append((t, float(p[key][factor])))
    return out


def derive_run_state(s: Any, run: Run) -> str:
    states = [TaskState(x) for x in s.exec(select(Task.state).where(Task.run_id == run.id))]
    if s.exec(
        select(Job).where(Job.run_id == run.id, Job.status == JobStatus.PLANNED.value)
    ).first():
        return run.state  # submission not finished: leave it to the submitter / reconcile
    if escalatable(s, run.id):
        return RunState.RUNNING.value  # some elements are about to be resubmitted
    return run_state(states, run.cancelled).value
