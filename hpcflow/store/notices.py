"""The notices' side of the store (docs/notify.md): what a run's end says, which runs have
ended with targets, the last digest a campaign sent, and the queue of notices itself."""

from __future__ import annotations

from typing import Any

from hpcflow.facts import ENDED_RUN, run_state_value
from hpcflow.store.codec import dbapi, json_value
from hpcflow.store.handles import Handle
from hpcflow.store.reports import counts_per_step, failure_counts


def run_end(db: Handle, run_id: str, groups: int) -> dict[str, Any]:
    """A run's state, workflow, label, end time, elements per step and state, and its
    largest ``groups`` failure groups."""
    conn = dbapi(db)
    state, workflow, label, finished = conn.execute(
        "SELECT state, workflow, label, finished_at FROM run WHERE id = ?", (run_id,)
    ).fetchone()
    failures = [
        {
            "step": step,
            "state": st,
            "exit_code": code,
            "reason": reason,
            "count": n,
            "first_index": first,
        }  # fmt: skip
        for step, st, code, reason, n, first in failure_counts(conn, run_id, groups)
    ]
    return {"workflow": workflow, "label": label, "state": state,
            "finished_at": str(finished) if finished else None,
            "counts": counts_per_step(conn, run_id), "failures": failures}  # fmt: skip


def end_targets(db: Handle, run_id: str) -> list[dict[str, Any]]:
    """The notify targets of a run that has ended (none while it runs, or without any)."""
    row = dbapi(db).execute("SELECT state, notify FROM run WHERE id = ?", (run_id,)).fetchone()
    if row is None or run_state_value(row[0]) not in ENDED_RUN:
        return []
    return list(json_value(row[1]) or [])  # SQLAlchemy stores a JSON None as 'null'


def last_payload(db: Handle, key_prefix: str) -> dict[str, Any] | None:
    """The payload of the newest notice whose key starts with ``key_prefix``."""
    like = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    row = (
        dbapi(db)
        .execute(
            "SELECT payload FROM notice WHERE key LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT 1",
            (like,),
        )
        .fetchone()
    )
    return None if row is None else dict(json_value(row[0]) or {})


def queued(db: Handle, key: str) -> bool:
    return dbapi(db).execute("SELECT 1 FROM notice WHERE key = ?", (key,)).fetchone() is not None


def pending(db: Handle, max_attempts: int) -> list[int]:
    """Notices not delivered yet and not parked, oldest first."""
    return [
        nid
        for (nid,) in dbapi(db).execute(
            "SELECT id FROM notice WHERE delivered_at IS NULL AND attempts < ? ORDER BY id",
            (max_attempts,),
        )
    ]
