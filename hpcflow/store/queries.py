"""The tracker's runs as the CLI reads them: one run by id or unique prefix, its steps,
the active runs, lists and history, status documents (``lite.status_doc`` on SQLAlchemy's
connection), and what `cancel` and shell completion need."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hpcflow.errors import NotFound
from hpcflow.states import ACTIVE_RUN_STATES, TaskState
from hpcflow.store import lite
from hpcflow.store.db import Event, Job, Run, Session, StepRow, Task, session

ACTIVE = ACTIVE_RUN_STATES


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


def runs_starting(engine: Engine, prefix: str, limit: int = 50) -> list[Run]:
    """Runs whose id starts with ``prefix`` (literally), newest first."""
    with session(engine) as s:
        return list(
            s.exec(
                select(Run)
                .where(col(Run.id).startswith(prefix, autoescape=True))
                .order_by(col(Run.submitted_at).desc())
                .limit(limit)
            ).all()
        )


def step_rows(engine: Engine, run_id: str) -> list[StepRow]:
    """The run's steps, in order (hpcflow's own jobs included)."""
    with session(engine) as s:
        return list(
            s.exec(
                select(StepRow).where(StepRow.run_id == run_id).order_by(col(StepRow.position))
            ).all()
        )


def run_steps(engine: Engine, run_id: str) -> list[str]:
    """The run's step names, in order (hpcflow's own jobs included)."""
    return [r.name for r in step_rows(engine, run_id)]


def usage_pending(engine: Engine, run: Run) -> bool:
    """Whether a refresh could still change what `efficiency` and `report` show: the run is
    active, or a submitted job's usage has not been asked of sacct yet."""
    if run.state in ACTIVE:
        return True
    with engine.connect() as c:
        return (
            c.exec_driver_sql(
                "SELECT 1 FROM job WHERE run_id = ? AND slurm_job_id IS NOT NULL "
                "AND NOT usage_done LIMIT 1",
                (run.id,),
            ).first()
            is not None
        )


def active_runs(engine: Engine) -> list[Run]:
    with session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.state).in_(ACTIVE))).all())


def status_doc(engine: Engine, run_id: str) -> dict[str, Any]:
    """``lite.status_doc`` (one implementation for both paths) on SQLAlchemy's connection."""
    with status_docs(engine, [run_id]) as docs:
        return docs[0]


@contextmanager
def status_docs(
    engine: Engine, run_ids: list[str], with_tasks: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """Status documents of these runs; with tasks, their elements are read while they are
    written, so the connection stays open for the block."""
    runs = [get_run(engine, r) for r in run_ids]
    conn = engine.raw_connection()
    try:
        driver = conn.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        yield [lite.status_doc(driver, run, with_tasks) for run in runs]
    finally:
        conn.close()


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


def submitted_job_ids(engine: Engine, run_id: str, step: str | None = None) -> list[str]:
    """The Slurm job ids of the run's submitted jobs (of one step)."""
    with session(engine) as s:
        q = select(Job).where(Job.run_id == run_id, col(Job.slurm_job_id).is_not(None))
        if step:
            q = q.where(Job.step == step)
        return [j.slurm_job_id for j in s.exec(q).all() if j.slurm_job_id]


def cancellable(s: Session, run_id: str, states: frozenset[TaskState],
                step: str | None = None) -> list[Task]:  # fmt: skip
    """Elements of the run (of one step) in these states, except those of a packed step whose
    job was submitted: a packed task may have finished some of its elements, even if the
    tracker has not seen it start yet, and their own records decide (docs/packing.md)."""
    q = select(Task).where(Task.run_id == run_id, col(Task.state).in_([t.value for t in states]))
    if step:
        q = q.where(Task.step == step)
    packed = {
        x.name for x in s.exec(select(StepRow).where(StepRow.run_id == run_id)) if x.reads_result
    }
    submitted = {j.id for j in s.exec(select(Job).where(Job.run_id == run_id)) if j.slurm_job_id}
    return [t for t in s.exec(q).all() if not (t.step in packed and t.job_id in submitted)]


def history(engine: Engine, run_id: str) -> list[Event]:
    run = get_run(engine, run_id)
    with session(engine) as s:
        return list(
            s.exec(
                select(Event).where(Event.run_id == run.id).order_by(col(Event.time), col(Event.id))
            ).all()
        )
