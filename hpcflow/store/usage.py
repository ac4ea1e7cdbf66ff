"""What usage collection and efficiency read and write (docs/efficiency.md): the finished
jobs whose usage is still to collect, a job's elements, the usage stored per element, what
each element asked for and used, and the requests that ran out of memory or time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpcflow.facts import UNFINISHED_VALUES as _UNFINISHED
from hpcflow.states import TaskState
from hpcflow.store.codec import dbapi
from hpcflow.store.handles import Handle

_RAN_OUT = (TaskState.OUT_OF_MEMORY.value, TaskState.TIMEOUT.value)


def finished_jobs(db: Handle, run_ids: Sequence[str]) -> list[tuple[int, str, str | None, str]]:
    """Jobs of these runs whose elements have all ended and whose usage was not collected:
    (job row id, Slurm job id, latest element end (cluster local time), submitted_at)."""
    runs = ", ".join("?" * len(run_ids))
    states = ", ".join("?" * len(_UNFINISHED))
    q = (
        'SELECT j.id, j.slurm_job_id, max(t."end"), j.submitted_at FROM job j '
        "JOIN task t ON t.job_id = j.id "
        f"WHERE j.run_id IN ({runs}) AND j.usage_done = 0 AND j.slurm_job_id IS NOT NULL "
        f"GROUP BY j.id HAVING sum(t.state IN ({states})) = 0"
    )
    return [tuple(r) for r in dbapi(db).execute(q, (*run_ids, *_UNFINISHED))]  # type: ignore[misc]


def job_tasks(db: Handle, job_id: int) -> list[tuple[int, int | None]]:
    """(element row id, array task id) of a job's elements."""
    return dbapi(db).execute("SELECT id, task_id FROM task WHERE job_id = ?", (job_id,)).fetchall()


def store_usage(db: Handle, job_id: int, usages: list[tuple[str, int]]) -> None:
    """Each element's usage (JSON text, element row id), and the job marked collected. By
    primary key: `job_id = ? AND task_id IS ?` scans the job's tasks per update (a
    5,000-task array: 25 million row visits, 2.8 s)."""
    conn = dbapi(db)
    if usages:
        conn.executemany("UPDATE task SET usage = ? WHERE id = ?", usages)
    conn.execute("UPDATE job SET usage_done = 1 WHERE id = ?", (job_id,))


def element_use_rows(db: Handle, run_id: str, step: str | None = None) -> Any:
    """(step, state, result, usage, cpus, mem_mb, time_s, gpus, pack, parallel) of each
    element, in step and index order."""
    where, args = ("AND t.step = ?", (run_id, step)) if step else ("", (run_id,))
    return dbapi(db).execute(
        "SELECT t.step, t.state, t.result, t.usage, j.cpus, j.mem_mb, j.time_s, j.gpus, "
        "s.pack, s.parallel FROM task t JOIN job j ON j.id = t.job_id "
        "JOIN step s ON s.run_id = t.run_id AND s.name = t.step "
        f'WHERE t.run_id = ? {where} ORDER BY s.position, t."index"',
        args,
    )


def ran_out_rows(db: Handle, run_id: str) -> Any:
    """(step, OUT_OF_MEMORY or TIMEOUT, the job's mem_mb, time_s) of every such move in the
    history: every attempt."""
    return dbapi(db).execute(
        "SELECT e.step, e.new_state, j.mem_mb, j.time_s FROM event e "
        "LEFT JOIN job j ON j.run_id = e.run_id AND j.slurm_job_id = "
        "substr(e.slurm_job_id, 1, instr(e.slurm_job_id || '_', '_') - 1) "
        "WHERE e.run_id = ? AND e.new_state IN (?, ?)",
        (run_id, *_RAN_OUT),
    )
