"""Facts derived from the tracker's records, each defined once, as pure functions over
states and plain records (docs/architecture.md, "One truth"). Every face (status, runs, the
dashboard and its API, the report, notices, campaign status and ticks) asks these; none
restates them in its own SQL or its own list of states. tests/test_faces_agree.py checks
that the faces give the same answers over the same databases."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from hpcflow.states import (
    ACTIVE_RUN_STATES,
    SUCCESS,
    TERMINAL,
    BatchState,
    DynamicState,
    RunState,
    TaskState,
    run_state,
)

__all__ = [
    "ACTIVE_RUN",
    "ENDED_RUN",
    "FAILED",
    "MEASURED",
    "UNFINISHED",
    "BatchFacts",
    "Ended",
    "escalations",
    "CampaignProgress",
    "ElementFacts",
    "EventState",
    "campaign_progress",
    "derive_run_state",
    "dynamic_shown",
    "event_state",
    "expansion_due",
    "expansion_open",
    "failed_count",
    "projection",
    "run_state",
]

# An element that ended and did not succeed: what "failed" means on every face (counts,
# failure groups, failed events, notices). PREEMPTED, CANCELLED and UPSTREAM_FAILED are
# failures; UNKNOWN is not (it has not ended: the next refresh may still say COMPLETED).
FAILED: frozenset[TaskState] = frozenset(TERMINAL - SUCCESS)
# An element that has not ended yet (UNKNOWN too: never success, never a failure).
UNFINISHED: frozenset[TaskState] = frozenset(TaskState) - TERMINAL
# A run that has not ended.
ACTIVE_RUN: frozenset[RunState] = frozenset(RunState(v) for v in ACTIVE_RUN_STATES)
ENDED_RUN: frozenset[RunState] = frozenset(RunState) - ACTIVE_RUN
# Elements whose elapsed time and use say what the work needs (usage, efficiency,
# right-sizing): they ran to an end of their own. Not a "failed" set: SKIPPED or CANCELLED
# elements say nothing about what the work needs.
MEASURED: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.OUT_OF_MEMORY, TaskState.TIMEOUT}
)

# the same sets as stored values, for an SQL IN (...) in the store
FAILED_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in FAILED))
UNFINISHED_VALUES: tuple[str, ...] = tuple(s.value for s in TaskState if s in UNFINISHED)


def task_state(value: str | None) -> TaskState:
    """A stored state as the enum; a value this hpcflow does not know is UNKNOWN."""
    try:
        return TaskState(value)
    except ValueError:
        return TaskState.UNKNOWN


def run_state_value(value: str | None) -> RunState | None:
    """A stored run state as the enum; None for a value this hpcflow does not know."""
    try:
        return RunState(value)
    except ValueError:
        return None


def failed_count(counts: Mapping[str, int]) -> int:
    """Elements failed, from counts per state (as status and the API give them)."""
    return sum(n for st, n in counts.items() if task_state(st) in FAILED)


class EventState(str, Enum):
    """A campaign event, from the elements about it in its batch's run."""

    DONE = "done"  # every element about it succeeded
    FAILED = "failed"  # one ended badly and its batch will not be retried again, or cancelled
    RUNNING = "running"  # its batch is submitted and it is neither
    PENDING = "pending"  # its batch has not been submitted yet


def event_state(states: Sequence[TaskState], run: RunState | str, gave_up: bool) -> EventState:
    """One event of a submitted batch: done when all its elements succeeded; failed when one
    ended badly and the batch will not be retried again, or when its run was cancelled; else
    running."""
    if states and all(s in SUCCESS for s in states):
        return EventState.DONE
    if gave_up and any(s in FAILED for s in states):
        return EventState.FAILED
    if RunState(run) is RunState.CANCELLED:
        return EventState.FAILED
    return EventState.RUNNING


@dataclass(frozen=True)
class ElementFacts:
    """An element as the derived facts need it."""

    step: str
    state: TaskState
    item: Mapping[str, Any]


@dataclass(frozen=True)
class BatchFacts:
    """A campaign batch as the derived facts need it."""

    index: int
    events: Sequence[Any]
    state: BatchState
    run_id: str | None = None
    run_state: RunState | None = None  # None: no run recorded (yet)
    retries: int = 0


