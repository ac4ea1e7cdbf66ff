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
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.errors import SlurmUnavailable
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.slurm.commands import SacctRow, SqueueRow
from hpcflow.states import (
    ACTIVE_RUN_STATES,
    TERMINAL,
    EventKind,
)
from hpcflow.store import refreshes
from hpcflow.store.db import Run, session, utcnow
from hpcflow.store.handles import Orm
from hpcflow.store.runstate import derived
from hpcflow.store.tracked import gather, squeue_jobs
from hpcflow.tracker.asking import (
    Answer,
    absent_changes,
    late_jobs,
    missing,
    pending_ranges,
    sacct_targets,
    squeue_first,
)
from hpcflow.tracker.events import EventLog, move_run
from hpcflow.tracker.evidence import read_evidence
from hpcflow.tracker.reconcile import (
    Change,
    Key,
    Tracked,
    by_key,
    observe,
    reconcile,
    squeue_needed,
)
from hpcflow.tracker.usage import collect_usage
from hpcflow.util.gcpause import gc_paused
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
    sacct_asked: bool = True  # False: every element was pending in squeue; degraded unknown


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
            with gc_paused():
                _refresh_due(engine, runner, due, lost_after, out)
    return out


def _site_budget(s: Orm, site: str, now: datetime, poll_seconds: int) -> list[Run]:
    """All active runs of the site, unless one of them was refreshed within the interval."""
    active = refreshes.active_of_site(s, site)
    last = max((r.refreshed_at for r in active if r.refreshed_at is not None), default=None)
    if last is not None and (now - last).total_seconds() < poll_seconds:
        log.debug(
            "refresh: not due (last sacct for site %s %.0f s ago)",
            site,
            (now - last).total_seconds(),
        )
        return []
    return active


# Elements decided, read and turned into rows per slice (the SSH runner reads 5,000 files a
# command): what a refresh holds at once is bounded by the slice, not the run (about 1.5 KB
# per tracked element at 52,000: docs/benchmarks.md).
SLICE = 5_000


def _refresh_due(
    engine: Engine, runner: Runner, due: list[Run], lost_after: int, out: Refreshed
) -> None:
    run_ids, client = [r.id for r in due], SlurmClient(runner)
    # squeue first (slurmctld): the elements it shows pending as the tracker has them are
    # not even read; it is asked about the array jobs with an element pending
    first = squeue_jobs(engine, run_ids)
    pre = (first, client.squeue(first) if first else [])
    tracked = gather(engine, run_ids, pending_ranges(pre[1] or []))
    run_dirs = {r.id: r.run_dir for r in due}
    moves: list[tuple[Any, ...]] = []
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    absent: tuple[list[int], list[int]] = ([], [])
    out.sacct_asked = bool(tracked) or not first  # all pending in squeue: sacct not asked
    if tracked:
        ans = ask_slurm(client, tracked, window_start(due), window_start(due, LATE_MARGIN), pre)
        out.degraded, out.sacct_asked = ans.degraded, ans.sacct_asked
        now, squeued = utcnow(), by_key(ans.queued)
        # missing for the first time: asked again next refresh, never LOST on this silence
        hold = ans.missing - {t.key for t in tracked if t.absent}
        if not ans.degraded:
            absent = absent_changes(tracked, ans.missing)
        for i in range(0, len(tracked), SLICE):
            changes = reconcile(tracked[i : i + SLICE], ans.seen, squeued, now=now,
                                lost_after=lost_after, degraded=bool(out.degraded),
                                hold=hold)  # fmt: skip
            _rows(read_evidence(runner, run_dirs, changes), moves, updates)
        del tracked, ans, squeued
    log = EventLog()
    with session(engine) as s:
        log.add_many(s, moves)
        _update_tasks(s, updates)
        _mark_absent(s, *absent)
        for r in due:
            _settle_run(s, log, r.id, out)
        s.commit()
    log.publish(runner, run_dirs)
    if any(m[4] in ENDED for m in moves):  # chunks may have finished: their usage, once
        with session(engine) as s:
            collect_usage(s.connection(), SlurmClient(runner), [r.id for r in due])
            s.commit()


