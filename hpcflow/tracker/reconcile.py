"""What a refresh concludes, as pure functions: tracked elements + what sacct and squeue said
-> the changes to record. No I/O; ``refresh.py`` gathers before and applies after.

What to ask Slurm in the first place is decided in ``asking.py``.

The rules, each with a table-driven test in tests/test_reconcile.py:
- sacct (slurmdbd) is the record; squeue (slurmctld) wins for rows sacct may show stale:
  PENDING (for the reason) and NODE_FAIL/PREEMPTED (possibly requeued already).
- A row sacct still shows PENDING after hpcflow saw the element start is sacct lagging, not a
  requeue, unless squeue says so.
- SIGKILL without the .batch step row yet: out of memory or not is unknown; wait (120 s).
- An ended meta record ('A_[0-5]' CANCELLED) without the tasks' own rows: slurmdbd may not
  have them yet; wait (120 s) before it decides, since finished elements are not asked again.
- Not in sacct or squeue: LOST after ``lost_after`` seconds, never while degraded.
- Cancelled by Slurm because a dependency can never be met (--kill-on-invalid-dep) is
  UPSTREAM_FAILED; for a compensation step (every dependency afternotok) that means "not
  needed": SKIPPED.
- COMPLETED in a step whose elements may skip themselves: the element's marker decides, read
  once, on the transition (``check_skip``).
- A packed task (several elements per array task) that ends: each element's own result.json
  decides, read once, on the transition, when it was written by this task; an element without
  one had not finished and takes the task's fate (``own_result``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from hpcflow.slurm.commands import SacctRow, SqueueRow
from hpcflow.states import (
    HPCFLOW_MOVES,
    TERMINAL,
    TaskState,
    is_requeue,
    map_slurm_state,
    slurm_move_allowed,
)
from hpcflow.store.records import MAYBE_REQUEUED, Key, Tracked


@dataclass(slots=True)
class Observation:
    state: TaskState
    exit_code: int | None = None
    start: str | None = None
    end: str | None = None
    node: str | None = None
    reason: str = ""


@dataclass(slots=True)
class Change:
    """A tracked element's new row; ``event`` is set when its state changes."""

    task: Tracked
    new: TaskState
    row: dict[str, object]
    event_reason: str | None = None
    check_skip: bool = False  # COMPLETED in a may-skip step: its marker says if it skipped

    @property
    def needs_evidence(self) -> bool:
        """The element's own files are read on this transition (once): it just ended and
        either ran (result.json, outputs.json) or its files decide (markers, packed)."""
        ended = self.moved and self.new in TERMINAL and self.task.state not in TERMINAL
        return self.check_skip or (
            ended and (self.task.reads_result or self.row.get("node") is not None)
        )

    @property
    def moved(self) -> bool:
        return self.new is not self.task.state

    @property
    def display_id(self) -> str:
        t = self.task
        return f"{t.slurm_job_id}_{t.task_id}" if t.task_id is not None else t.slurm_job_id


def observe(
    rows: Iterable[SacctRow], tasks: Iterable[Tracked], local_now: datetime
) -> dict[Key, Observation]:
    """sacct rows -> what each (job, task) is. ``local_now`` in the cluster's local time (sacct
    prints that)."""
    with_dep = {t.slurm_job_id for t in tasks if t.has_dependency}
    seen: dict[Key, Observation] = {}
    for row in rows:
        if row.killed_without_step_data(local_now) or row.record_incomplete(local_now):
            continue  # OOM or not is not known yet: leave the element as it was
        if row.meta_end_unsettled(local_now):
            continue  # the tasks' own rows may still be on their way from slurmctld
        state = (
            TaskState.OUT_OF_MEMORY
            if row.oom_evidence
            else map_slurm_state(
                row.state,
                row.reason,
                started=row.node is not None,
                has_dependency=row.job_id in with_dep,
            )
        )
        code = 128 + row.signal if row.signal else row.exit_code
        seen[(row.job_id, row.task_id)] = Observation(
            state, code, row.start, row.end, row.node, row.reason
        )
    return seen


def squeue_needed(tasks: Iterable[Tracked], seen: dict[Key, Observation]) -> list[str]:
    """Slurm job ids to ask squeue about: pending reasons, possible requeues, and jobs sacct
    does not show (yet)."""
    need = set()
    for t in tasks:
        o = seen.get(t.key)
        if o is None or o.state in MAYBE_REQUEUED:
            need.add(t.slurm_job_id)
    return sorted(need, key=int)


