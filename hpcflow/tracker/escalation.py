"""Which ended elements a step's retry.on_oom / retry.on_timeout resubmits: the one
definition of "an escalation is due", pure, with no import beyond the states (the fast
`status` path asks it too, without SQLAlchemy or pydantic)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from hpcflow.states import TaskState

ESCALATIONS = (
    (TaskState.OUT_OF_MEMORY, "on_oom", "mem_factor"),
    (TaskState.TIMEOUT, "on_timeout", "time_factor"),
)
ESCALATING_STATES = tuple(st for st, _, _ in ESCALATIONS)


@dataclass(frozen=True)
class Ended:
    """An element that ran out of memory or time, as the escalation decision needs it."""

    id: int
    step: str
    state: TaskState
    attempts: int  # times Slurm started it


def escalations(
    ended: Iterable[Ended], policy: dict[str, dict]
) -> dict[tuple[str, str, float], list[int]]:
    """Which elements a step's retry.on_oom / retry.on_timeout resubmits, and how:
    (policy key, factor name, factor) -> task ids. An element escalates while it has
    attempts left (``retry.attempts``, default 1: none); other states never escalate."""
    out: dict[tuple[str, str, float], list[int]] = {}
    for t in ended:
        p = policy.get(t.step) or {}
        for st, key, factor in ESCALATIONS:
            rule = p.get(key)
            if t.state == st and rule and t.attempts < p.get("attempts", 1):
                out.setdefault((key, factor, float(rule[factor])), []).append(t.id)
    return out


# what the decision reads, the same through sqlite3 (the fast status) and SQLAlchemy (sync)
ENDED_SQL = (
    "SELECT id, step, state, attempts FROM task WHERE run_id = ? AND state IN "
    f"({', '.join('?' * len(ESCALATING_STATES))})"
)
POLICY_SQL = "SELECT name, policy FROM step WHERE run_id = ?"


def ended_args(run_id: str) -> tuple[str, ...]:
    return (run_id, *(st.value for st in ESCALATING_STATES))


def from_rows(
    ended: Iterable[tuple], policies: Iterable[tuple]
) -> dict[tuple[str, str, float], list[int]]:
    """``escalations`` over the rows of ENDED_SQL and POLICY_SQL (a JSON column may come
    back as text or decoded)."""
    policy = {n: (json.loads(p) if isinstance(p, str) else p) or {} for n, p in policies}
    return escalations((Ended(i, s, TaskState(st), n or 0) for i, s, st, n in ended), policy)
