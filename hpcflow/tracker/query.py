"""Read runs from the tracker (status, lists, history: store/queries.py) and cancel them."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from hpcflow.errors import NotFound
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.states import HPCFLOW_MOVES, TaskState
from hpcflow.store import lite
from hpcflow.store.db import Run, session
from hpcflow.store.queries import (
    active_runs,
    cancellable,
    get_run,
    history,
    list_runs,
    run_steps,
    status_doc,
    status_docs,
    submitted_job_ids,
    usage_pending,
)
from hpcflow.store.runstate import derive_run_state
from hpcflow.tracker.events import EventLog, move_run, move_task

__all__ = ["active_runs", "cancel", "get_run", "history", "list_runs", "run_header",
           "run_steps", "status_doc", "status_docs", "usage_pending"]  # fmt: skip

run_header = lite.run_header


def cancel(engine: Engine, runner: Runner, run_id: str, step: str | None = None) -> list[str]:
    run = get_run(engine, run_id)
    if step:
        names = run_steps(engine, run.id)
        if step not in names:
            raise NotFound(f"run {run.id} has no step {step!r} (steps: {', '.join(sorted(names))})")
    ids = submitted_job_ids(engine, run.id, step)
    SlurmClient(runner).scancel(ids, check=True)
    log = EventLog()
    with session(engine) as s:
        for t in cancellable(s, run.id, HPCFLOW_MOVES["cancel"], step):
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