def by_key(queued: Iterable[SqueueRow]) -> dict[Key, SqueueRow]:
    return {(r.job_id, r.task_id): r for r in queued}


def reconcile(
    tasks: Iterable[Tracked],
    seen: dict[Key, Observation],
    queued: Iterable[SqueueRow] | Mapping[Key, SqueueRow],
    *,
    now: datetime,
    lost_after: float,
    degraded: bool = False,
    hold: Set[Key] = frozenset(),
) -> list[Change]:
    """The changes to record. ``seen`` from ``observe`` (empty when sacct failed, then
    ``degraded``); ``queued`` from squeue (or ``by_key`` of it, when deciding in slices);
    ``now`` in UTC. Elements in ``hold`` that Slurm did not show are left as they are (asked
    by id for the first time without an answer: slurmdbd may not have them yet)."""
    q = queued if isinstance(queued, Mapping) else by_key(queued)
    out = []
    for t in tasks:
        key = (t.slurm_job_id, t.task_id)
        o, qrow = seen.get(key), q.get(key)
        if o is None and qrow is None and key in hold:
            continue
        if qrow is None and o is not None and unchanged(t, o):
            continue  # most elements, most refreshes: Slurm says what the tracker has
        if o is None and qrow is not None and still_pending(t, qrow):
            continue  # the queued rest of an array: squeue says what the tracker has
        o = _conclude(t, o, qrow, now, lost_after, degraded)
        if o is None:
            continue
        change = _change(t, o)
        if change is not None:
            out.append(change)
    return out


def unchanged(t: Tracked, o: Observation) -> bool:
    """sacct says exactly what the tracker has (and no rule turns it into something else):
    ``_change`` would return None. Checked first, as it is the common case."""
    if o.state is not t.state or o.start != t.start or o.node != t.node:
        return False
    ended = t.state in TERMINAL
    return (
        (o.reason or None) == t.reason
        and t.exit_code == (o.exit_code if ended else None)
        and t.end == (o.end if ended else None)
        and not (t.compensation and o.state is TaskState.UPSTREAM_FAILED)
    )


def still_pending(t: Tracked, qrow: SqueueRow) -> bool:
    """squeue shows the element pending for the reason the tracker has: ``_conclude`` and
    ``_change`` would return nothing new."""
    return (
        t.state is TaskState.PENDING
        and t.start is None
        and t.node is None
        and (qrow.reason or None) == t.reason
        and map_slurm_state(qrow.state, qrow.reason) is TaskState.PENDING
    )


def _conclude(
    t: Tracked,
    o: Observation | None,
    qrow: SqueueRow | None,
    now: datetime,
    lost_after: float,
    degraded: bool,
) -> Observation | None:
    """What the element is now, or None when nothing can be concluded."""
    if qrow is not None:
        if o is None or o.state in MAYBE_REQUEUED:
            o = Observation(
                map_slurm_state(qrow.state, qrow.reason),
                None,
                o.start if o else None,
                None,
                o.node if o else None,
                qrow.reason,
            )
    elif o is not None and o.state is TaskState.PENDING and t.state is not TaskState.PENDING:
        # sacct (slurmdbd) lags slurmctld: a job it still shows PENDING after we saw it start
        # is a requeue only if slurmctld, in squeue, says so
        return None
    if o is None:
        age = (now - (t.submitted_at or now)).total_seconds()
        if degraded or age < lost_after or t.state in TERMINAL:
            return None  # cannot confirm anything: leave it
        return Observation(
            TaskState.LOST, reason=f"not in sacct or squeue {age:.0f} s after submission"
        )
    if o.state is TaskState.UPSTREAM_FAILED and t.compensation:
        return Observation(TaskState.SKIPPED, reason="compensation not needed: upstream succeeded")
    if o.state is TaskState.COMPLETED and t.may_skip and t.state is TaskState.SKIPPED:
        return None  # Slurm says COMPLETED; the element's wrapper said why: skipped
    return o


NODE_FAULTED = frozenset({TaskState.NODE_FAIL, TaskState.PREEMPTED})


