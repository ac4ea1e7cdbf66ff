"""Which ended elements a step's retry.on_oom / retry.on_timeout resubmits: the one
definition of "an escalation is due", pure, with no import beyond the states (the fast
`status` path asks it too, without SQLAlchemy or pydantic)."""

from __future__ import annotations

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
