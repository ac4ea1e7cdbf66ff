"""A campaign as the tracker has it: its row, its batches and their runs' elements, read
into the records hpcflow/facts.py derives progress from. One reader for every face
(`campaign status`, ticks and their notices, the dashboard and /api/campaigns)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hpcflow.facts import (
    BatchFacts,
    CampaignProgress,
    ElementFacts,
    campaign_progress,
    run_state_value,
    task_state,
)
from hpcflow.states import BatchState
from hpcflow.store import codec


@dataclass(frozen=True)
class CampaignInfo:
    name: str
    file: str
    created_at: datetime | None
    backoff_until: datetime | None
    note: str | None
    event_axis: str
    retry_failed: int


@dataclass(frozen=True)
class BatchRecord:
    facts: BatchFacts
    n_events: int
    run_state: str | None  # as stored (None: no run)
    submitted_at: datetime | None
    note: str | None
    resources: Any


_json = codec.json_value
utc = codec.utc


def names(conn: sqlite3.Connection) -> list[str]:
    return [n for (n,) in conn.execute("SELECT name FROM campaign ORDER BY name")]


def info(conn: sqlite3.Connection, name: str) -> CampaignInfo | None:
    row = conn.execute(
        "SELECT name, file, created_at, backoff_until, note, event_axis, retry_failed "
        "FROM campaign WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return CampaignInfo(
        row[0], row[1], utc(row[2]), utc(row[3]), row[4], row[5] or "event", int(row[6] or 0),
    )  # fmt: skip


def batches(conn: sqlite3.Connection, name: str) -> list[BatchRecord]:
    """Its batches in order, each with its run's state (a LEFT JOIN: one statement)."""
    out = []
    for index, events, n, state, run_id, retries, submitted, note, res, run_state in conn.execute(
        'SELECT b."index", b.events, b.n_events, b.state, b.run_id, b.retries, b.submitted_at, '
        "b.note, b.resources, r.state FROM batch b LEFT JOIN run r ON r.id = b.run_id "
        'WHERE b.campaign = ? ORDER BY b."index"',
        (name,),
    ):
        facts = BatchFacts(index, list(_json(events) or []), BatchState(state), run_id,
                           run_state_value(run_state), int(retries or 0))  # fmt: skip
        out.append(BatchRecord(facts, n, run_state, utc(submitted), note, _json(res)))
    return out


def elements(conn: sqlite3.Connection, run_ids: list[str]) -> dict[str, list[ElementFacts]]:
    """The elements of these runs (step, state, item), by run id."""
    out: dict[str, list[ElementFacts]] = {r: [] for r in run_ids}
    for i in range(0, len(run_ids), 500):  # under SQLite's bound-parameter limit
        part = run_ids[i : i + 500]
        for run_id, step, state, item in conn.execute(
            f"SELECT run_id, step, state, item FROM task WHERE run_id IN "
            f"({', '.join('?' * len(part))})",
            tuple(part),
        ):
            out[run_id].append(ElementFacts(step, task_state(state), _json(item) or {}))
    return out


def element_counts(conn: sqlite3.Connection, run_id: str) -> dict[str, int]:
    return dict(
        conn.execute("SELECT state, count(*) FROM task WHERE run_id = ? GROUP BY state", (run_id,))
    )


def progress(
    conn: sqlite3.Connection, name: str
) -> tuple[CampaignInfo, list[BatchRecord], CampaignProgress]:
    """A campaign's row, batches and progress (``facts.campaign_progress``); KeyError when
    the tracker has no such campaign."""
    inf = info(conn, name)
    if inf is None:
        raise KeyError(name)
    bs = batches(conn, name)
    els = elements(conn, [b.facts.run_id for b in bs if b.facts.run_id])
    return inf, bs, campaign_progress([b.facts for b in bs], els, inf.event_axis, inf.retry_failed)
