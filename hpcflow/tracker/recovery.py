"""Recovery: resubmit failed elements and what their failure took down, resolve by hand,
escalate out-of-memory and time-outs automatically. What to resubmit is decided by the pure
``resubmission.plan_resubmission``; this module gathers the rows and applies the plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.errors import BadUsage, HpcflowError, NotFound
from hpcflow.node.jobtool import line_index
from hpcflow.runners.base import Runner
from hpcflow.spec.site import Site
from hpcflow.states import HPCFLOW_MOVES, RETRYABLE, EventKind, TaskState
from hpcflow.store import rows as rows_
from hpcflow.store.db import Job, Run, Task, session
from hpcflow.store.handles import Orm
from hpcflow.store.runstate import derive_run_state, escalatable
from hpcflow.tracker.events import EventLog, move_run, move_task
from hpcflow.tracker.resubmission import (
    Graph,
    JobNode,
    NewJob,
    TaskNode,
    plan_resubmission,
)
from hpcflow.tracker.resubmission import (
    select as select_tasks,
)
from hpcflow.tracker.submit import RunLock, submit_planned


@dataclass
class Resubmitted:
    tasks: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    by_step: dict[str, int] = field(default_factory=dict)


def job_node(j: Job) -> JobNode:
    return JobNode(
        id=j.id,  # type: ignore[arg-type]
        step=j.step,
        name=j.name,
        is_array=j.array is not None,
        attempt=j.attempt,
        retry_of=j.retry_of,
        deps=tuple((k, r) for k, r in j.deps),
        extra=tuple(j.extra),
        mem_mb=j.mem_mb,
        time_s=j.time_s,
    )


def task_node(t: Task) -> TaskNode:
    return TaskNode(t.id, t.step, t.index, t.job_id, t.task_id, TaskState(t.state))  # type: ignore[arg-type]


def resubmit(
    engine: Engine,
    runner: Runner,
    site: Site,
    run_id: str,
    seeds: list[int],
    released: list[int],
    rerun_steps: set[str],
    reason: str,
    mem_factor: float | None = None,
    time_factor: float | None = None,
    exclude: frozenset[str] = frozenset(),
    node_fault: bool = False,
) -> Resubmitted:
    """Resubmit ``seeds`` (task row ids) and every UPSTREAM_FAILED dependent reachable from
    them or from ``released`` (resolved elements, not resubmitted themselves). COMPLETED
    dependents are re-run only when their step is in ``rerun_steps``. ``node_fault``: a
    node's fault resubmits the seeds (counted: task.node_retries), away from ``exclude``."""
    lock = RunLock(engine, run_id)
    if not lock.acquire(wait=False):
        raise HpcflowError(
            f"run {run_id} is being submitted by another hpcflow process; "
            "try again when it has finished"
        )
    try:
        log = EventLog()
        with session(engine) as s:
            run = s.get(Run, run_id)
            assert run is not None
            jobs = {j.id: j for j in rows_.jobs_of(s, run_id)}
            tasks = {t.id: t for t in rows_.tasks_of(s, run_id)}
            steps = rows_.steps_of(s, run_id)
            positions = {r.name: r.position for r in steps}
            packed = {r.name for r in steps if r.pack > 1}
            jn = [job_node(j) for j in jobs.values()]
            tn = [task_node(t) for t in tasks.values()]
            picked = select_tasks(Graph(jn, tn), seeds, released, rerun_steps)
            if not picked:
                return Resubmitted()
            plan = plan_resubmission(jn, tn, positions, picked, mem_factor, time_factor, exclude)
            files = packed_tasks_files(runner, jobs, tasks, plan, packed)
            out = _apply(s, log, jobs, tasks, plan, reason, files)
            if node_fault:
                rows_.add_node_retries(s, seeds)
            run.cancelled = False
            move_run(s, log, run, "PENDING", "reopen", reason)
            log.add(s, EventKind.SUBMITTING, run_id=run_id, reason=reason)
            s.commit()
            run_dir = run.run_dir
        log.publish(runner, {run_id: run_dir})
        out.jobs = submit_planned(engine, runner, run_id, site)
    finally:
        lock.release()
    return out


def _apply(
    s: Orm,
    log: EventLog,
    jobs: dict[Any, Job],
    tasks: dict[Any, Task],
    plan: list[NewJob],
    reason: str,
    files: dict[int, str],
) -> Resubmitted:
    """Insert the planned jobs (PLANNED) and move their elements to PENDING. ``files``: the
    tasks file of each planned job (by position) that has its own."""
    out = Resubmitted()
    new_ids: list[int] = []
    for pos, nj in enumerate(plan):
        like = jobs[nj.like]
        job = Job(
            run_id=like.run_id,
            step=like.step,
            job_index=like.job_index,
            chunk=like.chunk,
            name=nj.name,
            array=nj.array,
            script=like.script,
            tasks=files.get(pos, like.tasks),
            output=like.output,
            attempt=nj.attempt,
            retry_of=like.id,
            deps=[[k, new_ids[i]] for k, i in nj.deps],
            extra=nj.extra,
            cpus=like.cpus,
            gpus=like.gpus,
            mem_mb=nj.mem_mb,
            time_s=nj.time_s,
        )
        s.add(job)
        s.flush()
        new_ids.append(job.id)  # type: ignore[arg-type]
        for tid in nj.tasks:
            t = tasks[tid]
            move_task(s, log, t, TaskState.PENDING, "retry", reason)
            t.job_id = job.id  # type: ignore[assignment]
            t.exit_code = None
            t.start = t.end = t.node = None
            t.usage = None  # the new attempt's, once its chunk ends
            t.absent_at = None  # a new Slurm task: not missed yet
            s.add(t)
            out.by_step[t.step] = out.by_step.get(t.step, 0) + 1
        out.tasks += len(nj.tasks)
    return out


