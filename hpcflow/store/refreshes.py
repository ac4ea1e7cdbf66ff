"""What a refresh writes (tracker/refresh.py applies what reconcile decided): element rows
in bulk, grouped by the columns they set, the marks of elements neither sacct nor squeue
knew, and a run's refreshed_at; and the active runs of a site (the per-site poll budget).
The driver's executemany: SQLAlchemy's per-row bind processing costs more than SQLite
itself at 100,000 rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select

from hpcflow.states import ACTIVE_RUN_STATES
from hpcflow.store.handles import Orm
from hpcflow.store.models import Run


def active_of_site(s: Orm, site: str) -> list[Run]:
    return list(s.exec(select(Run).where(Run.site == site, col(Run.state).in_(ACTIVE_RUN_STATES))))


def update_tasks(s: Orm, updates: dict[tuple[str, ...], list[tuple[Any, ...]]]) -> None:
    """Element rows: for each group of columns, (their values..., element row id) per row."""
    for keys, params in updates.items():
        sets = ", ".join(f'"{k}" = ?' for k in keys)
        s.connection().exec_driver_sql(f"UPDATE task SET {sets} WHERE id = ?", params)


def mark_absent(s: Orm, mark: list[int], found: list[int], at: str) -> None:
    """Elements missing from sacct and squeue this time (marked at ``at``), and those found
    again (cleared)."""
    db = s.connection()
    if mark:
        db.exec_driver_sql("UPDATE task SET absent_at = ? WHERE id = ?", [(at, i) for i in mark])
    if found:
        db.exec_driver_sql("UPDATE task SET absent_at = NULL WHERE id = ?", [(i,) for i in found])


def run_flags(s: Orm, run_id: str) -> tuple[str, bool, str | None]:
    """(state, cancelled, degraded) of a run, by the driver."""
    state, cancelled, degraded = (
        s.connection()
        .exec_driver_sql("SELECT state, cancelled, degraded FROM run WHERE id = ?", (run_id,))
        .one()
    )
    return state, bool(cancelled), degraded


def touch_refreshed(s: Orm, run_id: str, when: datetime) -> None:
    """refreshed_at, as SQLAlchemy's SQLite DateTime stores it."""
    s.connection().exec_driver_sql(
        "UPDATE run SET refreshed_at = ? WHERE id = ?",
        (when.strftime("%Y-%m-%d %H:%M:%S.%f"), run_id),
    )
