"""What the escalation decision (``facts.escalations``: which ended elements a step's
retry.on_oom / retry.on_timeout resubmits) reads, the same statements through sqlite3 (the
fast `status`, without SQLAlchemy or pydantic) and under SQLAlchemy (the sync)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from hpcflow.facts import ESCALATING_STATES, Ended, escalations
from hpcflow.states import TaskState
from hpcflow.store import codec

# what the decision reads, the same through sqlite3 (the fast status) and SQLAlchemy (sync)
# `+run_id`: through the state index (the few elements that ran out of memory or time), not
# the run_id one (every element of the run: 57 ms against about 1 ms at 100,000 elements)
ENDED_SQL = (
    "SELECT id, step, state, attempts FROM task WHERE +run_id = ? AND state IN "
    f"({', '.join('?' * len(ESCALATING_STATES))})"
)
POLICY_SQL = "SELECT name, policy FROM step WHERE run_id = ?"


def ended_args(run_id: str) -> tuple[str, ...]:
    return (run_id, *(st.value for st in ESCALATING_STATES))


def from_rows(
    ended: Iterable[tuple], policies: Iterable[tuple]
) -> dict[tuple[str, str, float], list[int]]:
    """``escalations`` over the rows of ENDED_SQL and POLICY_SQL (a JSON column may come
    back as text or decoded)."""
    policy = {n: codec.json_value(p) or {} for n, p in policies}
    return escalations((Ended(i, s, TaskState(st), n or 0) for i, s, st, n in ended), policy)


def escalatable(conn: sqlite3.Connection, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    """The run's elements its steps' retry policies resubmit (``facts.escalations``), read
    through a DB-API connection or cursor: for the sync and the fast status alike."""
    rows = conn.execute(ENDED_SQL, ended_args(run_id)).fetchall()
    return from_rows(rows, conn.execute(POLICY_SQL, (run_id,)).fetchall()) if rows else {}
