"""What a run's state is derived from, read through the driver (a refresh settles its runs
in every `status` process, where each ORM statement's first compile costs about as much as
the lab's sacct): the distinct states of its elements, an unfinished submission, the
escalations due and the expansions still open. The decision is ``facts.derive_run_state``."""

from __future__ import annotations

from datetime import datetime

from hpcflow.facts import derive_run_state as decide
from hpcflow.facts import expansion_open, task_state
from hpcflow.faults import retry_due
from hpcflow.states import JobStatus
from hpcflow.store.codec import dbapi
from hpcflow.store.db import Run
from hpcflow.store.dynamic import expansion_inputs
from hpcflow.store.escalation import escalatable as _escalatable
from hpcflow.store.handles import Handle, Orm
from hpcflow.store.nodes import decision


def db_stamp(t: datetime) -> str:
    """A UTC time as SQLAlchemy's SQLite DateTime stores it."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def escalatable(s: Orm, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    """Tasks a step's retry.on_oom / retry.on_timeout will resubmit (``facts.escalations``)."""
    s.flush()  # driver SQL below: ORM changes pending in the session first
    return _escalatable(dbapi(s), run_id)


def derive_run_state(s: Orm, run: Run) -> str:
    s.flush()  # driver SQL below: ORM changes pending in the session first
    return derived(s, run.id, run.state, run.cancelled)


def derived(db: Handle, run_id: str, state: str, cancelled: bool) -> str:
    """The run's state as its records have it now (``facts.derive_run_state``)."""
    conn = dbapi(db)
    # the run's state depends only on which states its elements are in: DISTINCT, not rows
    states = [task_state(x) for (x,) in conn.execute(
        "SELECT DISTINCT state FROM task WHERE run_id = ?", (run_id,))]  # fmt: skip
    planned = conn.execute(
        "SELECT 1 FROM job WHERE run_id = ? AND status = ? LIMIT 1",
        (run_id, JobStatus.PLANNED.value),
    ).fetchone()
    return decide(
        state,
        states,
        cancelled,
        submitting=planned is not None,
        escalating=lambda: bool(_escalatable(conn, run_id)) or retry_due(decision(conn, run_id)),
        expanding=lambda: expansion_due(conn, run_id),
    ).value


def expansion_due(db: Handle, run_id: str) -> bool:
    """A dynamic foreach of the run may still be expanded (``facts.expansion_open``)."""
    stored, expander = expansion_inputs(dbapi(db), run_id)
    return any(expansion_open(st, expander) for st in stored)
