"""Reading the tracker with the standard library's sqlite3 alone: `status` when no refresh is
due needs no SQLAlchemy (whose import costs ~0.5 s per command). The status document is built
here for both paths: ``query.status_doc`` runs the same code on SQLAlchemy's connection."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from hpcflow.facts import dynamic_shown, dynamic_state, task_state
from hpcflow.facts import expansion_due as facts_expansion_due
from hpcflow.faults import retry_due
from hpcflow.node.jobtool import task_dir
from hpcflow.states import ACTIVE_RUN_STATES, TERMINAL
from hpcflow.store import codec, nodes
from hpcflow.store.dbfile import SCHEMA_VERSION, ro_connect
from hpcflow.store.dynamic import EXPAND_STEP, expansion_inputs
from hpcflow.store.escalation import escalatable
from hpcflow.util.jsonstream import LazyList

ACTIVE = ACTIVE_RUN_STATES
TERMINAL_TASK = frozenset(st.value for st in TERMINAL)
RUN_FIELDS = ("id", "workflow", "version", "namespace", "label", "site", "state", "run_dir",
              "submitted_at", "refreshed_at", "finished_at", "degraded",
              "nodes_avoided")  # fmt: skip
TASK_FIELDS = ("step", "\"index\"", "item", "state", "exit_code", "job_id", "task_id",
               "attempts", "start", "\"end\"", "node", "reason", "result", "outputs")  # fmt: skip


def default_db_path() -> Path:
    env = os.environ.get("HPCFLOW_DB")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(xdg) / "hpcflow" / "tracker.db"


def connect_ro(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when the full path must open it: a missing file,
    another schema version, or a file whose owner or mode the full path refuses."""
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    conn = ro_connect(path)
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        conn.close()
        return None
    return conn


_dt = codec.utc
_iso = codec.iso
_json = codec.json_value


def run_header(run: Any) -> dict[str, Any]:
    """A run (a Run row, or anything with its fields) as status and runs print it."""
    return {
        "run_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "namespace": run.namespace,
        "label": run.label,
        "site": run.site,
        "state": run.state,
        "run_dir": run.run_dir,
        "submitted_at": _iso(run.submitted_at),
        "refreshed_at": _iso(run.refreshed_at),
        "finished_at": _iso(run.finished_at),
        "degraded": run.degraded,
        # black holes the run keeps off (docs/faults.md): [{node, why, at}]
        "nodes_avoided": _json(getattr(run, "nodes_avoided", None)) or [],
        "steps": {},
    }


class _Row:
    """A result row with its columns as attributes."""

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]):
        self.__dict__.update(zip((n.strip('"') for n in names), values))

    def __getattr__(self, name: str) -> Any:  # only reached for a column not selected
        raise AttributeError(name)


def _rows(
    cur: sqlite3.Cursor, sql: str, params: tuple[Any, ...], names: tuple[str, ...]
) -> list[_Row]:
    cur.execute(sql, params)
    return [_Row(names, r) for r in cur.fetchall()]


def find_run(conn: sqlite3.Connection, run_id: str) -> Any | None:
    """The run with this id, or the only one it is a prefix of; None otherwise."""
    cur = conn.cursor()
    cols = ", ".join(RUN_FIELDS)
    rows = _rows(cur, f"SELECT {cols} FROM run WHERE id = ?", (run_id,), RUN_FIELDS)
    if not rows:
        like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = _rows(
            cur, f"SELECT {cols} FROM run WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (like,), RUN_FIELDS
        )
    return rows[0] if len(rows) == 1 else None


def active_runs(conn: sqlite3.Connection) -> list[Any]:
    cols = ", ".join(RUN_FIELDS)
    sql = f"SELECT {cols} FROM run WHERE state IN (?, ?) ORDER BY submitted_at"
    return _rows(conn.cursor(), sql, ACTIVE, RUN_FIELDS)


def status_doc(conn: sqlite3.Connection, run: Any, with_tasks: bool = False) -> dict[str, Any]:
    """The run at a glance: counts per step (one GROUP BY). With tasks, every element as the
    tracker has it, with what it recorded when it ended (result.json, outputs.json, read once
    on that transition): no file is opened here."""
    cur = conn.cursor()
    step_cols = ("name", "role", "total", "pack", "parallel", "dynamic")
    sql = f"SELECT {', '.join(step_cols)} FROM step WHERE run_id = ? ORDER BY position"
    steps = _rows(cur, sql, (run.id,), step_cols)
    jobs = _rows(cur, "SELECT id, step, slurm_job_id FROM job WHERE run_id = ? ORDER BY id",
                 (run.id,), ("id", "step", "slurm_job_id"))  # fmt: skip
    cur.execute(
        "SELECT step, state, count(*) FROM task WHERE run_id = ? GROUP BY step, state", (run.id,)
    )
    states: dict[str, dict[str, int]] = {}
    for step, state, n in cur.fetchall():
        states.setdefault(step, {})[state] = n
    job_sid = {j.id: j.slurm_job_id for j in jobs}
    doc = run_header(run)
    for st in steps:
        entry: dict[str, Any] = {
            "role": st.role,
            "total": st.total,
            "states": states.get(st.name, {}),
            "slurm_jobs": [j.slurm_job_id for j in jobs if j.step == st.name and j.slurm_job_id],
        }
        if st.dynamic and (stored := _json(st.dynamic)):  # a static step's is JSON null
            entry["dynamic"] = dyn = dynamic_doc(stored, states.get(EXPAND_STEP, {}))
            if dyn["state"] != "expanded":
                entry["total"] = None  # not known: the expansion has not happened
        if st.pack > 1:
            entry["pack"] = {"size": st.pack, "parallel": st.parallel}
        if with_tasks:
            entry["tasks"] = LazyList(partial(_task_docs, conn, run, st.name, job_sid))
        doc["steps"][st.name] = entry
    return doc


