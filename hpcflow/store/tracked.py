"""The elements a refresh asks Slurm about (``gather``), read from the tracker through the
driver: unfinished ones, and NODE_FAIL/PREEMPTED ones shortly after they ended. Elements that
squeue has just shown pending, as the tracker has them, are not even read (``skip``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.facts import UNFINISHED_VALUES
from hpcflow.slurm.commands import ended_within
from hpcflow.states import TERMINAL, TaskState
from hpcflow.store.db import session
from hpcflow.store.records import MAYBE_REQUEUED, Tracked

# NODE_FAIL / PREEMPTED elements may be requeued by Slurm: tracked this long after they ended.
REQUEUE_WINDOW = timedelta(minutes=10)
UNFINISHED = list(UNFINISHED_VALUES)
SETTLING = [st.value for st in (MAYBE_REQUEUED & TERMINAL)]
# (Slurm job id, first task id, last task id, squeue's reason): a run of an array's tasks
# that squeue shows pending for that reason
PendingRange = tuple[str, int, int, str | None]


def squeue_jobs(engine: Engine, run_ids: list[str]) -> list[str]:
    """Array jobs of these runs with an element pending, or NODE_FAIL/PREEMPTED lately (Slurm
    may have requeued it): squeue is asked about them before anything is read per element."""
    runs = ", ".join("?" * len(run_ids))
    since = (datetime.now() - REQUEUE_WINDOW).strftime("%Y-%m-%dT%H:%M:%S")
    with session(engine) as s:
        # two SELECTs, not one with OR, and `+run_id` (not its index): each walks the state
        # index over its few rows, not every element of the run
        part = (
            "SELECT j.slurm_job_id FROM task t JOIN job j ON j.id = t.job_id "
            f"WHERE +t.run_id IN ({runs}) AND t.task_id IS NOT NULL "
            "AND j.slurm_job_id IS NOT NULL AND t.state IN "
        )
        marks = ", ".join("?" * len(SETTLING))
        got = s.connection().exec_driver_sql(
            f"{part}('PENDING') UNION {part}({marks}) AND t.\"end\" >= ?",
            (*run_ids, *run_ids, *SETTLING, since),
        )
        return sorted((sid for (sid,) in got), key=int)


def gather(
    engine: Engine, run_ids: list[str], skip: list[PendingRange] | None = None
) -> list[Tracked]:
    """The submitted elements of these runs that Slurm may still change: unfinished ones, and
    NODE_FAIL/PREEMPTED ones shortly after they ended (Slurm may requeue them). Finished
    elements are never asked about again, nor are those in ``skip``: squeue shows them
    pending for the reason the tracker has, so there is nothing to decide about them. Plain
    SQL through the driver, and the few job and step rows joined here, not per element in
    SQL: this runs per poll, over up to every element of the run."""
    states = UNFINISHED + SETTLING
    runs = ", ".join("?" * len(run_ids))
    local_now = datetime.now()  # sacct's End is the cluster's local time
    window = REQUEUE_WINDOW.total_seconds()
    with session(engine) as s:
        db = s.connection()
        jobs = {
            jid: (sid, _stamp(submitted), bool(dependency))
            for jid, sid, submitted, dependency in db.exec_driver_sql(
                "SELECT id, slurm_job_id, submitted_at, dependency FROM job "
                f"WHERE run_id IN ({runs}) AND slurm_job_id IS NOT NULL",
                tuple(run_ids),
            )
        }
        steps = {
            (run_id, name): (run_id, name, bool(compensation), bool(may_skip),
                             bool(reads_result))
            for run_id, name, compensation, may_skip, reads_result in db.exec_driver_sql(
                f"SELECT run_id, name, compensation, may_skip, reads_result FROM step "
                f"WHERE run_id IN ({runs})",
                tuple(run_ids),
            )
        }  # fmt: skip
        not_pending, params = _skipping(skip or [], jobs)
        # the sqlite3 cursor itself: SQLAlchemy's row wrapper costs ~2 us a row, per poll
        rows = db.connection.driver_connection.execute(  # type: ignore[union-attr]
            'SELECT id, run_id, step, "index", job_id, task_id, state, attempts, exit_code, '
            'start, "end", node, reason, absent_at FROM task '
            f"WHERE run_id IN ({runs}) AND state IN ({', '.join('?' * len(states))})" + not_pending,
            (*run_ids, *states, *params),
        )
        out = []
        shared: dict[str, str] = {}
        same = shared.setdefault  # one string object for the values elements share
        for tid, run_id, step, index, job_id, task_id, state, attempts, code, start, end, \
                node, reason, absent_at in rows:  # fmt: skip
            job = jobs.get(job_id)
            if job is None or (state in SETTLING and not ended_within(end, local_now, window)):
                continue  # not submitted yet / settled
            sid, submitted_at, has_dependency = job
            run_id, step, compensation, may_skip, reads_result = steps.get(
                (run_id, step), (run_id, step, False, False, False)
            )
            out.append(
                Tracked(tid, run_id, step, index, sid, task_id, _STATES[state], attempts, code,
                        start, end, node and same(node, node), reason and same(reason, reason),
                        submitted_at, has_dependency, compensation, may_skip, reads_result,
                        absent_at is not None)
            )  # fmt: skip
    return out


_STATES = {st.value: st for st in TaskState}


def _stamp(text: Any) -> datetime | None:
    """A DateTime column as the driver returns it (SQLAlchemy's text, UTC) -> aware."""
    if text is None or isinstance(text, datetime):
        return text
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


MAX_SKIP_RANGES = 200  # more (a sparse queue): every element is read, as without squeue


def _skipping(
    skip: list[PendingRange], jobs: dict[int, tuple[str, Any, bool]]
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) that leaves out the elements squeue shows pending as the
    tracker has them: PENDING, never started, the same reason (``reconcile.still_pending``).
    An element missed at the last refresh is read all the same, so its mark is cleared."""
    if not skip or len(skip) > MAX_SKIP_RANGES:
        return "", []
    rows: dict[str, list[int]] = {}
    for jid, (sid, _, _) in jobs.items():
        rows.setdefault(sid, []).append(jid)
    clauses, params = [], []
    for sid, lo, hi, reason in skip:
        for jid in rows.get(sid, []):
            clauses.append("(job_id = ? AND task_id BETWEEN ? AND ? AND reason IS ?)")
            params += [jid, lo, hi, reason]
    if not clauses:
        return "", []
    return (
        " AND NOT (state = 'PENDING' AND task_id IS NOT NULL AND start IS NULL AND node IS NULL"
        " AND absent_at IS NULL AND (" + " OR ".join(clauses) + "))",
        params,
    )
