"""What a refresh asks Slurm, as pure functions (tests in tests/test_reconcile.py and
tests/test_refresh_apply.py):
- Array jobs with an element pending or maybe requeued: squeue first (``squeue_first``).
- sacct by task for the tasks squeue does not show pending, and for jobs whose elements all
  run; other jobs whole (``sacct_targets``).
- A task asked by id that neither shows (``missing``): asked by id again at the next refresh;
  missing twice, its job again, whole (``late_jobs``). Never taken for lost on that alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hpcflow.slurm.commands import SacctRow, SqueueRow
from hpcflow.states import TaskState, map_slurm_state
from hpcflow.tracker.reconcile import MAYBE_REQUEUED, Key, Observation, Tracked


@dataclass
class Answer:
    """What Slurm said: observations by element, squeue rows, why the answer is degraded (or
    None), whether sacct was asked at all, and the tasks asked by id that neither showed."""

    seen: dict[Key, Observation]
    queued: list[SqueueRow]
    degraded: str | None
    sacct_asked: bool
    missing: set[Key] = field(default_factory=set)


MAX_TASK_IDS = 1000  # per job; more tasks to ask about than this: ask for the whole job


def squeue_first(tasks: Iterable[Tracked]) -> list[str]:
    """Array jobs to ask squeue about before sacct: those with an element pending (or that
    Slurm may have requeued). slurmctld says which of their tasks are still pending, so sacct
    (slurmdbd, the costly one) is asked only about the rest."""
    jobs = {t.slurm_job_id for t in tasks if t.task_id is not None and t.state in MAYBE_REQUEUED}
    return sorted(jobs, key=int)


def sacct_targets(
    tasks: Iterable[Tracked],
    queued: Mapping[Key, SqueueRow] | None = None,
    squeued: Iterable[str] = (),
) -> list[str]:
    """What sacct -j asks about. A job squeue answered for (``squeued``, its rows in
    ``queued``): by task, leaving out the tasks squeue shows pending. A job whose tracked
    elements all run: by task too, so its tasks that ended earlier in the time window do not
    come back. Any other job whole: ``-j A_5`` finds nothing while A_5 is still in the
    pending meta record ``A_[5-99]``, and a bracketed range is refused by sacct."""
    q = queued or {}
    answered = set(squeued)
    by_job: dict[str, list[Tracked]] = {}
    for t in tasks:
        by_job.setdefault(t.slurm_job_id, []).append(t)
    out: list[str] = []
    for job in sorted(by_job, key=int):
        ts = by_job[job]
        if any(t.task_id is None for t in ts):
            out.append(job)
            continue
        if job in answered:
            ask = [t for t in ts if not _pending_in(q.get(t.key))]
        elif all(t.state is TaskState.RUNNING for t in ts):
            ask = ts
        else:
            out.append(job)
            continue
        if len(ask) > MAX_TASK_IDS:
            out.append(job)
        else:
            out.extend(f"{job}_{t.task_id}" for t in sorted(ask, key=lambda t: t.task_id or 0))
    return out


def _pending_in(row: SqueueRow | None) -> bool:
    return row is not None and map_slurm_state(row.state, row.reason) is TaskState.PENDING


def missing(
    asked: Iterable[str], rows: Iterable[SacctRow], queued: Mapping[Key, SqueueRow]
) -> set[Key]:
    """Tasks asked by id that neither sacct nor squeue shows: slurmdbd has not written them
    yet, or they are still inside their job's meta record (cancelled while pending). Never
    taken for lost on that alone."""
    seen = {(r.job_id, r.task_id) for r in rows}
    out: set[Key] = set()
    for i in asked:
        job, sep, task = i.partition("_")
        if sep and (key := (job, int(task))) not in seen and key not in queued:
            out.add(key)
    return out


def late_jobs(gone: set[Key], absent_before: set[Key]) -> list[str]:
    """Jobs to ask sacct again, whole, in this refresh: those with a task that was missing
    at the last refresh too. A task missing for the first time is asked by id again at the
    next refresh: slurmdbd's lag of a second or two is waited out there, instead of asking,
    every refresh, for every task of its job that ended within the margin (700 rows a
    refresh at the lab's 20 tasks/s). Only a task inside a meta record needs the whole job."""
    return sorted({job for job, task in gone & absent_before}, key=int)


def absent_changes(tracked: Iterable[Tracked], gone: set[Key]) -> tuple[list[int], list[int]]:
    """(ids to mark missing now, ids missing before and found now): the memory between
    refreshes that lets a task missing once wait for slurmdbd instead of asking its job."""
    ts = list(tracked)
    mark = [t.id for t in ts if not t.absent and t.key in gone] if gone else []
    return mark, [t.id for t in ts if t.absent and t.key not in gone]


def pending_ranges(queued: Iterable[SqueueRow]) -> list[tuple[str, int, int, str | None]]:
    """squeue's pending array tasks as runs of consecutive task ids per job and reason:
    (job, first, last, reason). The refresh does not read the elements in them that the
    tracker has pending for that reason (``tracked.gather``): most of a big queued array."""
    by: dict[tuple[str, str | None], list[int]] = {}
    for r in queued:
        if r.task_id is not None and _pending_in(r):
            by.setdefault((r.job_id, r.reason or None), []).append(r.task_id)
    out = []
    for (job, reason), ids in sorted(by.items(), key=lambda kv: (int(kv[0][0]), kv[0][1] or "")):
        ids.sort()
        lo = prev = ids[0]
        for i in ids[1:]:
            if i != prev + 1:
                out.append((job, lo, prev, reason))
                lo = i
            prev = i
        out.append((job, lo, prev, reason))
    return out
