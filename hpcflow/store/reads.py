"""The read-only faces' queries (the dashboard and its API; the report's data reads through
the same connection): a read-only sqlite3 connection per request, and the pages of runs,
elements and history it reads, as records (store/lite.py's rows). No face builds SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hpcflow.errors import NotFound
from hpcflow.store import lite

HISTORY_FIELDS = ("time", "kind", "step", "index", "old_state", "new_state", "slurm_job_id",
                  "exit_code", "reason", "run_id")  # fmt: skip


class ReadOnly:
    """A read-only sqlite3 connection (store/lite.connect_ro), one per request; the store's
    readers take it as any other handle (codec.dbapi)."""

    def __init__(self, path: Path):
        conn = lite.connect_ro(path)
        if conn is None:
            raise NotFound(f"no tracker database at {path} (or of another schema version)")
        self.conn = conn

    def close(self) -> None:
        self.conn.close()


def run_rows(conn: sqlite3.Connection, state: str | None, workflow: str | None,
             namespace: str | None, since: str | None) -> list[Any]:  # fmt: skip
    """Runs newest first, filtered by state, workflow, namespace and submission time."""
    where, args = [], []
    for col, v in (("state", state), ("workflow", workflow), ("namespace", namespace)):
        if v:
            where.append(f"{col} = ?")
            args.append(v)
    if since:
        where.append("submitted_at >= ?")
        args.append(since.replace("T", " "))
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {', '.join(lite.RUN_FIELDS)} FROM run {cond} ORDER BY submitted_at DESC"
    return lite._rows(conn.cursor(), sql, tuple(args), lite.RUN_FIELDS)


def counts_by_run(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Elements per state of every run."""
    out: dict[str, dict[str, int]] = {}
    for run_id, state, n in conn.execute(
        "SELECT run_id, state, count(*) FROM task GROUP BY run_id, state"
    ):
        out.setdefault(run_id, {})[state] = n
    return out


Page = tuple[int, list[Any], dict[int, str | None]]


def task_page(conn: sqlite3.Connection, run_id: str, step: str | None, state: str | None,
              page: int, per_page: int) -> Page:  # fmt: skip
    """One page of a run's elements by step and index: (how many match, the page's rows,
    job id -> Slurm job id)."""
    where, args = ["run_id = ?"], [run_id]
    if step:
        where.append("step = ?")
        args.append(step)
    if state:
        where.append("state = ?")
        args.append(state)
    cond = " AND ".join(where)
    (total,) = conn.execute(f"SELECT count(*) FROM task WHERE {cond}", tuple(args)).fetchone()
    job_sid = dict(conn.execute("SELECT id, slurm_job_id FROM job WHERE run_id = ?", (run_id,)))
    sql = (f"SELECT {', '.join(lite.TASK_FIELDS)} FROM task WHERE {cond} "
           f'ORDER BY step, "index" LIMIT ? OFFSET ?')  # fmt: skip
    rows = lite._rows(conn.cursor(), sql, (*args, per_page, (page - 1) * per_page),
                      lite.TASK_FIELDS)  # fmt: skip
    return total, rows, job_sid


def history_page(conn: sqlite3.Connection, run_id: str, page: int,
                 per_page: int) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    """One page of a run's events, oldest first: (how many, the page's events as dicts)."""
    (total,) = conn.execute("SELECT count(*) FROM event WHERE run_id = ?", (run_id,)).fetchone()
    rows = conn.execute(
        'SELECT time, kind, step, "index", old_state, new_state, slurm_job_id, exit_code, '
        "reason, run_id FROM event WHERE run_id = ? ORDER BY time, id LIMIT ? OFFSET ?",
        (run_id, per_page, (max(1, page) - 1) * per_page),
    )
    return total, [dict(zip(HISTORY_FIELDS, r, strict=True)) for r in rows]


def step_names(conn: sqlite3.Connection, run_id: str) -> list[str]:
    return [s for (s,) in conn.execute("SELECT name FROM step WHERE run_id = ?", (run_id,))]


def has_element(conn: sqlite3.Connection, run_id: str, step: str, index: int) -> bool:
    row = conn.execute(
        'SELECT 1 FROM task WHERE run_id = ? AND step = ? AND "index" = ? LIMIT 1',
        (run_id, step, index),
    ).fetchone()
    return row is not None
