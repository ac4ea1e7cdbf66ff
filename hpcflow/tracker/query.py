"""Read runs from the tracker (status, lists, history) and cancel them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy import select as columns
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hpcflow.errors import NotFound
from hpcflow.node.jobtool import task_dir
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.states import HPCFLOW_MOVES, TERMINAL, TaskState
from hpcflow.tracker.db import Event, Job, Run, StepRow, Task, session
from hpcflow.tracker.events import EventLog, move_run, move_task
from hpcflow.tracker.refresh import ACTIVE, derive_run_state


def get_run(engine: Engine, run_id: str) -> Run:
    with session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            # a literal prefix: % and _ in what the user typed are not LIKE wildcards
            matches = s.exec(
                select(Run).where(col(Run.id).startswith(run_id, autoescape=True)).limit(50)
            ).all()
            if len(matches) == 1:
                return matches[0]
            hint = f" ({len(matches)} runs start with it)" if matches else ""
            raise NotFound(f"no run {run_id!r}{hint}; `hpcflow runs` lists them")
        return run


def run_steps(engine: Engine, run_id: str) -> list[str]:
    """The run's step names, in order (hpcflow's own jobs included)."""
    with session(engine) as s:
        rows = s.exec(
            select(StepRow).where(StepRow.run_id == run_id).order_by(col(StepRow.position))
        ).all()
    return [r.name for r in rows]


def active_runs(engine: Engine) -> list[Run]:
    with session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.state).in_(ACTIVE))).all())


def status_doc(engine: Engine, run_id: str, with_tasks: bool = False) -> dict[str, Any]:
    """The run at a glance: counts per step (one GROUP BY). With tasks, every element as the
    tracker has it, with what it recorded when it ended (result.json, outputs.json, read once
    on that transition): no file is opened here."""
    run = get_run(engine, run_id)
    t = Task.__table__.c  # type: ignore[attr-defined]
    with session(engine) as s:
        steps = s.exec(
            select(StepRow).where(StepRow.run_id == run.id).order_by(col(StepRow.position))
        ).all()
        jobs = s.exec(select(Job).where(Job.run_id == run.id).order_by(col(Job.id))).all()
        conn = s.connection()
        grouped = conn.execute(
            columns(t.step, t.state, func.count())
            .where(t.run_id == run.id)
            .group_by(t.step, t.state)
        ).all()
        rows = (
            conn.execute(
                columns(*(t[c] for c in TASK_COLUMNS))
                .where(t.run_id == run.id)
                .order_by(t.step, t.index)
            ).all()
            if with_tasks
            else []
        )
    job_sid = {j.id: j.slurm_job_id for j in jobs}
    states: dict[str, dict[str, int]] = {}
    for step, state, n in grouped:
        states.setdefault(step, {})[state] = n
    by_step: dict[str, list[Any]] = {}
    for r in rows:
        by_step.setdefault(r.step, []).append(r)
    doc = run_header(run)
    for st in steps:
        entry: dict[str, Any] = {
            "role": st.role,
            "total": st.total,
            "states": states.get(st.name, {}),
            "slurm_jobs": [j.slurm_job_id for j in jobs if j.step == st.name and j.slurm_job_id],
        }
        if st.pack > 1:
            entry["pack"] = {"size": st.pack, "parallel": st.parallel}
        if with_tasks:
            entry["tasks"] = [
                task_doc(r, job_sid[r.job_id], run.run_dir) for r in by_step.get(st.name, [])
            ]
        doc["steps"][st.name] = entry
    return doc


TASK_COLUMNS = ("step", "index", "item", "state", "exit_code", "job_id", "task_id", "attempts",
                "start", "end", "node", "reason", "result", "outputs")  # fmt: skip


def run_header(run: Run) -> dict[str, Any]:
    return {
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
        "degraded": run.degraded,
        "steps": {},
    }


def task_doc(t: Any, slurm_job_id: str | None, run_dir: str | None = None) -> dict[str, Any]:
    """One element as `status --json --tasks` prints it (a Task row or a row of columns)."""
    doc = {
        "index": t.index,
        "item": t.item,
        "state": t.state,
        "exit_code": t.exit_code,
        "slurm_job_id": f"{slurm_job_id}_{t.task_id}" if t.task_id is not None else slurm_job_id,
        "attempts": t.attempts,
        "start": t.start,
        "end": t.end,
        "node": t.node,
        "reason": t.reason,
    }
    if run_dir is not None and TaskState(t.state) in TERMINAL:
        doc |= {"task_dir": task_dir(run_dir, t.step, t.index), "result": t.result,
                "outputs": t.outputs}  # fmt: skip
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
    SlurmClient(runner).scancel(ids, check=True)
    log = EventLog()
    with session(engine) as s:
        q2 = select(Task).where(
            Task.run_id == run.id, col(Task.state).in_([t.value for t in HPCFLOW_MOVES["cancel"]])
        )
        if step:
            q2 = q2.where(Task.step == step)
        for t in s.exec(q2).all():
            move_task(s, log, t, TaskState.CANCELLED, "cancel", "hpcflow cancel")
        r = s.get(Run, run.id)
        assert r is not None
        if not step:
            r.cancelled = True
        move_run(
            s, log, r, derive_run_state(s, r), "cancel" if not step else "derive", "hpcflow cancel"
        )
        s.add(r)
        s.commit()
    log.publish(runner, {run.id: run.run_dir})
    return ids


def history(engine: Engine, run_id: str) -> list[Event]:
    run = get_run(engine, run_id)
    with session(engine) as s:
        return list(
            s.exec(
                select(Event).where(Event.run_id == run.id).order_by(col(Event.time), col(Event.id))
            ).all()
        )
