"""Submit a run: write its directory, then one sbatch per job in topological order, each
recorded in the tracker before the next. A refusal cancels what was already submitted."""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import select

from .compiler import compile_plan
from .db import Event, Job, Run, StepRow, Task, session, utcnow
from .errors import RunnerError, SlurmError
from .render import RenderedRun, _item_of, render_run
from .runner import Runner
from .site import Site
from .slurm import (
    SHOW_CONFIG_ARGV,
    dependency_string,
    max_array_size,
    parse_sbatch,
    parse_show_config,
    scancel_argv,
)
from .states import RunState, TaskState
from .validate import Loaded


def new_run_id(workflow: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{workflow}-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def run_dir_for(site: Site, workflow: str, run_id: str) -> str:
    return f"{site.scratch_root().rstrip('/')}/hpcflow/{workflow}/{run_id}"


def site_max_array_size(site: Site, runner: Runner) -> int:
    if site.limits.max_array_size:
        return site.limits.max_array_size
    res = runner.run(SHOW_CONFIG_ARGV, timeout=30)
    if not res.ok:
        raise SlurmError(
            f"`scontrol show config` failed: {res.stderr.strip() or res.stdout}; "
            "set limits.max_array_size in the site config"
        )
    return max_array_size(parse_show_config(res.stdout))


def prepare(loaded: Loaded, site: Site, runner: Runner, run_id: str | None = None) -> RenderedRun:
    run_id = run_id or new_run_id(loaded.workflow.name)
    m = site_max_array_size(site, runner)
    plan = compile_plan(loaded, site, m, run_id, run_dir_for(site, loaded.workflow.name, run_id))
    return render_run(plan, loaded, site)


def write_run_dir(rr: RenderedRun, runner: Runner) -> None:
    base = rr.plan.run_dir
    runner.makedirs(base, 0o750)
    for sub in ("scripts", "logs", "steps"):
        runner.makedirs(f"{base}/{sub}", 0o750)
    for name in rr.plan.order:
        runner.makedirs(f"{base}/logs/{name}", 0o750)
        runner.makedirs(f"{base}/steps/{name}", 0o750)
    for rel, content in rr.files.items():
        runner.write_file(f"{base}/{rel}", content, 0o750 if rel.endswith(".sh") else 0o640)


@dataclass
class Submitted:
    run_id: str
    run_dir: str
    jobs: list[dict[str, Any]]


def record_run(
    engine: Engine, rr: RenderedRun, loaded: Loaded, site: Site, label: str | None
) -> dict[tuple[str, int], int]:
    """Insert the run, its steps, jobs (PLANNED) and tasks (PENDING) in one transaction."""
    plan, wf = rr.plan, loaded.workflow
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
                params_json=json.dumps(loaded.params, default=str),
            )
        )
        s.flush()
        s.add(
            Event(
                run_id=plan.run_id,
                new_state="SUBMITTING",
                reason=f"{len(rr.jobs)} jobs, "
                f"{sum(sp.n_elements for sp in plan.steps.values())} elements",
            )
        )
        job_ids: dict[tuple[str, int], int] = {}
        for name in plan.order:
            sp = plan.steps[name]
            s.add(StepRow(run_id=plan.run_id, name=name, position=sp.position, total=sp.n_elements))
        for rj in rr.jobs:
            job = Job(
                run_id=plan.run_id,
                step=rj.step,
                job_index=rj.job_index,
                chunk=rj.chunk,
                name=rj.name,
                array=rj.array,
            )
            s.add(job)
            s.flush()
            assert job.id is not None
            job_ids[(rj.step, rj.job_index)] = job.id
        rows = []
        for name in plan.order:
            sp = plan.steps[name]
            for jp in sp.jobs:
                jid = job_ids[(name, jp.job_index)]
                for tid, idx in zip(jp.task_ids, jp.elements):
                    rows.append(
                        {
                            "run_id": plan.run_id,
                            "step": name,
                            "index": idx,
                            "job_id": jid,
                            "task_id": tid if jp.is_array else None,
                            "item_json": json.dumps(_item_of(sp, idx), default=str),
                            "state": TaskState.PENDING.value,
                            "attempts": 0,
                        }
                    )
        if rows:
            s.execute(insert(Task), rows)  # type: ignore[arg-type]
        s.commit()
    return job_ids