def packed_tasks_files(
    runner: Runner,
    jobs: dict[Any, Job],
    tasks: dict[Any, Task],
    plan: list[NewJob],
    packed: set[str],
) -> dict[int, str]:
    """A resubmitted packed task runs only its selected elements, not every element its first
    attempt held: each such job gets a tasks file with only their lines (same task ids, so
    `aftercorr` links stay exact). Written before anything is recorded."""
    out: dict[int, str] = {}
    cache: dict[str, list[str]] = {}
    for pos, nj in enumerate(plan):
        like = jobs[nj.like]
        if like.step not in packed:
            continue
        if like.tasks not in cache:
            # split at \n only, as awk reads it (splitlines also splits at U+2028)
            cache[like.tasks] = runner.read_file(like.tasks).decode().split("\n")
        wanted = {tasks[i].index for i in nj.tasks}
        lines = [ln for ln in cache[like.tasks] if line_index(ln) in wanted]
        suffix = nj.name.removeprefix(like.name + ".")  # r<attempt>[.<k>]
        path = f"{like.tasks.removesuffix('.tasks')}.{suffix}.tasks"
        runner.write_file(path, "\n".join(lines) + "\n")
        out[pos] = path
    return out


def retry(
    engine: Engine,
    runner: Runner,
    site: Site,
    run_id: str,
    steps: list[str],
    indices: list[int],
    mem_factor: float | None,
    time_factor: float | None,
) -> Resubmitted:
    if indices and len(steps) != 1:
        raise BadUsage("--index needs exactly one --step (element indices are per step)")
    with session(engine) as s:
        names = {r.name for r in rows_.steps_of(s, run_id)}
        for st in steps:
            if st not in names:
                raise NotFound(
                    f"run {run_id} has no step {st!r} (steps: {', '.join(sorted(names))})"
                )
        tasks = rows_.tasks_of(s, run_id)
    seeds = [
        t.id
        for t in tasks
        if TaskState(t.state) in RETRYABLE
        and (not steps or t.step in steps)
        and (not indices or t.index in indices)
    ]
    if indices:
        missing = set(indices) - {t.index for t in tasks if t.step == steps[0]}
        if missing:
            raise NotFound(f"step {steps[0]!r} has no element {sorted(missing)[0]}")
    parts = [
        f"--mem-factor {mem_factor}" if mem_factor else "",
        f"--time-factor {time_factor}" if time_factor else "",
    ]
    reason = " ".join(["hpcflow retry", *[p for p in parts if p]])
    return resubmit(
        engine,
        runner,
        site,
        run_id,
        [i for i in seeds if i is not None],
        [],
        set(steps),
        reason,
        mem_factor,
        time_factor,
    )


def resolve(
    engine: Engine, runner: Runner, site: Site, run_id: str, step: str, index: int
) -> Resubmitted:
    log = EventLog()
    with session(engine) as s:
        t = rows_.task_at(s, run_id, step, index)
        if t is None:
            raise NotFound(f"run {run_id} has no element {step}[{index}]")
        if TaskState(t.state) not in HPCFLOW_MOVES["resolve"]:
            raise HpcflowError(
                f"{step}[{index}] is {t.state}; only a failed element can be resolved"
            )
        move_task(s, log, t, TaskState.RESOLVED, "resolve", "hpcflow resolve")
        run = s.get(Run, run_id)
        assert run is not None
        # nothing left that failed (and nothing for the resubmission below to release)
        move_run(s, log, run, derive_run_state(s, run), "resolve", "every element succeeded")
        s.commit()
        tid, run_dir = t.id, run.run_dir
    log.publish(runner, {run_id: run_dir})
    assert tid is not None
    return resubmit(
        engine,
        runner,
        site,
        run_id,
        [],
        [tid],
        set(),
        f"released by hpcflow resolve {step} {index}",
    )


def escalate(engine: Engine, runner: Runner, site: Site, run_id: str) -> Resubmitted:
    """Apply steps' `retry.on_oom` / `retry.on_timeout` to elements that ran out of memory or
    time, while they have attempts left (attempts = times Slurm started the element)."""
    total = Resubmitted()
    with session(engine) as s:
        todo = escalatable(s, run_id)
    for (key, what, factor), ids in todo.items():
        mem, time_ = (factor, None) if what == "mem_factor" else (None, factor)
        r = resubmit(engine, runner, site, run_id, ids, [], set(),
                     f"automatic {key}: {what} {factor}", mem, time_)  # fmt: skip
        total.tasks += r.tasks
        total.jobs += r.jobs
    return total