@dataclass
class CampaignProgress:
    """Every event's state, their counts, and the failed events with what failed."""

    state: dict[str, EventState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.counts.get("running") and not self.counts.get("pending")


def campaign_progress(
    batches: Iterable[BatchFacts],
    elements: Mapping[str, Sequence[ElementFacts]],
    axis: str,
    retry_failed: int,
) -> CampaignProgress:
    """A campaign's events from its batches and their runs' elements (``elements`` by run
    id). An event is about the elements whose item has its value on the event ``axis``. A
    batch not submitted, or submitted without a run, has its events pending. A batch gives
    up when its run has ended and its retries (``retry_failed``) are spent."""
    out = CampaignProgress(counts={s.value: 0 for s in EventState})
    for b in batches:
        if b.state is not BatchState.SUBMITTED or b.run_state is None or b.run_id is None:
            for e in b.events:
                out.state[str(e)] = EventState.PENDING
            continue
        per: dict[str, list[ElementFacts]] = {}
        for el in elements.get(b.run_id, ()):
            if axis in el.item:
                per.setdefault(str(el.item[axis]), []).append(el)
        gave_up = b.run_state not in ACTIVE_RUN and b.retries >= retry_failed
        for e in b.events:
            els = per.get(str(e), [])
            st = event_state([el.state for el in els], b.run_state, gave_up)
            out.state[str(e)] = st
            if st is EventState.FAILED:
                bad = [el for el in els if el.state in FAILED]
                out.failed.append(
                    {
                        "event": e,
                        "batch": b.index,
                        "run_id": b.run_id,
                        "steps": sorted({el.step for el in bad}),
                        "states": sorted({el.state.value for el in bad})
                        or [TaskState.CANCELLED.value],
                    }
                )
    for st in out.state.values():
        out.counts[st.value] += 1
    return out


def projection(
    counts: Mapping[str, int], first_submitted: datetime | None, now: datetime
) -> tuple[float, datetime | None]:
    """Events done per hour since the first batch was submitted, and when the events still
    running or pending would be done at that rate (None: no rate, or nothing left)."""
    hours = (now - first_submitted).total_seconds() / 3600 if first_submitted else 0.0
    done = counts.get(EventState.DONE.value, 0)
    rate = done / hours if hours > 0 and done else 0.0
    left = counts.get(EventState.RUNNING.value, 0) + counts.get(EventState.PENDING.value, 0)
    return rate, (now + timedelta(hours=left / rate) if rate and left else None)


# the expand job's element in one of these: its producers failed, or it was cancelled, so
# the dynamic foreach will never be expanded
_TAKEN_DOWN = frozenset({TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})


def dynamic_state(value: Any) -> DynamicState:
    """A stored expansion state as the enum (a step stored before any: waiting)."""
    try:
        return DynamicState(value or DynamicState.WAITING.value)
    except ValueError:
        return DynamicState.WAITING


def expansion_open(stored: DynamicState, expander: Iterable[TaskState]) -> bool:
    """The dynamic foreach may still be expanded: it waits, and its expand job was not taken
    down. While one is open its run has not ended."""
    return stored is DynamicState.WAITING and not any(s in _TAKEN_DOWN for s in expander)


def expansion_due(stored: DynamicState, expander: Sequence[TaskState]) -> bool:
    """An expansion for the next sync to do: open, and the expand job has ended."""
    return expansion_open(stored, expander) and any(s in TERMINAL for s in expander)


def dynamic_shown(stored: DynamicState, expander: Iterable[TaskState]) -> DynamicState:
    """What status shows of an expansion: the stored state, or while it waits, what took
    its expand job down."""
    if stored is not DynamicState.WAITING:
        return stored
    ex = set(expander)
    if TaskState.UPSTREAM_FAILED in ex:
        return DynamicState.UPSTREAM_FAILED
    if TaskState.CANCELLED in ex:
        return DynamicState.CANCELLED
    return stored


# Whether a sync is due for an ended element: its step's retry policy resubmits it.
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


def derive_run_state(
    current: str,
    states: Sequence[TaskState],
    cancelled: bool,
    submitting: bool,
    escalating: Callable[[], bool],
    expanding: Callable[[], bool],
) -> RunState:
    """A run's state from its elements' states (``states.run_state``), except: while its
    submission is unfinished it stays as it is (the submitter decides); while an escalation
    is due it runs (elements are about to be resubmitted); and a run that would end while a
    dynamic foreach may still be expanded runs (the next sync expands it). ``escalating``
    and ``expanding`` are asked only when they matter (each is a read)."""
    if submitting:
        return RunState(current)
    if escalating():
        return RunState.RUNNING
    new = run_state(list(states), cancelled)
    if new not in ACTIVE_RUN and expanding():
        return RunState.RUNNING
    return new
