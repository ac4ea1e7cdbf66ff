"""What a refresh asks Slurm, as pure functions (tests in tests/test_reconcile.py and
tests/test_refresh_apply.py):
- Array jobs with an element pending or maybe requeued: squeue first (``squeue_first``).
- sacct by task for the tasks squeue does not show pending, and for jobs whose elements all
  run; other jobs whole (``sacct_targets``).
- A task asked by id that neither shows: its job again, whole (``not_yet_in_sacct``), never
  taken for lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hpcflow.slurm.commands import SacctRow, SqueueRow
from hpcflow.states import TaskState, map_slurm_state
from hpcflow.tracker.reconcile import MAYBE_REQUEUED, Key, Tracked

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


def not_yet_in_sacct(
    asked: Iterable[str], rows: Iterable[SacctRow], queued: Mapping[Key, SqueueRow]
) -> list[str]:
    """Jobs with a task asked by id that neither sacct nor squeue shows: slurmdbd has not
    written it yet (it may still be inside the job's meta record). Such jobs are asked for
    whole, rather than taking the silence for a lost element."""
    seen = {(r.job_id, r.task_id) for r in rows}
    jobs = set()
    for i in asked:
        job, sep, task = i.partition("_")
        if sep and (job, int(task)) not in seen and (job, int(task)) not in queued:
            jobs.add(job)
    return sorted(jobs, key=int)
