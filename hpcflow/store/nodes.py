"""What the node-fault decision (hpcflow/faults.py) reads, through a DB-API connection (the
sync and the fast `status` alike; sqlite3 only). What it records (the nodes a run avoids, an
element's node retries) is written in a store session: store/rows.py.

Element start and end times are Slurm's, in the cluster's local time (as sacct prints
them); ``now`` is given in the same clock."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from hpcflow.facts import ENDED_RUN, run_state_value
from hpcflow.faults import (
    NODE_FAULT_VALUES,
    BlackHoleRule,
    Faulted,
    NodeDecision,
    NodeTally,
    decide,
    new_suspects,
)
from hpcflow.states import TaskState
from hpcflow.store import codec

_ELAPSED = '(julianday(coalesce("end", ?)) - julianday(start)) * 86400'
_Q = ", ".join("?" * len(NODE_FAULT_VALUES))
TALLY_SQL = (
    f'SELECT node, sum(state IN ({_Q}) AND "end" IS NOT NULL AND {_ELAPSED} <= ?), '
    f"sum(state = ? OR (start IS NOT NULL AND {_ELAPSED} > ?)) "
    "FROM task WHERE run_id = ? AND node IS NOT NULL AND start IS NOT NULL GROUP BY node"
)
CODES_SQL = (  # the fast failures by node and exit code: how they failed
    "SELECT node, exit_code, count(*) FROM task WHERE run_id = ? AND node IS NOT NULL "
    f'AND start IS NOT NULL AND "end" IS NOT NULL AND state IN ({_Q}) AND {_ELAPSED} <= ? '
    "GROUP BY node, exit_code"
)
# `+run_id`: through the state index (the few failed elements of the tracker), not the
# run_id one (every element of the run: 60 ms against 1 ms at 100,000 elements)
FAULTED_SQL = (
    f"SELECT id, state, node, {_ELAPSED}, node_retries FROM task "
    f"WHERE +run_id = ? AND state IN ({_Q})"
)


def local_now() -> str:
    """Now, in the cluster's local time as sacct prints it (the login node's clock)."""
    return datetime.now().strftime("%Y-%m-%dT%H:%M:%S")


def policy(conn: sqlite3.Connection, run_id: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The run's fault policy (None: a run from before schema 11) and the nodes it avoids."""
    row = conn.execute("SELECT faults, nodes_avoided FROM run WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None, []
    avoided = codec.json_value(row[1]) or []
    return codec.json_value(row[0]), [a["node"] for a in avoided]


def tallies(
    conn: sqlite3.Connection, run_id: str, rule: BlackHoleRule, now: str
) -> list[NodeTally]:
    w = rule.within_s
    args = (*NODE_FAULT_VALUES, now, w, TaskState.COMPLETED.value, now, w, run_id)
    codes: dict[str, list[tuple[int | None, int]]] = {}
    for node, code, k in conn.execute(CODES_SQL, (run_id, *NODE_FAULT_VALUES, now, w)):
        codes.setdefault(node, []).append((code, int(k)))
    return [
        NodeTally(n, int(f or 0), int(x or 0), tuple(sorted(codes.get(n, []), key=str)))
        for n, f, x in conn.execute(TALLY_SQL, args)
    ]


def faulted(conn: sqlite3.Connection, run_id: str, within_s: int | None, now: str) -> list[Faulted]:
    """The run's elements that ended in a state a node's fault may explain."""
    rows = conn.execute(FAULTED_SQL, (now, run_id, *NODE_FAULT_VALUES)).fetchall()
    return [
        Faulted(i, TaskState(st), node,
                within_s is not None and el is not None and el <= within_s, int(n or 0))
        for i, st, node, el, n in rows
    ]  # fmt: skip


def decision(conn: sqlite3.Connection, run_id: str, now: str | None = None) -> NodeDecision | None:
    """``faults.decide`` over the run's evidence; None for a run with no fault policy."""
    pol, avoided = policy(conn, run_id)
    if not pol:
        return None
    rule = BlackHoleRule.of(pol.get("black_hole"))
    now = now or local_now()
    fl = faulted(conn, run_id, rule.within_s if rule else None, now)
    if not fl:  # no element failed in a way a node may explain: nothing to find or retry
        return NodeDecision([], {})
    # A run that ended was decided without a new black hole (its state waits for what a
    # node's fault resubmits: store/runstate), and its evidence no longer changes: its
    # tallies are not read again (a GROUP BY over the whole run).
    ended = run_state_value(_state(conn, run_id)) in ENDED_RUN
    look = rule is not None and not ended and new_suspects(fl, avoided, rule)
    ts = tallies(conn, run_id, rule, now) if look and rule else []
    return decide(ts, fl, avoided, rule, int(pol.get("retries") or 0))


def _state(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT state FROM run WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else row[0]


def pending_job_ids(conn: sqlite3.Connection, run_id: str) -> list[str]:
    """Slurm ids of the run's jobs with elements not started yet."""
    q = ("SELECT DISTINCT j.slurm_job_id FROM job j JOIN task t ON t.job_id = j.id "
         "WHERE j.run_id = ? AND j.slurm_job_id IS NOT NULL AND t.state = ?")  # fmt: skip
    return [r[0] for r in conn.execute(q, (run_id, TaskState.PENDING.value))]


def run_targets(conn: sqlite3.Connection, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The run's site file and its notify targets (those its run_end goes to)."""
    row = conn.execute("SELECT site, notify FROM run WHERE id = ?", (run_id,)).fetchone()
    return ("", []) if row is None else (row[0], list(codec.json_value(row[1]) or []))
