"""Run events: rows in the tracker and JSON lines in the run directory (events.jsonl)."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from sqlmodel import Session

from hpcflow.runners.base import Runner
from hpcflow.states import (
    HPCFLOW_MOVES,
    MOVES,
    EventKind,
    RunState,
    TaskState,
    run_move_allowed,
)
from hpcflow.tracker.db import Event, Run, Task, utcnow

log = logging.getLogger(__name__)


def event_json(e: Event | dict[str, Any]) -> dict[str, Any]:
    """One event as `history --json` and events.jsonl show it. ``new_state`` of a note is its
    kind, as before kinds had a column of their own."""
    d = e if isinstance(e, dict) else e.model_dump()
    kind = EventKind(d["kind"])
    return {
        "time": d["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") if d.get("time") else None,
        "run_id": d["run_id"],
        "kind": kind.value,
        "step": d.get("step"),
        "index": d.get("index"),
        "old_state": d.get("old_state"),
        "new_state": d.get("new_state") if kind in MOVES else kind.value,
        "slurm_job_id": d.get("slurm_job_id"),
        "exit_code": d.get("exit_code"),
        "reason": d.get("reason"),
    }


def _log_event(d: dict[str, Any]) -> None:
    where = d["run_id"] + (f" {d['step']}[{d.get('index')}]" if d.get("step") is not None else "")
    log.debug(
        "tracker: %s: %s -> %s%s",
        where,
        d.get("old_state") or "-",
        d.get("new_state") or d["kind"],
        f": {d['reason']}" if d.get("reason") else "",
    )


_MOVE_COLUMNS = ("run_id", "step", "index", "old_state", "new_state", "slurm_job_id",
                 "exit_code", "reason")  # fmt: skip


class EventLog:
    """Collects events during a transaction; ``publish`` appends them to each run's
    events.jsonl once the transaction has committed (the database is the source of truth)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, s: Session, kind: EventKind | None = None, **fields: Any) -> Event:
        """Record one event: a state move (RUN without a step, else TASK) or, with ``kind``, a
        note. `-v` logs it: every state change the tracker decides, and why."""
        if kind is None:
            kind = EventKind.RUN if fields.get("step") is None else EventKind.TASK
        e = Event(kind=kind.value, **fields)
        d = e.model_dump()
        if log.isEnabledFor(logging.DEBUG):
            _log_event(d)
        s.add(e)
        self.events.append(d)
        return e

    def add_many(self, s: Session, moves: list[dict[str, Any]]) -> None:
        """Element state moves in bulk (one executemany, no ORM objects: a refresh may record
        100,000 at once); each dict holds Event columns."""
        if not moves:
            return
        now = utcnow()
        kind = EventKind.TASK.value
        rows = [{c: m.get(c) for c in _MOVE_COLUMNS} | {"kind": kind, "time": now} for m in moves]
        # the driver's executemany: SQLAlchemy's per-row parameter processing costs more than
        # SQLite at 100,000 rows; the time as SQLAlchemy's SQLite DateTime stores it
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        names = ", ".join(f'"{c}"' for c in (*_MOVE_COLUMNS, "kind", "time"))
        marks = ", ".join("?" * (len(_MOVE_COLUMNS) + 2))
        s.connection().exec_driver_sql(
            f"INSERT INTO event ({names}) VALUES ({marks})",
            [(*(m.get(c) for c in _MOVE_COLUMNS), kind, stamp) for m in moves],
        )
        if log.isEnabledFor(logging.DEBUG):
            for r in rows:
                _log_event(r)
        self.events.extend(rows)

    def publish(self, runner: Runner, run_dirs: dict[str, str]) -> None:
        by_run: dict[str, list[str]] = {}
        for e in self.events:
            by_run.setdefault(e["run_id"], []).append(json.dumps(event_json(e)))
        for run_id, lines in by_run.items():
            d = run_dirs.get(run_id)
            if not d:
                continue
            # a cleaned run directory loses nothing: the database has every event
            with contextlib.suppress(OSError):
                runner.append_file(f"{d}/events.jsonl", "\n".join(lines) + "\n")
        self.events.clear()


def move_run(
    s: Session, log: EventLog, run: Run, new: str, action: str, reason: str | None = None
) -> bool:
    """Change a run's state if RUN_MOVES allows it for this action; log it. True if moved."""
    old = RunState(run.state)
    target = RunState(new)
    if old is target or not run_move_allowed(action, old, target):
        return False
    log.add(s, run_id=run.id, old_state=old.value, new_state=target.value, reason=reason)
    run.state = target.value
    run.finished_at = (
        utcnow() if target in (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED) else None
    )
    s.add(run)
    return True


def move_task(
    s: Session, log: EventLog, task: Task, new: TaskState, action: str, reason: str
) -> None:
    """A transition hpcflow makes itself (retry, resolve, cancel): allowed only from the states
    HPCFLOW_MOVES lists for the action; logged; the task's reason set."""
    old = TaskState(task.state)
    if old not in HPCFLOW_MOVES[action]:
        raise ValueError(
            f"{task.step}[{task.index}]: {action} cannot move {old.value} to {new.value}"
        )
    log.add(
        s,
        run_id=task.run_id,
        step=task.step,
        index=task.index,
        old_state=old.value,
        new_state=new.value,
        reason=reason,
    )
    task.state, task.reason = new.value, reason
    s.add(task)
