"""Recovery: resubmit failed elements and what their failure took down, resolve by hand,
escalate out-of-memory and time-outs automatically.

Every job is submitted with --kill-on-invalid-dep=yes, so when an element fails Slurm cancels
the dependents that can no longer run (recorded UPSTREAM_FAILED). Repairing them therefore means
resubmitting them, with dependencies on the *new* jobs of the elements they wait for; nothing
that already succeeded is submitted again. Element-level dependencies come from the first-attempt
jobs' recorded dependencies: `aftercorr` pairs equal task ids, other kinds mean every element.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from hpcflow.compile.plan import compress_ids
from hpcflow.errors import BadUsage, HpcflowError, NotFound
from hpcflow.runners.base import Runner
from hpcflow.spec.site import Site
from hpcflow.states import HPCFLOW_MOVES, RETRYABLE, TaskState
from hpcflow.tracker.db import Job, Run, StepRow, Task, session
from hpcflow.tracker.events import EventLog, move_run, move_task
from hpcflow.tracker.refresh import escalatable
from hpcflow.tracker.submit import RunLock, submit_planned
from hpcflow.util.units import parse_duration_s, parse_mem_mb, slurm_time


@dataclass
class Resubmitted:
    tasks: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    by_step: dict[str, int] = field(default_factory=dict)


class _Graph:
    def __init__(self, jobs: list[Job], tasks: list[Task]):
        self.jobs = {j.id: j for j in jobs}
        self.orig = {j.id: (j.retry_of or j.id) for j in jobs}
        self.by_orig_tid = {(self.orig[t.job_id], t.task_id): t for t in tasks}
        self.tasks_of: dict[Any, list[Task]] = defaultdict(list)
        for t in tasks:
            self.tasks_of[self.orig[t.job_id]].append(t)
        self.down: dict[Any, list[tuple[str, int]]] = defaultdict(list)
        for j in jobs:
            if j.retry_of is None:
                for kind, up in json.loads(j.deps_json):
                    self.down[up].append((kind, j.id))  # type: ignore[arg-type]

    def dependents(self, t: Task) -> list[Task]:
        out: list[Task] = []
        for kind, d in self.down[self.orig[t.job_id]]:
            if kind == "aftercorr":
                x = self.by_orig_tid.get((d, t.task_id))
                if x is not None:
                    out.append(x)
            else:
                out.extend(self.tasks_of[d])
        return out

    def upstream(self, t: Task) -> list[tuple[str, Task]]:
        d = self.jobs[self.orig[t.job_id]]
        out: list[tuple[str, Task]] = []
        for kind, up in json.loads(d.deps_json):
            if kind == "aftercorr":
                x = self.by_orig_tid.get((up, t.task_id))
                if x is not None:
                    out.append((kind, x))
            else:
                out.extend((kind, x) for x in self.tasks_of[up])
        return out


_MEM = re.compile(r"^#SBATCH --mem=(\d+)M$", re.M)
_TIME = re.compile(r"^#SBATCH --time=(\S+)$", re.M)


def slurm_limits(runner: Runner, slurm_job_id: str) -> tuple[int | None, int | None]:
    """ReqMem (MB) and Timelimit (s) Slurm gave a job: what applied when the script set none."""
    res = runner.run(
        ["sacct", "-X", "-n", "-P", "--format=ReqMem,Timelimit", "-j", slurm_job_id], timeout=60
    )
    if not res.ok or not res.stdout.strip():
        return None, None
    mem_s, time_s = (res.stdout.splitlines()[0].split("|") + [""])[:2]
    mem = None
    with contextlib.suppress(ValueError):
        mem = parse_mem_mb(mem_s.rstrip("cn"))
    secs = None
    with contextlib.suppress(ValueError):
        secs = parse_duration_s(time_s)
    return mem, secs


def _scaled_flags(
    script: str,
    extra: list[str],
    mem_factor: float | None,
    time_factor: float | None,
    fallback: tuple[int | None, int | None],
) -> list[str]:
    """The job's current --mem/--time (script, overridden by earlier retries, else what Slurm
    gave it) times a factor."""
    mem = int(m.group(1)) if (m := _MEM.search(script)) else fallback[0]
    secs = parse_duration_s(t.group(1)) if (t := _TIME.search(script)) else fallback[1]
    for flag in extra:
        if flag.startswith("--mem="):
            mem = int(flag[6:].rstrip("M"))
        elif flag.startswith("--time="):
            secs = parse_duration_s(flag[7:])
    out = [f for f in extra if not f.startswith(("--mem=", "--time="))]
    if mem_factor and mem:
        mem = int(mem * mem_factor + 0.5)
    if time_factor and secs:
        secs = int(secs * time_factor + 0.5)
    if mem and (mem_factor or any(f.startswith("--mem=") for f in extra)):
        out.append(f"--mem={mem}M")
    if secs and (time_factor or any(f.startswith("--time=") for f in extra)):
        out.append(f"--time={slurm_time(secs)}")
    return out


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
) -> Resubmitted:
    """Resubmit ``seeds`` (task row ids) and every UPSTREAM_FAILED dependent reachable from
    them or from ``released`` (resolved elements, not resubmitted themselves). COMPLETED
    dependents are re-run only when their step is in ``rerun_steps``."""
    out = Resubmitted()
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
            jobs = list(s.exec(select(Job).where(Job.run_id == run_id)))
            tasks = list(s.exec(select(Task).where(Task.run_id == run_id)))
            position = {
                r.name: r.position for r in s.exec(select(StepRow).where(StepRow.run_id == run_id))
            }
            g = _Graph(jobs, tasks)
            by_id = {t.id: t for t in tasks}
            selected = set(seeds)
            queue = [by_id[i] for i in seeds + released]
            while queue:
                t = queue.pop()
                for x in g.dependents(t):
                    st = TaskState(x.state)
                    if x.id in selected or x.id in released:
                        continue
                    if st is TaskState.UPSTREAM_FAILED or (
                        st is TaskState.COMPLETED and x.step in rerun_steps
                    ):
                        selected.add(x.id)  # type: ignore[arg-type]
                        queue.append(x)
            if not selected:
                return out
            attempt_of: dict[int, int] = defaultdict(int)
            for j in jobs:
                attempt_of[g.orig[j.id]] = max(attempt_of[g.orig[j.id]], j.attempt)  # type: ignore[index]
            new_of: dict[int, Job] = {}
            per_orig: dict[Any, list[Task]] = defaultdict(list)
            for i in selected:
                per_orig[g.orig[by_id[i].job_id]].append(by_id[i])
            scripts: dict[str, str] = {}
            for orig_row in sorted(per_orig, key=lambda r: (position[g.jobs[r].step], r)):
                d = g.jobs[orig_row]
                groups: dict[frozenset[Any], list[Task]] = defaultdict(list)
                for t in sorted(per_orig[orig_row], key=lambda x: x.task_id or 0):
                    needs = frozenset(
                        (k, new_of[u.id].id)
                        for k, u in g.upstream(t)  # type: ignore[misc]
                        if u.id in selected
                    )
                    groups[needs].append(t)
                attempt = attempt_of[orig_row] + 1
                for k, (needs, ts) in enumerate(
                    sorted(groups.items(), key=lambda kv: sorted(kv[0]))
                ):
                    if d.script not in scripts:
                        scripts[d.script] = runner.read_file(d.script).decode()
                    extra = json.loads(g.jobs[ts[0].job_id].extra_json)
                    current = g.jobs[ts[0].job_id].slurm_job_id
                    fallback = (
                        slurm_limits(runner, current)
                        if current and (mem_factor or time_factor)
                        else (None, None)
                    )
                    flags = _scaled_flags(
                        scripts[d.script], extra, mem_factor, time_factor, fallback
                    )
                    ids = [t.task_id for t in ts if t.task_id is not None]
                    job = Job(
                        run_id=run_id,
                        step=d.step,
                        job_index=d.job_index,
                        chunk=d.chunk,
                        name=f"{d.name}.r{attempt}" + (f".{k}" if len(groups) > 1 else ""),
                        array=compress_ids(ids) if d.array else None,
                        script=d.script,
                        tasks=d.tasks,
                        output=d.output,
                        attempt=attempt,
                        retry_of=d.id,
                        deps_json=json.dumps(sorted([kk, r] for kk, r in needs)),
                        extra_json=json.dumps(flags),
                    )
                    s.add(job)
                    s.flush()
                    for t in ts:
                        new_of[t.id] = job  # type: ignore[index]
                        move_task(s, log, t, TaskState.PENDING, "retry", reason)
                        t.job_id = job.id  # type: ignore[assignment]
                        t.exit_code = None
                        t.start = t.end = t.node = None
                        s.add(t)
                        out.by_step[t.step] = out.by_step.get(t.step, 0) + 1
                    out.tasks += len(ts)
            run.cancelled = False
            move_run(s, log, run, "PENDING", "reopen", reason)
            log.add(s, run_id=run_id, new_state="SUBMITTING", reason=reason)
            s.commit()
            run_dir = run.run_dir
        log.publish(runner, {run_id: run_dir})
        out.jobs = submit_planned(engine, runner, run_id, site)
    finally:
        lock.release()
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
        names = {r.name for r in s.exec(select(StepRow).where(StepRow.run_id == run_id))}
        for st in steps:
            if st not in names:
                raise NotFound(
                    f"run {run_id} has no step {st!r} (steps: {', '.join(sorted(names))})"
                )
        tasks = list(s.exec(select(Task).where(Task.run_id == run_id)))
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
        t = s.exec(
            select(Task).where(Task.run_id == run_id, Task.step == step, Task.index == index)
        ).first()
        if t is None:
            raise NotFound(f"run {run_id} has no element {step}[{index}]")
        if TaskState(t.state) not in HPCFLOW_MOVES["resolve"]:
            raise HpcflowError(
                f"{step}[{index}] is {t.state}; only a failed element can be resolved"
            )
        move_task(s, log, t, TaskState.RESOLVED, "resolve", "hpcflow resolve")
        run = s.get(Run, run_id)
        assert run is not None
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
    for key, pairs in todo.items():
        by_factor: dict[float, list[int]] = defaultdict(list)
        for t, factor in pairs:
            by_factor[factor].append(t.id)  # type: ignore[arg-type]
        for factor, ids in by_factor.items():
            kw = {"mem_factor": factor} if key == "on_oom" else {"time_factor": factor}
            what = "mem_factor" if key == "on_oom" else "time_factor"
            r = resubmit(
                engine,
                runner,
                site,
                run_id,
                ids,
                [],
                set(),
                f"automatic {key}: {what} {factor}",
                **kw,
            )
            total.tasks += r.tasks
            total.jobs += r.jobs
    return total
