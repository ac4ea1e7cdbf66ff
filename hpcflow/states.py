"""Task and run states as data: an enum and explicit mapping tables."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache


class TaskState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    CANCELLED = "CANCELLED"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    SKIPPED = "SKIPPED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    UNKNOWN = "UNKNOWN"
    LOST = "LOST"  # submitted, but neither sacct nor squeue knows it after the grace period
    RESOLVED = "RESOLVED"  # marked done by a person (`hpcflow resolve`)


class JobStatus(str, Enum):
    """Where a planned Slurm job is in hpcflow's submission (not Slurm's job state)."""

    PLANNED = "PLANNED"  # recorded, sbatch not yet called (or its answer not yet recorded)
    SUBMITTED = "SUBMITTED"  # Slurm gave it a job id
    NOT_SUBMITTED = "NOT_SUBMITTED"  # the run was aborted before its turn


class StepKind(str, Enum):
    """What a step is: the workflow's own, or one hpcflow adds to the run. Set where the
    step is made (compile/plan.py) and stored with it; never read back from its name."""

    USER = "step"  # a step of the workflow file
    CLEANUP = "cleanup"  # removes the run's scratch at the end (cleanup:)
    PULL = "pull"  # pulls the remote images into the site's cache first
    EXPAND = "expand"  # expands a dynamic foreach after its producers


class BatchState(str, Enum):
    """A campaign batch's submission state."""

    WAITING = "WAITING"
    SUBMITTING = "SUBMITTING"  # idempotency key recorded, run not yet recorded
    SUBMITTED = "SUBMITTED"


class EventKind(str, Enum):
    """What a tracker event records. RUN and TASK are state moves (old_state -> new_state);
    the others are notes about the run with no state of their own."""

    RUN = "RUN"
    TASK = "TASK"
    SUBMITTING = "SUBMITTING"  # a submission (or resubmission) starts
    SUBMITTED = "SUBMITTED"  # one job got its Slurm id
    NOTE = "NOTE"
    DEGRADED = "DEGRADED"  # sacct failed: states from squeue only
    RECOVERED = "RECOVERED"  # sacct answers again
    CLEANED = "CLEANED"  # the run directory was removed


MOVES = frozenset({EventKind.RUN, EventKind.TASK})


class DynamicState(str, Enum):
    """A dynamic foreach's expansion (docs/dynamic.md). Stored: waiting, then expanded,
    skipped or failed. Shown only, derived from its expand job's element while it waits:
    upstream_failed, cancelled (the expansion will never happen)."""

    WAITING = "waiting"
    EXPANDED = "expanded"
    SKIPPED = "skipped"  # nothing to fan out over, or a producer skipped itself
    FAILED = "failed"  # a producer's file cannot be expanded
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


DYNAMIC_STORED = frozenset(
    {DynamicState.WAITING, DynamicState.EXPANDED, DynamicState.SKIPPED, DynamicState.FAILED}
)
# An expansion happens once: waiting -> expanded | skipped | failed, and no move after.
DYNAMIC_MOVES: dict[DynamicState, frozenset[DynamicState]] = {
    DynamicState.WAITING: frozenset(
        {DynamicState.EXPANDED, DynamicState.SKIPPED, DynamicState.FAILED}
    ),
    **{d: frozenset() for d in DYNAMIC_STORED - {DynamicState.WAITING}},
}


def dynamic_move_allowed(old: DynamicState, new: DynamicState) -> bool:
    return new in DYNAMIC_MOVES.get(old, frozenset())


class RunState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_RUN_STATES = (RunState.PENDING.value, RunState.RUNNING.value)  # a run not yet ended

TERMINAL = frozenset(
    {
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.TIMEOUT,
        TaskState.OUT_OF_MEMORY,
        TaskState.CANCELLED,
        TaskState.NODE_FAIL,
        TaskState.PREEMPTED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.LOST,
        TaskState.RESOLVED,
    }
)
SUCCESS = frozenset({TaskState.COMPLETED, TaskState.SKIPPED, TaskState.RESOLVED})
# Failures that `hpcflow retry` resubmits by default.
RETRYABLE = frozenset(
    {
        TaskState.FAILED,
        TaskState.TIMEOUT,
        TaskState.OUT_OF_MEMORY,
        TaskState.NODE_FAIL,
        TaskState.PREEMPTED,
        TaskState.LOST,
        TaskState.CANCELLED,
    }
)
# States hpcflow decided itself: what Slurm later says about the old job does not change them.
OWNED = frozenset({TaskState.RESOLVED, TaskState.LOST})

_ACTIVE = frozenset({TaskState.PENDING, TaskState.RUNNING})
_ENDS = TERMINAL | {TaskState.UNKNOWN}
# Task transitions observed from Slurm (refresh). Terminal -> PENDING/RUNNING is a requeue
# (Slurm runs the same job again: NODE_FAIL or PREEMPTED with --requeue, `scontrol requeue`).
SLURM_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset(_ENDS | {TaskState.RUNNING}) - OWNED,
    TaskState.RUNNING: frozenset(_ENDS | {TaskState.PENDING}) - OWNED,
    TaskState.UNKNOWN: frozenset(_ENDS | _ACTIVE) - OWNED,
    **{t: frozenset(_ACTIVE | _ENDS) - {t} - OWNED for t in TERMINAL - OWNED},
    **{t: frozenset() for t in OWNED},
}
# Transitions hpcflow makes itself: action -> the states it may start from.
HPCFLOW_MOVES: dict[str, frozenset[TaskState]] = {
    "retry": frozenset(RETRYABLE | {TaskState.UPSTREAM_FAILED, TaskState.COMPLETED}),
    "resolve": frozenset(TERMINAL - SUCCESS),
    "cancel": frozenset(_ACTIVE | {TaskState.UNKNOWN}),
    "lost": frozenset(_ACTIVE | {TaskState.UNKNOWN}),
    # the hpcflow-expand job ended well but the producers' files cannot be expanded
    "expand": frozenset({TaskState.COMPLETED}),
}


