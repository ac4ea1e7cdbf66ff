"""Refresh runs from Slurm (one sacct for every tracked job), report and cancel them."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from .db import Event, Job, Run, StepRow, Task, session, utcnow
from .errors import NotFound, SlurmError
from .runner import Runner
from .slurm import parse_sacct, parse_squeue, sacct_argv, scancel_argv, squeue_argv
from .states import TERMINAL, RunState, TaskState, map_slurm_state, run_state

ACTIVE = (RunState.PENDING.value, RunState.RUNNING.value)


def get_run(engine: Engine, run_id: str) -> Run:
    with session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            matches = s.exec(select(Run).where(col(Run.id).startswith(run_id))).all()
            if len(matches) == 1:
                return matches[0]
            hint = f" ({len(matches)} runs start with it)" if matches else ""
            raise NotFound(f"no run {run_id!r}{hint}; `hpcflow runs` lists them")
        return run


def active_runs(engine: Engine) -> list[Run]:
    with session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.state).in_(ACTIVE))).all())


def refresh(
    engine: Engine, runner: Runner, runs: list[Run], poll_seconds: int, force: bool = False
) -> list[str]:
    """Refresh the given runs with one sacct call (plus one squeue when something is pending).
    Runs refreshed less than ``poll_seconds`` ago are left alone unless ``force``."""
    now = utcnow()
    due = [
        r
        for r in runs
        if r.state in ACTIVE
        and (
            force
            or r.refreshed_at is None
            or (now - r.refreshed_at).total_seconds() >= poll_seconds
        )
    ]
    if not due:
        return []
    ids = [r.id for r in due]
    with session(engine) as s:
        jobs = s.exec(
            select(Job).where(col(Job.run_id).in_(ids), col(Job.slurm_job_id).is_not(None))
        ).all()
        tasks = s.exec(
            select(Task).where(
                col(Task.run_id).in_(ids), col(Task.state).not_in([t.value for t in TERMINAL])
            )
        ).all()
    slurm_ids = sorted({j.slurm_job_id for j in jobs if j.slurm_job_id}, key=int)
    if not slurm_ids:
        return []
    start = min(r.submitted_at for r in due) - timedelta(days=1)
    res = runner.run(sacct_argv(slurm_ids, start.strftime("%Y-%m-%dT%H:%M:%S")), timeout=120)
    if not res.ok:
        raise SlurmError(f"sacct failed: {(res.stderr or res.stdout).strip()}")
    by_key = {(r.job_id, r.task_id): r for r in parse_sacct(res.stdout)}
    job_slurm = {j.id: j.slurm_job_id for j in jobs}
    pending_jobs: set[str] = set()
    updates: list[dict[str, Any]] = []
    events: list[Event] = []
    observed: dict[int, tuple[TaskState, Any]] = {}
    for t in tasks:
        sid = job_slurm.get(t.job_id)
        row = by_key.get((sid, t.task_id)) if sid else None
        if row is None or sid is None:
            continue
        st = map_slurm_state(row.state, row.reason, started=row.node is not None)
        observed[t.id] = (st, row)  # type: ignore[index]
        if st is TaskState.PENDING:
            pending_jobs.add(sid)
    reasons: dict[tuple[str, int | None], str] = {}
    if pending_jobs:
        q = runner.run(squeue_argv(sorted(pending_jobs, key=int)), timeout=60)
        if q.ok:
            reasons = {(r.job_id, r.task_id): r.reason for r in parse_squeue(q.stdout)}
    for t in tasks:
        if t.id not in observed:
            continue
        st, row = observed[t.id]
        sid = job_slurm[t.job_id]
        if st is TaskState.PENDING:
            st = map_slurm_state(row.state, reasons.get((sid, t.task_id), row.reason))
        attempts = max(t.attempts, 1) if row.start else t.attempts
        new = {
            "state": st.value,
            "exit_code": row.exit_code if st in TERMINAL else None,
            "start": row.start,
            "end": row.end,
            "node": row.node,
            "attempts": attempts,
        }
        old = {
            "state": t.state,
            "exit_code": t.exit_code,
            "start": t.start,
            "end": t.end,
            "node": t.node,
            "attempts": t.attempts,
        }
        if new != old:
            updates.append({"_id": t.id, **new})
        if st.value != t.state:
            display = f"{sid}_{t.task_id}" if t.task_id is not None else sid
            events.append(
                Event(
                    run_id=t.run_id,
                    step=t.step,
                    index=t.index,
                    old_state=t.state,
                    new_state=st.value,
                    slurm_job_id=display,
                    exit_code=new["exit_code"],
                    reason=row.reason or None,
                )
            )
    changed_runs = []
    with session(engine) as s:
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
                )
            )
            s.connection().execute(stmt, updates)
        for e in events:
            s.add(e)
        for r in due:
            run = s.get(Run, r.id)
            assert run is not None
            states = [
                TaskState(x) for x in s.exec(select(Task.state).where(Task.run_id == r.id)).all()
            ]
            new_state = run_state(states, run.cancelled).value
            if new_state != run.state:
                s.add(Event(run_id=run.id, old_state=run.state, new_state=new_state))
                run.state = new_state
                if new_state not in ACTIVE:
                    run.finished_at = utcnow()
                changed_runs.append(run.id)
            run.refreshed_at = utcnow()
            s.add(run)
        s.commit()
    return changed_runs


def status_doc(engine: Engine, run_id: str, with_tasks: bool = False) -> dict[str, Any]:
    run = get_run(engine, run_id)
    with session(engine) as s:
        steps = s.exec(
            select(StepRow).where(StepRow.run_id == run.id).order_by(col(StepRow.position))
        ).all()
        jobs = s.exec(select(Job).where(Job.run_id == run.id).order_by(col(Job.id))).all()
        tasks = s.exec(
            select(Task).where(Task.run_id == run.id).order_by(col(Task.step), col(Task.index))
        ).all()
    job_sid = {j.id: j.slurm_job_id for j in jobs}
    doc: dict[str, Any] = {
        "run_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "namespace": run.namespace,
        "label": run.label,
        "site": run.site,
        "state": run.state,
        "run_dir": run.run_dir,
        "submitted_at": _iso(run.submitted_at),
        "refreshed_at": _iso(run.refreshed_at),
        "finished_at": _iso(run.finished_at),
        "steps": {},
    }
    by_step: dict[str, list[Task]] = {}
    for t in tasks:
        by_step.setdefault(t.step, []).append(t)
    for st in steps:
        ts = by_step.get(st.name, [])
        entry: dict[str, Any] = {
            "total": st.total,
            "states": dict(Counter(t.state for t in ts)),
            "slurm_jobs": [j.slurm_job_id for j in jobs if j.step == st.name and j.slurm_job_id],
        }
        if with_tasks:
            entry["tasks"] = [
                {
                    "index": t.index,
                    "item": json.loads(t.item_json),
                    "state": t.state,
                    "exit_code": t.exit_code,
                    "slurm_job_id": (
                        f"{job_sid[t.job_id]}_{t.task_id}"
                        if t.task_id is not None
                        else job_sid[t.job_id]
                    ),
                    "attempts": t.attempts,
                    "start": t.start,
                    "end": t.end,
                    "node": t.node,
                }
                for t in ts
            ]
        doc["steps"][st.name] = entry
    return doc


def _iso(dt: Any) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def list_runs(
    engine: Engine,
    state: str | None = None,
    workflow: str | None = None,
    namespace: str | None = None,
    since: Any = None,
) -> list[Run]:
    with session(engine) as s:
        q = select(Run)
        if state:
            q = q.where(Run.state == state.upper())
        if workflow:
            q = q.where(Run.workflow == workflow)
        if namespace:
            q = q.where(Run.namespace == namespace)
        if since:
            q = q.where(Run.submitted_at >= since)
        return list(s.exec(q.order_by(col(Run.submitted_at).desc())).all())


def cancel(engine: Engine, runner: Runner, run_id: str, step: str | None = None) -> list[str]:
    run = get_run(engine, run_id)
    with session(engine) as s:
        q = select(Job).where(Job.run_id == run.id, col(Job.slurm_job_id).is_not(None))
        if step:
            names = {x.name for x in s.exec(select(StepRow).where(StepRow.run_id == run.id))}
            if step not in names:
                raise NotFound(
                    f"run {run.id} has no step {step!r} (steps: {', '.join(sorted(names))})"
                )
            q = q.where(Job.step == step)
        ids = [j.slurm_job_id for j in s.exec(q).all() if j.slurm_job_id]
    if ids:
        res = runner.run(scancel_argv(ids), timeout=60)
        if not res.ok:
            raise SlurmError(f"scancel failed: {(res.stderr or res.stdout).strip()}")
    with session(engine) as s:
        q2 = select(Task).where(
            Task.run_id == run.id, col(Task.state).not_in([t.value for t in TERMINAL])
        )
        if step:
            q2 = q2.where(Task.step == step)
        for t in s.exec(q2).all():
            s.add(
                Event(
                    run_id=run.id,
                    step=t.step,
                    index=t.index,
                    old_state=t.state,
                    new_state=TaskState.CANCELLED.value,
                    reason="hpcflow cancel",
                )
            )
            t.state = TaskState.CANCELLED.value
            s.add(t)
        r = s.get(Run, run.id)
        assert r is not None
        if not step:
            r.cancelled = True
        states = [
            TaskState(x) for x in s.exec(select(Task.state).where(Task.run_id == run.id)).all()
        ]
        new_state = run_state(states, r.cancelled).value
        if new_state != r.state:
            s.add(
                Event(run_id=r.id, old_state=r.state, new_state=new_state, reason="hpcflow cancel")
            )
            r.state = new_state
            if new_state not in ACTIVE:
                r.finished_at = utcnow()
        s.add(r)
        s.commit()
    return ids


def history(engine: Engine, run_id: str) -> list[Event]:
    run = get_run(engine, run_id)
    with session(engine) as s:
        return list(
            s.exec(
                select(Event).where(Event.run_id == run.id).order_by(col(Event.time), col(Event.id))
            ).all()
        )
