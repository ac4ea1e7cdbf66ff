"""What the report, the dashboard's timeline and the run_end notice read of a run, as rows:
its jobs' dependencies, its elements' times, its element moves, its failed elements and its
run-level events. Each takes any handle (codec.dbapi) and reads with one statement,
bounded or streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hpcflow.facts import FAILED_VALUES
from hpcflow.states import EventKind
from hpcflow.store.codec import dbapi, json_value
from hpcflow.store.handles import Handle

_MARKS = ", ".join("?" * len(FAILED_VALUES))


def job_edges(db: Handle, run_id: str) -> Iterator[tuple[str, str, str]]:
    """(upstream step, Slurm dependency kind, downstream step) of each first-attempt job's
    recorded dependencies (repeats included)."""
    conn = dbapi(db)
    step_of = dict(conn.execute("SELECT id, step FROM job WHERE run_id = ?", (run_id,)))
    for down, deps in conn.execute(
        "SELECT step, deps FROM job WHERE run_id = ? AND retry_of IS NULL", (run_id,)
    ):
        for kind, up in json_value(deps) or []:
            if up in step_of:
                yield step_of[up], str(kind), down


def element_time_rows(db: Handle, run_id: str) -> Iterator[tuple[Any, ...]]:
    """(step, index, state, start, end, result.start, result.end) of every element: sacct's
    times (the cluster's local time) and the job script's own (epoch seconds)."""
    yield from dbapi(db).execute(
        'SELECT step, "index", state, start, "end", json_extract(result, \'$.start\'), '
        "json_extract(result, '$.end') FROM task WHERE run_id = ?",
        (run_id,),
    )


def element_moves(db: Handle, run_id: str) -> Iterator[tuple[Any, str, str]]:
    """(time, old state, new state) of every element move, in order."""
    yield from dbapi(db).execute(
        "SELECT time, old_state, new_state FROM event WHERE run_id = ? AND kind = ? "
        "AND old_state IS NOT NULL AND new_state IS NOT NULL ORDER BY time, id",
        (run_id, EventKind.TASK.value),
    )


def failed_elements(db: Handle, run_id: str) -> Iterator[tuple[str, int, str, Any, Any]]:
    """(step, index, state, exit code, reason) of the elements that failed (facts.FAILED)."""
    yield from dbapi(db).execute(
        f'SELECT step, "index", state, exit_code, reason FROM task WHERE run_id = ? '
        f'AND state IN ({_MARKS}) ORDER BY step, "index"',
        (run_id, *FAILED_VALUES),
    )


def failure_counts(db: Handle, run_id: str, limit: int) -> list[tuple[Any, ...]]:
    """(step, state, exit code, reason, count, first index) of failed elements grouped, the
    largest ``limit`` groups."""
    return (
        dbapi(db)
        .execute(
            'SELECT step, state, exit_code, reason, count(*), min("index") FROM task '
            f"WHERE run_id = ? AND state IN ({_MARKS}) "
            "GROUP BY step, state, exit_code, reason ORDER BY count(*) DESC LIMIT ?",
            (run_id, *FAILED_VALUES, int(limit)),
        )
        .fetchall()
    )


EVENT_FIELDS = ["time", "kind", "step", "index", "old_state", "new_state", "slurm_job_id",
                "exit_code", "reason"]  # fmt: skip


def run_level_events(db: Handle, run_id: str, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` events that are not element moves, oldest first."""
    rows = dbapi(db).execute(
        'SELECT time, kind, step, "index", old_state, new_state, slurm_job_id, exit_code, '
        "reason FROM event WHERE run_id = ? AND kind != ? ORDER BY id DESC LIMIT ?",
        (run_id, EventKind.TASK.value, int(limit)),
    )
    return [dict(zip(EVENT_FIELDS, r, strict=True)) for r in rows][::-1]


def move_counts(db: Handle, run_id: str) -> list[tuple[str, str, int, Any, Any]]:
    """(step, new state, count, first time, last time) of element moves."""
    return (
        dbapi(db)
        .execute(
            "SELECT step, new_state, count(*), min(time), max(time) FROM event "
            "WHERE run_id = ? AND kind = ? GROUP BY step, new_state ORDER BY min(id)",
            (run_id, EventKind.TASK.value),
        )
        .fetchall()
    )


def counts_per_step(db: Handle, run_id: str) -> dict[str, dict[str, int]]:
    """Elements per step and state."""
    out: dict[str, dict[str, int]] = {}
    for step, st, n in dbapi(db).execute(
        "SELECT step, state, count(*) FROM task WHERE run_id = ? GROUP BY step, state", (run_id,)
    ):
        out.setdefault(step, {})[st] = n
    return out