def slurm_move_allowed(old: TaskState, new: TaskState) -> bool:
    return old == new or new in SLURM_MOVES.get(old, frozenset())


def is_requeue(old: TaskState, new: TaskState) -> bool:
    """Slurm put a started or finished job back in the queue (or ran it again)."""
    return (new is TaskState.PENDING and old not in (TaskState.PENDING, TaskState.UNKNOWN)) or (
        old in TERMINAL and new is TaskState.RUNNING
    )


# Slurm's job state (sacct State, squeue %T, first word) -> task state. Anything not here is
# UNKNOWN, which is never terminal and never success.
SLURM_STATE: dict[str, TaskState] = {
    "PENDING": TaskState.PENDING,
    "CONFIGURING": TaskState.PENDING,
    "REQUEUED": TaskState.PENDING,  # back in the queue for another attempt
    "REQUEUE_FED": TaskState.PENDING,
    "REQUEUE_HOLD": TaskState.PENDING,
    "RESV_DEL_HOLD": TaskState.PENDING,
    "RUNNING": TaskState.RUNNING,
    "COMPLETING": TaskState.RUNNING,
    "SUSPENDED": TaskState.RUNNING,  # stopped but holds its allocation; resumes
    "STOPPED": TaskState.RUNNING,
    "SIGNALING": TaskState.RUNNING,
    "STAGE_OUT": TaskState.RUNNING,
    "RESIZING": TaskState.RUNNING,
    "COMPLETED": TaskState.COMPLETED,
    "FAILED": TaskState.FAILED,
    "BOOT_FAIL": TaskState.NODE_FAIL,
    "NODE_FAIL": TaskState.NODE_FAIL,
    "TIMEOUT": TaskState.TIMEOUT,
    "DEADLINE": TaskState.TIMEOUT,
    "OUT_OF_MEMORY": TaskState.OUT_OF_MEMORY,
    "CANCELLED": TaskState.CANCELLED,
    "REVOKED": TaskState.CANCELLED,
    "PREEMPTED": TaskState.PREEMPTED,
    "SPECIAL_EXIT": TaskState.FAILED,
}

DEPENDENCY_NEVER = "DependencyNeverSatisfied"


@lru_cache(maxsize=4096)  # pure, and called per element per refresh with few distinct args
def map_slurm_state(
    state: str, reason: str = "", started: bool = True, has_dependency: bool = False
) -> TaskState:
    """Map sacct/squeue's State (e.g. 'CANCELLED by 1000') plus reason to a task state.

    A job cancelled by Slurm itself because its dependency can never be met (we submit with
    --kill-on-invalid-dep=yes) shows plain 'CANCELLED' (no 'by <uid>'), never ran (NodeList
    'None assigned'; Start may still be set) and its Reason is 'Dependency' or 'None': that is
    UPSTREAM_FAILED, not a user's cancel.
    """
    word = state.split()[0].rstrip("+") if state.strip() else ""
    mapped = SLURM_STATE.get(word, TaskState.UNKNOWN)
    if mapped is TaskState.PENDING and reason.startswith(DEPENDENCY_NEVER):
        return TaskState.UPSTREAM_FAILED
    if (
        mapped is TaskState.CANCELLED
        and state.strip() == "CANCELLED"
        and not started
        and (has_dependency or reason.startswith("Dependency"))
    ):
        return TaskState.UPSTREAM_FAILED
    return mapped


_RUN_TERMINAL = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED})
# Run transitions. Derived ones (from task states) move between any states except out of a
# terminal one; only hpcflow's actions reopen a run: retry/resolve/escalation resubmit
# elements ("reopen"), and a refused submission cancels it ("abort").
RUN_MOVES: dict[str, dict[RunState, frozenset[RunState]]] = {
    "derive": {
        RunState.PENDING: frozenset(RunState) - {RunState.PENDING},
        RunState.RUNNING: frozenset(RunState) - {RunState.RUNNING, RunState.PENDING},
        **{t: frozenset() for t in _RUN_TERMINAL},
    },
    "reopen": {st: frozenset({RunState.PENDING}) for st in RunState},
    "abort": {RunState.PENDING: frozenset({RunState.CANCELLED})},
    "cancel": {st: frozenset(_RUN_TERMINAL) for st in (RunState.PENDING, RunState.RUNNING)},
    # `resolve` of the last failed element that nothing waits for: the run has succeeded
    "resolve": {RunState.FAILED: frozenset({RunState.COMPLETED})},
}


def run_move_allowed(action: str, old: RunState, new: RunState) -> bool:
    return new in RUN_MOVES[action].get(old, frozenset())


def run_state(task_states: list[TaskState], cancelled: bool = False) -> RunState:
    if not task_states:
        return RunState.PENDING
    if all(s in TERMINAL for s in task_states):
        if all(s in SUCCESS for s in task_states):
            return RunState.COMPLETED
        return RunState.CANCELLED if cancelled else RunState.FAILED
    if all(s is TaskState.PENDING for s in task_states):
        return RunState.PENDING
    return RunState.RUNNING
