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


def event_json(e: Event) -> dict[str, Any]:
    """One event as `history --json` and events.jsonl show it. ``new_state`` of a note is its
    kind, as before kinds had a column of their own."""
    kind = EventKind(e.kind)
    return {
        "time": e.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if e.time else None,
        "run_id": e.run_id,
        "kind": kind.value,
        "step": e.step,
        "index": e.index,
        "old_state": e.old_state,
        "new_state": e.new_state if kind in MOVES else kind.value,
        "slurm_job_id": e.slurm_job_id,
        "exit_code": e.exit_code,
        "reason": e.reason,
    }


class EventLog:
    """Collects events during a transaction; ``publish`` appends them to each run's
    events.jsonl once the transaction has committed (the database is the source of truth)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, s: Session, kind: EventKind | None = None, **fields: Any) -> Event:
        """Record one event: a state move (RUN without a step, else TASK) or, with ``kind``, a
        note. `-v` logs it: every state change the tracker decides, and why."""
        if kind is None:
            kind = EventKind.RUN if fields.get("step") is None else EventKind.TASK
        e = Event(kind=kind.value, **fields)
        if log.isEnabledFor(logging.DEBUG):
            where = e.run_id + (f" {e.step}[{e.index}]" if e.step is not None else "")
            log.debug(
                "tracker: %s: %s -> %s%s",
                where,
                e.old_state or "-",
                e.new_state or e.kind,
                f": {e.reason}" if e.reason else "",
            )
        s.add(e)
        self.events.append(e)
        return e

    def publish(self, runner: Runner, run_dirs: dict[str, str]) -> None:
        by_run: dict[str, list[str]] = {}
        for e in self.events:
            by_run.setdefault(e.run_id, []).append(json.dumps(event_json(e)))
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