def submit(
    engine: Engine, runner: Runner, loaded: Loaded, site: Site, label: str | None = None
) -> Submitted:
    rr = prepare(loaded, site, runner)
    write_run_dir(rr, runner)
    job_ids = record_run(engine, rr, loaded, site, label)
    slurm_ids: dict[tuple[str, int], str] = {}
    out: list[dict[str, Any]] = []
    run_id = rr.plan.run_id
    for rj in rr.jobs:
        dep = dependency_string([(k, slurm_ids[(s, i)]) for k, s, i in rj.deps])
        argv = rj.argv(dep)
        try:
            res = runner.run(argv, timeout=120)
        except RunnerError as e:
            _abort(engine, runner, run_id, slurm_ids, str(e))
            raise SlurmError(
                f"submitting step {rj.step!r} job {rj.job_index} failed: {e}; "
                "already submitted jobs were cancelled"
            ) from e
        if not res.ok:
            msg = (res.stderr or res.stdout).strip()
            _abort(engine, runner, run_id, slurm_ids, msg)
            raise SlurmError(
                f"Slurm refused step {rj.step!r} job {rj.job_index}: {msg}\n"
                f"  command: {shlex.join(argv)}\n"
                f"  run {run_id}: the {len(slurm_ids)} job(s) already submitted "
                "were cancelled; the run is recorded as CANCELLED"
            )
        sid = parse_sbatch(res.stdout)
        slurm_ids[(rj.step, rj.job_index)] = sid
        with session(engine) as s:
            job = s.get(Job, job_ids[(rj.step, rj.job_index)])
            assert job is not None
            job.slurm_job_id, job.dependency, job.status = sid, dep, "SUBMITTED"
            s.add(job)
            s.add(
                Event(
                    run_id=run_id,
                    step=rj.step,
                    new_state="SUBMITTED",
                    slurm_job_id=sid,
                    reason=f"job {rj.job_index}" + (f" --array={rj.array}" if rj.array else ""),
                )
            )
            s.commit()
        out.append(
            {
                "step": rj.step,
                "chunk": rj.chunk,
                "job": rj.job_index,
                "slurm_job_id": sid,
                "array": rj.array,
            }
        )
    with session(engine) as s:
        s.add(
            Event(
                run_id=run_id,
                old_state="SUBMITTING",
                new_state=RunState.PENDING.value,
                reason="all jobs submitted",
            )
        )
        s.commit()
    return Submitted(run_id, rr.plan.run_dir, out)


def _abort(
    engine: Engine, runner: Runner, run_id: str, slurm_ids: dict[tuple[str, int], str], message: str
) -> None:
    if slurm_ids:
        runner.run(scancel_argv(list(slurm_ids.values())), timeout=60)
    with session(engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.state, run.cancelled, run.finished_at = RunState.CANCELLED.value, True, utcnow()
        s.add(run)
        for job in s.exec(select(Job).where(Job.run_id == run_id)).all():
            if job.status == "PLANNED":
                job.status = "NOT_SUBMITTED"
                s.add(job)
        for t in s.exec(select(Task).where(Task.run_id == run_id)).all():
            t.state, t.reason = TaskState.CANCELLED.value, "submission aborted"
            s.add(t)
        s.add(
            Event(
                run_id=run_id,
                old_state="SUBMITTING",
                new_state=RunState.CANCELLED.value,
                reason=f"submission aborted: {message}",
            )
        )
        s.commit()