def _change(t: Tracked, o: Observation) -> Change | None:
    old, new = t.state, o.state
    allowed = (
        old in HPCFLOW_MOVES["lost"] if new is TaskState.LOST else slurm_move_allowed(old, new)
    )
    if not allowed:
        return None
    attempts = t.attempts
    started = o.start is not None and o.node is not None
    if new is not old and (
        new is TaskState.RUNNING or (old is TaskState.PENDING and started and new in TERMINAL)
    ):
        attempts += 1
    row: dict[str, object] = {
        "state": new.value,
        "exit_code": o.exit_code if new in TERMINAL else None,
        "start": o.start,
        "end": o.end if new in TERMINAL else None,
        "node": o.node,
        "attempts": attempts,
        "reason": o.reason or None,
    }
    if row == t.row():
        return None
    reason = ("requeued by Slurm; " if is_requeue(old, new) else "") + (o.reason or "")
    if new in NODE_FAULTED and o.node:  # which node it was: docs/faults.md
        reason = f"on node {o.node}; {reason}"
    return Change(
        t,
        new,
        row,
        event_reason=reason.strip("; ") or None,
        check_skip=new is TaskState.COMPLETED and t.may_skip and old is not TaskState.COMPLETED,
    )


def skipped(change: Change, why: str) -> Change:
    """The change once the element's marker said it skipped itself (``why``)."""
    row = change.row | {"state": TaskState.SKIPPED.value, "exit_code": 0, "reason": why}
    return replace(change, new=TaskState.SKIPPED, row=row, event_reason=why, check_skip=False)


RESULT_STATES = {
    st.value: st
    for st in (
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
    )
}


def _local(epoch: Any) -> str | None:
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")  # as sacct prints


def with_evidence(
    change: Change, result: Any, skip_text: str | None, outputs: Any = None
) -> Change:
    """The change once the element's own files were read: ``result`` (its parsed
    result.json, or None), ``skip_text`` (its .hpcflow/skipped marker, or None) and
    ``outputs`` (its parsed outputs.json). The record and outputs of this attempt are kept
    in the row, so nothing reads them again."""
    if change.task.reads_result:
        change = own_result(change, result, skip_text)
    elif change.check_skip and skip_text is not None:
        change = skipped(change, _skip_reason(skip_text))
    mine = _this_attempts(change, result)
    row = change.row | {"result": result if mine else None, "outputs": outputs if mine else None}
    code, own = row.get("exit_code"), result.get("exit_code") if mine else None
    if isinstance(code, int) and isinstance(own, int) and own > 127 and own - 128 == code:
        row["exit_code"] = own  # sacct prints an exit status of 128 or more less 128
    return replace(change, row=row)


def wants_outputs(change: Change, result: Any) -> bool:
    """Its outputs.json is worth reading: the record is this attempt's and does not say it
    wrote none (records from before the "outputs" flag say nothing: read)."""
    return _this_attempts(change, result) and result.get("outputs") is not False


def _this_attempts(change: Change, result: Any) -> bool:
    """The record was written by the Slurm task the element is in now, not an earlier one."""
    return isinstance(result, dict) and result.get("slurm_job_id") == change.display_id


def _skip_reason(marker: str | None) -> str:
    return "skipped: " + ((marker or "").strip() or "when: false")


def own_result(change: Change, result: Any, skip_text: str | None) -> Change:
    """A packed element's own record, when this Slurm task wrote it, decides its state, exit
    code and times; without one it had not finished and keeps the task's fate."""
    if not _this_attempts(change, result) or result.get("state") not in RESULT_STATES:
        return replace(change, check_skip=False)
    new = RESULT_STATES[result["state"]]
    code = result.get("exit_code")
    reason = {
        TaskState.COMPLETED: None,
        TaskState.FAILED: f"exit code {code}",
        TaskState.SKIPPED: _skip_reason(skip_text),
        TaskState.UPSTREAM_FAILED: "its upstream element did not complete",
    }[new]
    row = change.row | {
        "state": new.value,
        "exit_code": code if isinstance(code, int) else None,
        "start": _local(result.get("start")) or change.row["start"],
        "end": _local(result.get("end")) or change.row["end"],
        "reason": reason,
    }
    return replace(change, new=new, row=row, event_reason=reason, check_skip=False)
