"""A run's dynamic foreach steps as stored: their expansion states and their expand job's
element states, as enums (no state name in an SQL string). The decisions over them are
hpcflow/facts.py's (expansion_open, expansion_due, dynamic_shown)."""

from __future__ import annotations

import sqlite3

from hpcflow.facts import dynamic_state, task_state
from hpcflow.states import DynamicState, TaskState

EXPAND_STEP = "hpcflow-expand"  # spec.dynamic.EXPAND_STEP (not imported: pydantic)


def expansion_inputs(
    conn: sqlite3.Connection, run_id: str
) -> tuple[list[DynamicState], list[TaskState]]:
    """The stored states of the run's dynamic steps (none: no dynamic foreach) and the
    states of its expand job's elements. ``conn`` is a DB-API connection."""
    stored = [
        dynamic_state(v)
        for (v,) in conn.execute(
            "SELECT json_extract(dynamic, '$.state') FROM step WHERE run_id = ? "
            "AND json_type(dynamic) = 'object'",
            (run_id,),
        )
    ]
    if not stored:
        return [], []
    expander = [
        task_state(v)
        for (v,) in conn.execute(
            "SELECT state FROM task WHERE run_id = ? AND step = ?", (run_id, EXPAND_STEP)
        )
    ]
    return stored, expander
