"""Submit a run: write its directory, record every job, then one sbatch per job in topological
order, each recorded before the next. Submission works from the database alone, so a run whose
submitter died (kill -9, lost login session) is resumed by the next command, adopting by job name
what Slurm already has instead of submitting it twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.compile.plan import Plan
from hpcflow.containers.images import read_credentials
from hpcflow.errors import SlurmError, SlurmUnavailable
from hpcflow.launch.rundir import write_run_dir
from hpcflow.render.rendered import RenderedJob, RenderedRun
from hpcflow.render.scripts import _item_of
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import JobSpec, SlurmClient
from hpcflow.slurm.planning import prepare
from hpcflow.spec.dataflow import is_compensation, may_skip, step_role
from hpcflow.spec.notify import NotifyEntry
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded
from hpcflow.states import TERMINAL, EventKind, JobStatus, RunState, StepKind, TaskState
from hpcflow.store import rows as rows_
from hpcflow.store.db import Job, Run, StepRow, session, utcnow
from hpcflow.store.handles import Orm
from hpcflow.tracker.events import EventLog, move_run, move_task
from hpcflow.tracker.notify import targets_for
from hpcflow.tracker.rundir import job_env, pull_on_login
from hpcflow.util.locks import FileLock

log = logging.getLogger(__name__)


# -- the per-run submit lock: held while a process submits; free means nobody is -------------
def _lock_file(engine: Engine, run_id: str) -> str:
    d = Path(engine.url.database or ".").parent / "locks"
    d.mkdir(mode=0o700, exist_ok=True)
    return str(d / f"{run_id}.submit.lock")


class RunLock(FileLock):
    """Held while a process submits a run (or ticks a campaign); free means nobody is."""

    def __init__(self, engine: Engine, run_id: str):
        super().__init__(_lock_file(engine, run_id))


@dataclass
class Submitted:
    run_id: str
    run_dir: str
    jobs: list[dict[str, Any]]


def record_run(
    engine: Engine,
    rr: RenderedRun,
    loaded: Loaded,
    site: Site,
    label: str | None,
    notes: list[str] | None = None,
    notify: list[NotifyEntry] | None = None,
) -> EventLog:
    """Insert the run, its steps, jobs (PLANNED) and tasks (PENDING) in one transaction."""
    plan, wf = rr.plan, loaded.workflow
    log = EventLog()
    with session(engine) as s:
        s.add(
            Run(
                id=plan.run_id,
                workflow=wf.name,
                version=wf.version,
                namespace=wf.namespace,
                label=label,
                site=site.source,
                state=RunState.PENDING.value,
                run_dir=plan.run_dir,
                workflow_path=str(loaded.path.resolve()),
                params=loaded.params,
                poll_seconds=site.poll_seconds(),
                faults=site.faults.policy(),
                notify=targets_for("run_end", site.notify, wf.notify, notify or []) or None,
            )
        )
        s.flush()
        n = sum(sp.n_elements for sp in plan.steps.values())
        log.add(
            s, EventKind.SUBMITTING, run_id=plan.run_id, reason=f"{len(rr.jobs)} jobs, {n} elements"
        )
        for note in notes or []:
            log.add(s, EventKind.NOTE, run_id=plan.run_id, reason=note)
        s.add_all(step_rows(plan, may_skip(wf, loaded.order, loaded.axes)))
        s.add_all(waiting_rows(plan.run_id, loaded))
        row_ids = _record_jobs(s, rr)
        rows = task_rows(plan, row_ids)
        if rows:
            rows_.insert_tasks(s, rows)
        s.commit()
    return log


def waiting_rows(run_id: str, loaded: Loaded) -> list[StepRow]:
    """The steps a dynamic foreach lays out later: no elements yet, their total unknown."""
    d = loaded.deferral
    return [
        StepRow(
            run_id=run_id,
            name=name,
            position=pos,
            total=0,
            dynamic={"state": "waiting", "producers": list(d.producers), "reason": None},
        )
        for pos, name in enumerate(loaded.order)
        if name in d.deferred
    ]


def step_rows(plan: Plan, skippers: set[str], steps: list[str] | None = None) -> list[StepRow]:
    out = []
    for name in plan.order if steps is None else steps:
        sp = plan.steps[name]
        r = sp.retry
        out.append(
            StepRow(
                run_id=plan.run_id,
                name=name,
                position=sp.position,
                total=sp.n_elements,
                kind=sp.kind.value,
                role=step_role(sp.step, sp.kind),
                compensation=is_compensation(sp.step, sp.kind),
                may_skip=name in skippers,
                pack=sp.pack.size,
                parallel=sp.pack.parallel,
                reads_result=sp.pack.packed or bool(sp.loose_each),
                policy={
                    "attempts": r.attempts,
                    "on_oom": r.on_oom.model_dump() if r.on_oom else None,
                    "on_timeout": r.on_timeout.model_dump() if r.on_timeout else None,
                },
            )
        )
    return out


def _record_jobs(
    s: Orm, rr: RenderedRun, jobs: list[RenderedJob] | None = None
) -> dict[tuple[str, int], int]:
    """Insert the jobs in submission order: (step, job index) -> row id. An expansion records
    only its own ``jobs``; their links to the producers are met already and are left out."""
    row_ids: dict[tuple[str, int], int] = {}
    for rj in rr.jobs if jobs is None else jobs:
        res = rr.plan.steps[rj.step].resources
        job = Job(
            run_id=rr.plan.run_id,
            step=rj.step,
            job_index=rj.job_index,
            chunk=rj.chunk,
            name=rj.name,
            array=rj.array,
            script=rj.script,
            tasks=rj.tasks,
            output=rj.output,
            deps=[
                [k, row_ids[(st, i)]] for k, st, i in rj.deps if jobs is None or (st, i) in row_ids
            ],
            cpus=res.cpus or 1,
            mem_mb=res.mem,
            time_s=res.time,
            gpus=res.gpus or 0,
        )
        s.add(job)
        s.flush()
        assert job.id is not None
        row_ids[(rj.step, rj.job_index)] = job.id
    return row_ids


def task_rows(
    plan: Plan, row_ids: dict[tuple[str, int], int], steps: list[str] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for name in plan.order if steps is None else steps:
        sp = plan.steps[name]
        for jp in sp.jobs:
            jid = row_ids[(name, jp.job_index)]
            for tid, idx in zip(jp.element_tasks, jp.elements):
                rows.append(
                    {
                        "run_id": plan.run_id,
                        "step": name,
                        "index": idx,
                        "job_id": jid,
                        "task_id": tid if jp.is_array else None,
                        "item": _item_of(sp, idx),
                        "state": TaskState.PENDING.value,
                        "attempts": 0,
                        "reason": None,
                    }
                )
    return rows


def submit(
    engine: Engine,
    runner: Runner,
    loaded: Loaded,
    site: Site,
    label: str | None = None,
    notes: list[str] | None = None,
    notify: list[NotifyEntry] | None = None,
) -> Submitted:
    """Record, then sbatch, a run; ``notes`` go into its history (e.g. right-sizing),
    ``notify`` adds targets for its end (a campaign's) to the site's and workflow's."""
    extra = list(notes or [])
    if site.containers.credentials:
        read_credentials(site.containers.credentials)  # refuse a readable file before anything
    rr = prepare(loaded, site, runner)
    notes = extra + write_run_dir(rr, runner, site.lustre.stripe_count)
    notes += pull_on_login(rr, loaded, site, runner)
    lock = RunLock(engine, rr.plan.run_id)
    lock.acquire()  # before the run is visible: nobody may think its submitter is dead
    try:
        record_run(engine, rr, loaded, site, label, notes, notify or []).publish(
            runner, {rr.plan.run_id: rr.plan.run_dir}
        )
        jobs = submit_planned(engine, runner, rr.plan.run_id, site)
    finally:
        lock.release()
    return Submitted(rr.plan.run_id, rr.plan.run_dir, jobs)


def submit_planned(
    engine: Engine, runner: Runner, run_id: str, site: Site, adopt: bool = False
) -> list[dict[str, Any]]:
    """sbatch every PLANNED job of the run in order. With ``adopt``, first look each job up
    by name and record it instead of submitting when Slurm already has it."""
    with session(engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        jobs = rows_.jobs_of(s, run_id)
        kinds = {r.name: StepKind(r.kind) for r in rows_.steps_of(s, run_id)}
    by_row = {j.id: j for j in jobs}
    client = SlurmClient.for_site(runner, site)
    since = run.submitted_at - timedelta(minutes=5)
    out: list[dict[str, Any]] = []
    for job in jobs:
        if job.status != JobStatus.PLANNED.value:
            continue
        spec = JobSpec(
            script=job.script,
            tasks=job.tasks,
            name=job.name,
            output=job.output,
            array=job.array,
            dependencies=tuple((k, sid) for k, r in job.deps if (sid := by_row[r].slurm_job_id)),
            extra=tuple(job.extra),
        )
        try:
            sid, how = _sbatch_or_adopt(client, spec, kinds[job.step], site, since, adopt)
        except SlurmError as e:
            abort(engine, runner, run_id, str(e).splitlines()[0])
            raise type(e)(
                f"{e}\n  run {run_id}: the jobs already submitted were cancelled; the run is "
                "recorded as CANCELLED"
            ) from e
        _record_submitted(engine, runner, run, job, sid, spec.dependency, how)
        out.append(
            {
                "step": job.step,
                "chunk": job.chunk,
                "job": job.job_index,
                "slurm_job_id": sid,
                "array": job.array,
            }
        )
    log = EventLog()
    with session(engine) as s:
        log.add(
            s,
            run_id=run_id,
            old_state="SUBMITTING",
            new_state=RunState.PENDING.value,
            reason="all jobs submitted" + (" (resumed)" if adopt else ""),
        )
        s.commit()
    log.publish(runner, {run_id: run.run_dir})
    return out


def _sbatch_or_adopt(
    client: SlurmClient, spec: JobSpec, kind: StepKind, site: Site, since: datetime, adopt: bool
) -> tuple[str, str]:
    # resuming after the submitter died: its last sbatch may have created the job, or may
    # still be on its way; settle_by_name waits for a responsive slurmctld to say so twice
    sid = client.settle_by_name(spec.name, since, 3) if adopt else None
    if sid:
        return sid, "adopted by job name"
    sid = client.sbatch(spec, since, job_env(kind, site))
    if adopt:
        client.cancel_duplicates(spec.name, since, sid)
    return sid, "submitted"


def _record_submitted(
    engine: Engine, runner: Runner, run: Run, job: Job, sid: str, dep: str | None, how: str
) -> None:
    job.slurm_job_id, job.dependency, job.status = sid, dep, JobStatus.SUBMITTED.value
    job.submitted_at = utcnow()
    log = EventLog()
    with session(engine) as s:
        s.add(job)
        log.add(
            s,
            run_id=run.id,
            step=job.step,
            kind=EventKind.SUBMITTED,
            slurm_job_id=sid,
            reason=f"job {job.job_index} {how}" + (f" --array={job.array}" if job.array else ""),
        )
        s.commit()
    log.publish(runner, {run.id: run.run_dir})


def abort(engine: Engine, runner: Runner, run_id: str, message: str) -> None:
    """Slurm refused a job: cancel the run's unfinished work (the jobs of this submission and
    anything still queued) and record it. Elements that already finished keep their state,
    so a refused `retry` loses nothing."""
    with session(engine) as s:
        jobs = {j.id: j for j in rows_.jobs_of(s, run_id)}
        open_tasks = [t for t in rows_.tasks_of(s, run_id) if TaskState(t.state) not in TERMINAL]
    live = [sid for t in open_tasks if (sid := jobs[t.job_id].slurm_job_id)]
    SlurmClient(runner).scancel(live)
    log = EventLog()
    with session(engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.cancelled = True
        for job in jobs.values():
            if job.status == JobStatus.PLANNED.value:
                job.status = JobStatus.NOT_SUBMITTED.value
                s.add(job)
        for t in open_tasks:
            move_task(s, log, t, TaskState.CANCELLED, "cancel", "submission aborted")
        move_run(s, log, run, RunState.CANCELLED.value, "abort", f"submission aborted: {message}")
        s.commit()
    log.publish(runner, {run_id: run.run_dir})


def resume_incomplete(engine: Engine, runner: Runner, site: Site, run_ids: list[str]) -> list[str]:
    """Runs with PLANNED jobs whose submitter is gone: adopt by name, submit the rest."""
    resumed = []
    for run_id in run_ids:
        with session(engine) as s:
            planned = rows_.planned_job(s, run_id)
        if planned is None:
            continue
        lock = RunLock(engine, run_id)
        if not lock.acquire(wait=False):
            continue  # its submitter is alive and working
        try:
            submit_planned(engine, runner, run_id, site, adopt=True)
            resumed.append(run_id)
        except SlurmUnavailable as e:
            log.warning(
                "run %s is not fully submitted and Slurm is not answering; it will be "
                "resumed by a later command (%s)",
                run_id,
                e,
            )
        finally:
            lock.release()
    return resumed
