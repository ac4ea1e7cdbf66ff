"""Refresh runs from Slurm: one sacct for every tracked job, one squeue when needed.

Gather (tracker rows, then sacct and squeue through the SlurmClient) -> decide (the pure
``reconcile``) -> apply (one transaction). Serialized across processes by a lock file beside
the database, so concurrent `status` calls inside the poll interval query Slurm once. With
slurmdbd down, sacct fails and the refresh falls back to squeue: live jobs are updated, nothing
that squeue cannot confirm is changed, and the run is marked degraded until sacct answers
again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hpcflow.errors import SlurmUnavailable
from hpcflow.node.jobtool import task_dir
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.slurm.commands import SacctRow, SqueueRow, ended_within
from hpcflow.states import (
    ACTIVE_RUN_STATES,
    TERMINAL,
    EventKind,
    JobStatus,
    RunState,
    TaskState,
    run_state,
)
from hpcflow.tracker.db import Job, Run, StepRow, Task, session, utcnow
from hpcflow.tracker.events import EventLog, move_run
from hpcflow.tracker.reconcile import (
    MAYBE_REQUEUED,
    Change,
    Key,
    Observation,
    Tracked,
    observe,
    reconcile,
    squeue_needed,
    with_evidence,
)
from hpcflow.tracker.resubmission import ESCALATING_STATES, Ended, escalations
from hpcflow.util.locks import FileLock

log = logging.getLogger(__name__)

ACTIVE = ACTIVE_RUN_STATES


def lock_path(engine: Engine, name: str) -> str:
    db = engine.url.database or "hpcflow"
    return f"{db}.{name}.lock"


@dataclass
class Refreshed:
    runs: list[str] = field(default_factory=list)
    degraded: str | None = None


def refresh(
    engine: Engine,
    runner: Runner,
    runs: list[Run],
    poll_seconds: int,
    lost_after: int = 300,
    force: bool = False,
    site: str | None = None,
) -> Refreshed:
    """Refresh the due ``runs``. With ``site`` (the site config the runs use), the poll
    interval is the user's, not each run's: no refresh within it of the last one of any run
    of that site, and a refresh covers every active run of the site, in one sacct. ``force``
    (a command about to act on what it reads) ignores the interval."""
    out = Refreshed()
    with FileLock(lock_path(engine, "refresh")):
        now = utcnow()
        with session(engine) as s:
            fresh = [s.get(Run, r.id) for r in runs]
            due = [
                r
                for r in fresh
                if r is not None
                and r.state in ACTIVE
                and (
                    force
                    or r.refreshed_at is None
                    or (now - r.refreshed_at).total_seconds() >= poll_seconds
                )
            ]
            if due and site is not None and not force:
                due = _site_budget(s, site, now, poll_seconds)
        if due:
            _refresh_due(engine, runner, due, lost_after, out)
    return out


def _site_budget(s: Any, site: str, now: datetime, poll_seconds: int) -> list[Run]:
    """All active runs of the site, unless one of them was refreshed within the interval."""
    active = list(s.exec(select(Run).where(Run.site == site, col(Run.state).in_(ACTIVE))))
    last = max((r.refreshed_at for r in active if r.refreshed_at is not None), default=None)
    if last is not None and (now - last).total_seconds() < poll_seconds:
        log.debug(
            "refresh: not due (last sacct for site %s %.0f s ago)",
            site,
            (now - last).total_seconds(),
        )
        return []
    return active


def _refresh_due(
    engine: Engine, runner: Runner, due: list[Run], lost_after: int, out: Refreshed
) -> None:
    tracked = gather(engine, [r.id for r in due])
    if tracked:
        seen, queued, out.degraded = ask_slurm(SlurmClient(runner), tracked, window_start(due))
        changes = reconcile(
            tracked, seen, queued, now=utcnow(), lost_after=lost_after, degraded=bool(out.degraded)
        )
    else:
        changes = []
    run_dirs = {r.id: r.run_dir for r in due}
    changes = _with_evidence(runner, run_dirs, changes)
    log = EventLog()
    with session(engine) as s:
        _record(s, log, changes)
        for r in due:
            _settle_run(s, log, r.id, out)
        s.commit()
    log.publish(runner, run_dirs)


# slurmdbd may lag slurmctld by minutes, and sacct's time filter has one-second resolution:
# a refresh asks for everything alive since this long before the last good one.
WINDOW_MARGIN = timedelta(minutes=10)
# NODE_FAIL / PREEMPTED elements may be requeued by Slurm: tracked this long after they ended.
REQUEUE_WINDOW = timedelta(minutes=10)
UNFINISHED = [st.value for st in TaskState if st not in TERMINAL]
SETTLING = [st.value for st in (MAYBE_REQUEUED & TERMINAL)]


def window_start(due: list[Run]) -> datetime:
    """sacct --starttime for these runs, in the cluster's local time: an element that ended
    before it was already seen ended by an earlier refresh. The first refresh of a run, and
    the first after sacct failed, look back to a day before its submission."""
    starts = [
        r.refreshed_at - WINDOW_MARGIN
        if r.refreshed_at is not None and not r.degraded
        else r.submitted_at - timedelta(days=1)
        for r in due
    ]
    utc = min(starts)
    # sacct reads and prints the local time of the machine it runs on (docs/tracker.md)
    return datetime.now() - (utcnow() - utc)


def gather(engine: Engine, run_ids: list[str]) -> list[Tracked]:
    """The submitted elements of these runs that Slurm may still change: unfinished ones, and
    NODE_FAIL/PREEMPTED ones shortly after they ended (Slurm may requeue them). Finished
    elements are never asked about again. Plain SQL through the driver: this runs per poll,
    over up to every element of the run."""
    states = UNFINISHED + SETTLING
    sql = (
        'SELECT t.id, t.run_id, t.step, t."index", j.slurm_job_id, t.task_id, t.state, '
        't.attempts, t.exit_code, t.start, t."end", t.node, t.reason, j.submitted_at, '
        "j.dependency, st.role, st.may_skip, st.reads_result "
        "FROM task t JOIN job j ON j.id = t.job_id "
        "LEFT JOIN step st ON st.run_id = t.run_id AND st.name = t.step "
        f"WHERE t.run_id IN ({', '.join('?' * len(run_ids))}) "
        f"AND j.slurm_job_id IS NOT NULL AND t.state IN ({', '.join('?' * len(states))})"
    )
    local_now = datetime.now()  # sacct's End is the cluster's local time
    window = REQUEUE_WINDOW.total_seconds()
    with session(engine) as s:
        rows = s.connection().exec_driver_sql(sql, (*run_ids, *states)).all()
    stamps: dict[Any, datetime | None] = {}
    return [
        _tracked(row, stamps)
        for row in rows
        if row[6] not in SETTLING or ended_within(row[10], local_now, window)
    ]


def _stamp(text: Any) -> datetime | None:
    """A DateTime column as the driver returns it (SQLAlchemy's text, UTC) -> aware."""
    if text is None or isinstance(text, datetime):
        return text
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _tracked(row: Any, stamps: dict[Any, datetime | None]) -> Tracked:
    (tid, run_id, step, index, sid, task_id, state, attempts, code, start, end, node, reason,
     submitted, dependency, role, may_skip, reads_result) = row  # fmt: skip
    if submitted not in stamps:
        stamps[submitted] = _stamp(submitted)
    submitted_at = stamps[submitted]
    return Tracked(
        id=tid, run_id=run_id, step=step, index=index, slurm_job_id=sid, task_id=task_id,
        state=TaskState(state), attempts=attempts, exit_code=code, start=start, end=end,
        node=node, reason=reason, submitted_at=submitted_at, has_dependency=bool(dependency),
        compensation=(role or "").startswith("compensation"), may_skip=bool(may_skip),
        reads_result=bool(reads_result),
    )  # fmt: skip


def ask_slurm(
    client: SlurmClient, tracked: list[Tracked], since: datetime
) -> tuple[dict[Key, Observation], list[SqueueRow], str | None]:
    """One sacct (-X, alive since ``since``) for the jobs with unfinished elements; for the
    SIGKILLed among them, one more for their step rows (MaxRSS: out of memory or not); one
    squeue for the jobs sacct cannot settle. Returns (observations, squeue rows, why the
    answer is degraded or None)."""
    ids = sorted({t.slurm_job_id for t in tracked}, key=int)
    degraded = None
    try:
        rows = client.sacct(ids, since)
        rows = _with_step_data(client, rows, {t.key for t in tracked}, since)
    except SlurmUnavailable as e:
        rows = []
        degraded = f"{e}: states from squeue only; finished jobs are not updated"
    seen = observe(rows, tracked, datetime.now())  # sacct prints the cluster's local time
    need = squeue_needed(tracked, seen)
    queued = (client.squeue(need) or []) if need else []
    log.debug(
        "refresh: %d unfinished elements in %d jobs; sacct returned %d rows (budget %d = "
        "elements + jobs); squeue asked about %d jobs, %d elements",
        len(tracked), len(ids), len(rows), len(tracked) + len(ids), len(need), len(queued),
    )  # fmt: skip
    return seen, queued, degraded


def _with_step_data(
    client: SlurmClient, rows: list[SacctRow], tracked: set[Key], since: datetime
) -> list[SacctRow]:
    killed = [r for r in rows if r.signal == 9 and (r.job_id, r.task_id) in tracked]
    if not killed:
        return rows
    keys = [r.job_id if r.task_id is None else f"{r.job_id}_{r.task_id}" for r in killed]
    detail = {(r.job_id, r.task_id): r for r in client.sacct(keys, since, steps=True)}
    return [detail.get((r.job_id, r.task_id), r) for r in rows]


def _with_evidence(runner: Runner, run_dirs: dict[str, str], changes: list[Change]) -> list[Change]:
    """Elements whose own files decide (skip markers, packed results): read once, on the
    transition, all in one batch (one command over SSH)."""
    dirs = {
        i: task_dir(run_dirs[c.task.run_id], c.task.step, c.task.index)
        for i, c in enumerate(changes)
        if c.needs_evidence
    }
    if not dirs:
        return changes
    paths = {
        i: [f"{d}/{n}" for n in EVIDENCE] for i, d in dirs.items()
    }  # result.json, skipped, outputs.json
    wanted = [
        p
        for i, ps in paths.items()
        for p in (ps if changes[i].check_skip or changes[i].task.reads_result else ps[::2])
    ]
    files = runner.read_files(wanted)
    log.debug("refresh: read %d files of %d finished elements", len(files), len(dirs))
    out = list(changes)
    for i, (result, marker, outputs) in paths.items():
        got = files.get
        out[i] = with_evidence(
            changes[i], _json(got(result)), _text(got(marker)), _json(got(outputs))
        )
    return out


# the marker (the middle one) only where an element may skip or is packed
EVIDENCE = (".hpcflow/result.json", ".hpcflow/skipped", "outputs.json")
MAX_STORED = 65536  # bytes of one element's outputs.json kept in the tracker


def _json(raw: bytes | None) -> Any:
    if raw is None or len(raw) > MAX_STORED:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


JSON_COLUMNS = frozenset({"result", "outputs"})


def _db_json(v: Any) -> str | None:
    return None if v is None else json.dumps(v)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")


def _record(s: Any, log: EventLog, changes: list[Change]) -> None:
    log.add_many(
        s,
        [
            {
                "run_id": c.task.run_id,
                "step": c.task.step,
                "index": c.task.index,
                "old_state": c.task.state.value,
                "new_state": c.new.value,
                "slurm_job_id": c.display_id,
                "exit_code": c.row["exit_code"],
                "reason": c.event_reason,
            }
            for c in changes
            if c.moved
        ],
    )
    by_keys: dict[tuple[str, ...], list[Change]] = {}
    for c in changes:  # elements that just ended also store their record and outputs
        by_keys.setdefault(tuple(c.row), []).append(c)
    for keys, group in by_keys.items():
        # the driver's executemany, JSON serialised here: SQLAlchemy's per-row bind
        # processing costs more than SQLite itself at 100,000 rows
        sets = ", ".join(f'"{k}" = ?' for k in keys)
        json_cols = [k in JSON_COLUMNS for k in keys]
        params = [
            (*(_db_json(v) if j else v for v, j in zip(c.row.values(), json_cols)), c.task.id)
            for c in group
        ]
        s.connection().exec_driver_sql(f"UPDATE task SET {sets} WHERE id = ?", params)


def _settle_run(s: Any, log: EventLog, run_id: str, out: Refreshed) -> None:
    run = s.get(Run, run_id)
    assert run is not None
    if move_run(s, log, run, derive_run_state(s, run), "derive"):
        out.runs.append(run.id)
    if run.degraded != out.degraded:
        log.add(
            s,
            run_id=run.id,
            kind=EventKind.DEGRADED if out.degraded else EventKind.RECOVERED,
            reason=out.degraded or "sacct answers again",
        )
    run.degraded = out.degraded
    run.refreshed_at = utcnow()
    s.add(run)


def escalatable(s: Any, run_id: str) -> dict[tuple[str, str, float], list[int]]:
    """Tasks a step's retry.on_oom / retry.on_timeout will resubmit (see ``escalations``)."""
    policy = {r.name: r.policy for r in s.exec(select(StepRow).where(StepRow.run_id == run_id))}
    states = [st.value for st in ESCALATING_STATES]
    rows = s.exec(
        select(Task.id, Task.step, Task.state, Task.attempts).where(
            Task.run_id == run_id, col(Task.state).in_(states)
        )
    )
    return escalations((Ended(i, step, TaskState(st), n) for i, step, st, n in rows), policy)


def derive_run_state(s: Any, run: Run) -> str:
    # the run's state depends only on which states its elements are in: DISTINCT, not rows
    stmt = select(Task.state).where(Task.run_id == run.id).distinct()
    states = [TaskState(x) for x in s.exec(stmt)]
    if s.exec(
        select(Job).where(Job.run_id == run.id, Job.status == JobStatus.PLANNED.value)
    ).first():
        return run.state  # submission not finished: leave it to the submitter / reconcile
    if escalatable(s, run.id):
        return RunState.RUNNING.value  # some elements are about to be resubmitted
    return run_state(states, run.cancelled).value
