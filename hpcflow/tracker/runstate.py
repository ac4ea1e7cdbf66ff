"""A run's state from its elements' (plain SQL through the driver: a refresh settles its
runs in every `status` process, where each ORM statement's first compile costs about as much
as the lab's sacct)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hpcflow.facts import expansion_open
from hpcflow.states import JobStatus, RunState, TaskState, run_state
from hpcflow.store.db import Run
from hpcflow.store.dynamic import expansion_inputs
from hpcflow.store.escalation import ENDED_SQL, POLICY_SQL, ended_args, from_rows


def db_stamp(t: datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite DateTime stores it."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def escalatable(s: Any, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    """Tasks a step's retry.on_oom / retry.on_timeout will resubmit (see ``escalations``)."""
    s.flush()  # driver SQL below: ORM changes pending in the session first
    return _escalatable(s.connection(), run_id)


def _escalatable(db: Any, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    rows = list(db.exec_driver_sql(ENDED_SQL, ended_args(run_id)))
    return from_rows(rows, db.exec_driver_sql(POLICY_SQL, (run_id,))) if rows else {}


def derive_run_state(s: Any, run: Run) -> str:
    s.flush()  # driver SQL below: ORM changes pending in the session first
    return derived(s.connection(), run.id, run.state, run.cancelled)


def derived(db: Any, run_id: str, state: str, cancelled: bool) -> str:
    # the run's state depends only on which states its elements are in: DISTINCT, not rows
    q = "SELECT DISTINCT state FROM task WHERE run_id = ?"
    states = [TaskState(x) for (x,) in db.exec_driver_sql(q, (run_id,))]
    planned = "SELECT 1 FROM job WHERE run_id = ? AND status = ? LIMIT 1"
    if db.exec_driver_sql(planned, (run_id, JobStatus.PLANNED.value)).first():
        return state  # submission not finished: leave it to the submitter / reconcile
    if _escalatable(db, run_id):
        return RunState.RUNNING.value  # some elements are about to be resubmitted
    new = run_state(states, cancelled)
    if new is not RunState.RUNNING and new is not RunState.PENDING and expansion_due(db, run_id):
        return RunState.RUNNING.value  # the next sync expands its dynamic foreach
    return new.value


def expansion_due(db: Any, run_id: str) -> bool:
    """A dynamic foreach of the run may still be expanded (``facts.expansion_open``)."""
    stored, expander = expansion_inputs(db.connection.driver_connection, run_id)
    return any(expansion_open(st, expander) for st in stored)
