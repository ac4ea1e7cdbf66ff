"""Run events: rows in the tracker and JSON lines in the run directory (events.jsonl)."""

from __future__ import annotations

import contextlib
import json
import logging
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from hpcflow.runners.base import Runner
from hpcflow.states import (
    HPCFLOW_MOVES,
    MOVES,
    EventKind,
    RunState,
    TaskState,
    run_move_allowed,
)
from hpcflow.store import history
from hpcflow.store.db import Event, Run, Session, Task, utcnow

log = logging.getLogger(__name__)


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def event_json(e: Event | dict[str, Any]) -> dict[str, Any]:
    """One event as `history --json` and events.jsonl show it. ``new_state`` of a note is its
    kind, as before kinds had a column of their own."""
    d = e if isinstance(e, dict) else e.model_dump()
    kind = EventKind(d["kind"])
    return {
        "time": d["time"].strftime(_TIME_FORMAT) if d.get("time") else None,
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


MOVE_COLUMNS = ("run_id", "step", "index", "old_state", "new_state", "slurm_job_id",
                "exit_code", "reason")  # fmt: skip


def _js(v: str | None) -> str:
    return "null" if v is None else encode_basestring_ascii(v)


def move_lines(moves: list[tuple[Any, ...]], time: str) -> list[tuple[str, str]]:
    """(run id, events.jsonl line) of element moves (MOVE_COLUMNS tuples) at ``time``: the
    same text as ``json.dumps(event_json(...))``, formatted here because a refresh may publish
    100,000 at once; the few distinct run, step and state strings are escaped once."""
    head = f'{{"time": "{time}", "run_id": '
    cache: dict[str | None, str] = {}

    def once(v: str | None) -> str:
        got = cache.get(v)
        if got is None:
            got = cache[v] = _js(v)
        return got

    kind = f'"kind": "{EventKind.TASK.value}"'
    return [
        (run_id, f'{head}{once(run_id)}, {kind}, "step": {once(step)}, "index": '
         f'{"null" if index is None else int(index)}, "old_state": {once(old)}, '
         f'"new_state": {once(new)}, "slurm_job_id": {_js(sid)}, "exit_code": '
         f'{"null" if code is None else int(code)}, "reason": {_js(reason)}}}')
        for run_id, step, index, old, new, sid, code, reason in moves
    ]  # fmt: skip


PUBLISH_LINES = 5000


class EventLog:
    """Collects events during a transaction; ``publish`` appends them to each run's
    events.jsonl once the transaction has committed (the database is the source of truth).
    Held as the lines to write, not as objects: a refresh may record 100,000 at once."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []  # (run id, events.jsonl line)

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
        self.lines.append((e.run_id, json.dumps(event_json(d))))
        return e

    def add_many(self, s: Session, moves: list[tuple[Any, ...]]) -> None:
        """Element state moves in bulk (one executemany, no ORM objects: a refresh may record
        100,000 at once); each a tuple of MOVE_COLUMNS."""
        if not moves:
            return
        now = utcnow()
        kind = EventKind.TASK.value
        history.insert_moves(s, MOVE_COLUMNS, moves, now.strftime("%Y-%m-%d %H:%M:%S.%f"))
        if log.isEnabledFor(logging.DEBUG):
            for m in moves:
                _log_event(dict(zip(MOVE_COLUMNS, m)) | {"kind": kind})
        self.lines.extend(move_lines(moves, now.strftime(_TIME_FORMAT)))

    def publish(self, runner: Runner, run_dirs: dict[str, str]) -> None:
        by_run: dict[str, list[str]] = {}
        for run_id, line in self.lines:
            by_run.setdefault(run_id, []).append(line)
        for run_id, lines in by_run.items():
            d = run_dirs.get(run_id)
            if not d:
                continue
            # a cleaned run directory loses nothing: the database has every event
            with contextlib.suppress(OSError):
                for i in range(0, len(lines), PUBLISH_LINES):  # not one 30 MB string
                    part = lines[i : i + PUBLISH_LINES]
                    runner.append_file(f"{d}/events.jsonl", "\n".join(part) + "\n")
        self.lines.clear()


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