def dynamic_doc(stored: dict[str, Any], expander: dict[str, int]) -> dict[str, Any]:
    """A deferred step's expansion as status shows it: waiting, expanded, skipped or failed,
    and, while it waits, what became of the expand job (a failed producer, a cancel)."""
    shown = dynamic_shown(
        dynamic_state(stored.get("state")), [task_state(st) for st, n in expander.items() if n]
    )
    return {
        "state": shown.value,
        "producers": stored.get("producers", []),
        "reason": stored.get("reason"),
    }


def dynamic_label(d: dict[str, Any]) -> str:
    """A deferred step that is not laid out (yet): why."""
    producers = ", ".join(d["producers"])
    return {
        "waiting": f"waiting for {producers}",
        "upstream_failed": f"not expanded: {producers} did not succeed",
        "cancelled": "not expanded: cancelled",
        "skipped": f"SKIPPED: {d.get('reason') or 'nothing to fan out over'}",
        "failed": f"expansion FAILED: {d.get('reason') or ''}",
    }.get(d["state"], d["state"])


def expansion_due(conn: sqlite3.Connection, run_id: str) -> bool:
    """An expansion for the next sync to do (``facts.expansion_due``)."""
    stored, expander = expansion_inputs(conn, run_id)
    return any(facts_expansion_due(st, expander) for st in stored)


def _task_docs(
    conn: sqlite3.Connection, run: Any, step: str, job_sid: dict[int, str | None]
) -> Iterator[Any]:
    """A step's elements, read from the cursor as they are written (a LazyList): never the
    whole run in memory."""
    sql = (
        f'SELECT {", ".join(TASK_FIELDS)} FROM task WHERE run_id = ? AND step = ? ORDER BY "index"'
    )
    cur = conn.cursor()
    try:
        cur.execute(sql, (run.id, step))
        while rows := cur.fetchmany(1000):
            for r in rows:
                t = _Row(TASK_FIELDS, r)
                yield task_doc(t, job_sid[t.job_id], run.run_dir)
    finally:
        cur.close()


def task_doc(t: Any, slurm_job_id: str | None, run_dir: str | None = None) -> dict[str, Any]:
    """One element as `status --json --tasks` prints it."""
    doc = {
        "index": t.index,
        "item": _json(t.item),
        "state": t.state,
        "exit_code": t.exit_code,
        "slurm_job_id": f"{slurm_job_id}_{t.task_id}" if t.task_id is not None else slurm_job_id,
        "attempts": t.attempts,
        "start": t.start,
        "end": t.end,
        "node": t.node,
        "reason": t.reason,
    }
    if run_dir is not None and t.state in TERMINAL_TASK:
        doc |= {"task_dir": task_dir(run_dir, t.step, t.index), "result": _json(t.result),
                "outputs": _json(t.outputs)}  # fmt: skip
    return doc


def sync_needed(conn: sqlite3.Connection, runs: list[Any], now: datetime | None = None) -> bool:
    """Would a sync do anything for these runs: a refresh due under the per-site poll budget
    (docs/tracker.md), a submission to resume, or an escalation to consider?"""
    now = now or datetime.now(timezone.utc)
    cur = conn.cursor()
    for run in runs:
        cur.execute("SELECT 1 FROM job WHERE run_id = ? AND status = 'PLANNED' LIMIT 1", (run.id,))
        if cur.fetchone():
            return True
        if escalatable(conn, run.id):  # what its retry policy resubmits, not any OOM
            return True
        if retry_due(nodes.decision(conn, run.id)):  # a node's fault to resubmit
            return True
        if expansion_due(conn, run.id):
            return True
        if run.state not in ACTIVE:
            continue
        cur.execute("SELECT poll_seconds FROM run WHERE id = ?", (run.id,))
        poll = cur.fetchone()[0]
        cur.execute(
            "SELECT max(refreshed_at) FROM run WHERE site = ? AND state IN (?, ?)",
            (run.site, *ACTIVE),
        )
        last = _dt(cur.fetchone()[0])
        if poll is None or last is None or (now - last).total_seconds() >= poll:
            return True
    return False


@contextmanager
def status_lite(
    db_path: str | None, run_id: str | None, with_tasks: bool, sync: bool
) -> Iterator[list[dict[str, Any]] | None]:
    """`status` read with sqlite3 alone, when no sync is due; None when the full path must
    run: a sync due, no database yet or one of another schema, an unknown run id (its
    error message comes from there). The connection stays open while the documents are used:
    their elements are read as they are written."""
    path = Path(db_path).expanduser() if db_path else default_db_path()
    conn = connect_ro(path)
    if conn is None:
        yield None
        return
    try:
        runs = [find_run(conn, run_id)] if run_id else active_runs(conn)
        if any(r is None for r in runs) or (sync and sync_needed(conn, runs)):
            yield None
            return
        yield [status_doc(conn, r, with_tasks) for r in runs]
    finally:
        conn.close()