# slurmdbd may lag slurmctld by minutes, and sacct's time filter has one-second resolution:
# a refresh asks for everything alive since this long before the last good one.
WINDOW_MARGIN = timedelta(minutes=10)
# A task that left squeue since the last refresh's squeue but is not in slurmdbd yet ended
# after that: its job is asked for again from the last refresh's end minus this margin (the
# refresh's own length, up to seconds at 100,000 elements, and clock skew), not the window.
LATE_MARGIN = timedelta(seconds=30)
ENDED = frozenset(st.value for st in TERMINAL)


def window_start(due: list[Run], margin: timedelta = WINDOW_MARGIN) -> datetime:
    """sacct --starttime for these runs, in the cluster's local time: an element that ended
    before it was already seen ended by an earlier refresh. The first refresh of a run, and
    the first after sacct failed, look back to a day before its submission."""
    starts = [
        r.refreshed_at - margin
        if r.refreshed_at is not None and not r.degraded
        else r.submitted_at - timedelta(days=1)
        for r in due
    ]
    utc = min(starts)
    # sacct reads and prints the local time of the machine it runs on (docs/tracker.md)
    return datetime.now() - (utcnow() - utc)


def ask_slurm(
    client: SlurmClient,
    tracked: list[Tracked],
    since: datetime,
    late_since: datetime | None = None,
    pre: tuple[list[str], list[SqueueRow] | None] | None = None,
) -> Answer:
    """squeue first for the array jobs with pending elements (slurmctld: which are still
    pending, and why); one sacct (-X, alive since ``since``) for the rest, by task where
    that is exact; for the SIGKILLed among them, one more for their step rows (MaxRSS: out of
    memory or not); squeue again only for jobs sacct cannot settle. A task asked by id that
    neither shows, and that was missing at the last refresh too (``Tracked.absent``), gets
    its job asked for whole, alive since ``late_since``. ``pre``: squeue already asked
    (the jobs, its answer or None), before the elements were read."""
    first, answer = pre if pre is not None else (squeue_first(tracked), None)
    if pre is None:
        answer = client.squeue(first) if first else []
    queued = answer or []
    squeued = first if answer is not None else []
    q = by_key(queued)
    ids = sacct_targets(tracked, q, squeued)
    degraded, late = None, []
    gone: set[Key] = set()
    try:
        rows = client.sacct(ids, since) if ids else []
        gone = missing(ids, rows, q)
        if gone and (late := late_jobs(gone, {t.key for t in tracked if t.absent})):
            have = {(r.job_id, r.task_id) for r in rows}
            again = client.sacct(late, late_since or since)  # their pending meta record
            rows += [r for r in again if (r.job_id, r.task_id) not in have]
            gone -= {(r.job_id, r.task_id) for r in again}
        rows = _with_step_data(client, rows, {t.key for t in tracked}, since)
    except SlurmUnavailable as e:
        rows, late, gone = [], [], set()
        degraded = f"{e}: states from squeue only; finished jobs are not updated"
    seen = observe(rows, tracked, datetime.now())  # sacct prints the cluster's local time
    need = [j for j in squeue_needed(tracked, seen) if j not in set(squeued)]
    if need:
        queued += client.squeue(need) or []
    if log.isEnabledFor(logging.DEBUG):
        jobs = len({t.slurm_job_id for t in tracked})
        printed = sum(1 for r in rows if not r.meta) + len({r.job_id for r in rows if r.meta})
        log.debug(
            "refresh: %d unfinished elements in %d jobs; squeue first for %d jobs; sacct -j "
            "with %d ids (%d jobs again whole, a task not in slurmdbd at two refreshes) "
            "returned %d rows (budget %d = elements + jobs); %d tasks not in slurmdbd yet; "
            "squeue asked about %d more jobs; %d squeue rows",
            len(tracked), jobs, len(first), len(ids), len(late), printed, len(tracked) + jobs,
            len(gone), len(need), len(queued),
        )  # fmt: skip
    return Answer(seen, queued, degraded, bool(ids), gone)


