"""The tracker's rows as the ORM's typed records (store/models.py), in a caller's session:
a run's steps, jobs and elements, campaign batches, and the bulk insert of elements. The
tracker's write paths (submit, recovery, expansion, campaign ticks) read and change records
through these and the session (get, add, commit); no statement is built outside the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from hpcflow.faults import BlackHole
from hpcflow.states import JobStatus
from hpcflow.store.handles import Orm
from hpcflow.store.models import BatchRow, Job, Run, StepRow, Task


def steps_of(s: Orm, run_id: str) -> list[StepRow]:
    return list(s.exec(select(StepRow).where(StepRow.run_id == run_id)))


def jobs_of(s: Orm, run_id: str, names: Iterable[str] | None = None) -> list[Job]:
    """The run's jobs in the order they were recorded (only those named, with ``names``)."""
    q = select(Job).where(Job.run_id == run_id)
    if names is not None:
        q = q.where(col(Job.name).in_(list(names)))
    return list(s.exec(q.order_by(col(Job.id))))


def planned_job(s: Orm, run_id: str) -> Job | None:
    """A job of the run that sbatch has not answered for yet."""
    return s.exec(
        select(Job).where(Job.run_id == run_id, Job.status == JobStatus.PLANNED.value)
    ).first()


def tasks_of(s: Orm, run_id: str, step: str | None = None) -> list[Task]:
    q = select(Task).where(Task.run_id == run_id)
    if step is not None:
        q = q.where(Task.step == step)
    return list(s.exec(q))


def task_at(s: Orm, run_id: str, step: str, index: int) -> Task | None:
    return s.exec(
        select(Task).where(Task.run_id == run_id, Task.step == step, Task.index == index)
    ).first()


def insert_tasks(s: Orm, rows: list[dict[str, Any]]) -> None:
    """Elements in bulk (one executemany: a submission may record 100,000)."""
    if rows:
        s.execute(insert(Task), rows)


def batches_of(s: Orm, campaign: str) -> list[BatchRow]:
    return list(
        s.exec(select(BatchRow).where(BatchRow.campaign == campaign).order_by(col(BatchRow.index)))
    )


def runs_by_id(s: Orm, ids: Iterable[str]) -> dict[str, Run]:
    return {r.id: r for r in s.exec(select(Run).where(col(Run.id).in_(list(ids))))}


def run_labelled(s: Orm, label: str) -> Run | None:
    return s.exec(select(Run).where(Run.label == label)).first()


def avoid(s: Orm, run_id: str, holes: list[BlackHole], at: datetime) -> list[BlackHole]:
    """Record black holes the run did not avoid yet; the new ones."""
    run = s.get(Run, run_id)
    assert run is not None
    have = {a["node"] for a in run.nodes_avoided or []}
    new = [h for h in holes if h.node not in have]
    if new:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        added = [{"node": h.node, "why": h.why(), "at": stamp} for h in new]
        run.nodes_avoided = [*(run.nodes_avoided or []), *added]
        s.add(run)
    return new


def add_node_retries(s: Orm, ids: list[int]) -> None:
    for i in ids:
        t = s.get(Task, i)
        if t is not None:
            t.node_retries += 1
            s.add(t)
