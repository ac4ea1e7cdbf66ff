"""The store's typed records that the refresh's pure halves work on (tracker/asking.py,
tracker/reconcile.py): an element as the tracker has it, read by store/tracked.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hpcflow.states import TaskState

Key = tuple[str, "int | None"]  # (slurm job id, array task id)
# sacct may lag slurmctld: a job it shows NODE_FAIL or PREEMPTED may already be requeued, which
# squeue (slurmctld itself) shows as PENDING; PENDING rows need squeue for their reason.
MAYBE_REQUEUED = frozenset({TaskState.PENDING, TaskState.NODE_FAIL, TaskState.PREEMPTED})
FIELDS = ("state", "exit_code", "start", "end", "node", "attempts", "reason")


# slots, not frozen: a frozen dataclass's __init__ costs ~9x (object.__setattr__ per field),
# and a refresh makes one Tracked, Observation and Change per unfinished element. They are
# treated as immutable all the same (``replace``).
@dataclass(slots=True)
class Tracked:
    """One element as the tracker has it, with what its job and step add."""

    id: int
    run_id: str
    step: str
    index: int
    slurm_job_id: str
    task_id: int | None
    state: TaskState
    attempts: int = 0
    exit_code: int | None = None
    start: str | None = None
    end: str | None = None
    node: str | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    has_dependency: bool = False
    compensation: bool = False  # every dependency of its job is afternotok
    may_skip: bool = False  # the step's elements may skip themselves (when:)
    reads_result: bool = False  # its result.json decides when the task ends (packed)
    absent: bool = False  # asked by id at the last refresh, neither sacct nor squeue knew it

    @property
    def key(self) -> Key:
        return (self.slurm_job_id, self.task_id)

    def row(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in FIELDS} | {"state": self.state.value}