def _with_step_data(
    client: SlurmClient, rows: list[SacctRow], tracked: set[Key], since: datetime
) -> list[SacctRow]:
    killed = [r for r in rows if r.sigkilled and (r.job_id, r.task_id) in tracked]
    if not killed:
        return rows
    keys = [r.job_id if r.task_id is None else f"{r.job_id}_{r.task_id}" for r in killed]
    detail = {(r.job_id, r.task_id): r for r in client.sacct(keys, since, steps=True)}
    return [detail.get((r.job_id, r.task_id), r) for r in rows]


def _mark_absent(s: Orm, mark: list[int], found: list[int]) -> None:
    refreshes.mark_absent(s, mark, found, utcnow().isoformat(timespec="seconds"))


JSON_COLUMNS = frozenset({"result", "outputs"})


def _db_json(v: Any) -> str | None:
    return None if v is None else json.dumps(v)


def _rows(
    changes: list[Change],
    moves: list[tuple[Any, ...]],
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]],
) -> None:
    """Append the event rows (MOVE_COLUMNS) and task row updates, grouped by the columns
    they set, that ``changes`` make: compact tuples, so the Change objects can go."""
    moves.extend(
        (t.run_id, t.step, t.index, t.state._value_, c.new._value_, c.display_id,
         c.row["exit_code"], c.event_reason)
        for c in changes
        if c.new is not (t := c.task).state
    )  # fmt: skip
    by_keys: dict[tuple[str, ...], list[Change]] = {}
    for c in changes:  # elements that just ended also store their record and outputs
        by_keys.setdefault(tuple(c.row), []).append(c)
    for keys, group in by_keys.items():
        values = itemgetter(*keys)
        json_at = [i for i, k in enumerate(keys) if k in JSON_COLUMNS]
        params = [(*values(c.row), c.task.id) for c in group]
        if json_at:
            params = [_dumped(p, json_at) for p in params]
        updates.setdefault(keys, []).extend(params)


def _update_tasks(s: Orm, updates: dict[tuple[str, ...], list[tuple[Any, ...]]]) -> None:
    refreshes.update_tasks(s, updates)  # JSON serialised by _rows


def _dumped(values: tuple[Any, ...], at: list[int]) -> tuple[Any, ...]:
    out = list(values)
    for i in at:
        out[i] = _db_json(out[i])
    return tuple(out)


def _settle_run(s: Orm, log: EventLog, run_id: str, out: Refreshed) -> None:
    """The run's state from its elements', its degraded flag, refreshed_at. Driver SQL for
    the common case (nothing to move): each ORM statement's first compile in a fresh
    `status` process costs about as much as the lab's sacct."""
    s.flush()
    state, cancelled, degraded = refreshes.run_flags(s, run_id)
    new = derived(s, run_id, state, cancelled)
    # every element pending in squeue: sacct was not asked, its health is not known this time
    flag = out.sacct_asked and degraded != out.degraded
    if new == state and not flag:
        refreshes.touch_refreshed(s, run_id, utcnow())
        return
    run = s.get(Run, run_id)
    assert run is not None
    if move_run(s, log, run, new, "derive"):
        out.runs.append(run.id)
    if flag:
        log.add(
            s,
            run_id=run.id,
            kind=EventKind.DEGRADED if out.degraded else EventKind.RECOVERED,
            reason=out.degraded or "sacct answers again",
        )
        run.degraded = out.degraded
    run.refreshed_at = utcnow()
    s.add(run)
