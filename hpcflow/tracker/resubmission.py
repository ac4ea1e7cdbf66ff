"""What a retry resubmits, as a pure function of the run's jobs and elements.

Every job is submitted with --kill-on-invalid-dep=yes, so when an element fails Slurm cancels
the dependents that can no longer run (recorded UPSTREAM_FAILED). Repairing them therefore means
resubmitting them, with dependencies on the *new* jobs of the elements they wait for; nothing
that already succeeded is submitted again. Element-level dependencies come from the first-attempt
jobs' recorded dependencies: `aftercorr` pairs equal task ids, other kinds mean every element.
Memory and time come from the job rows (what the compiler asked for, or an earlier retry).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from hpcflow.compile.plan import compress_ids
from hpcflow.errors import BadUsage
from hpcflow.slurm.nodes import exclude_flag
from hpcflow.states import TaskState
from hpcflow.util.units import slurm_time


@dataclass(frozen=True)
class JobNode:
    id: int
    step: str
    name: str
    is_array: bool
    attempt: int = 0
    retry_of: int | None = None
    deps: tuple[tuple[str, int], ...] = ()  # (kind, job row id), first attempts only
    extra: tuple[str, ...] = ()
    mem_mb: int | None = None
    time_s: int | None = None


@dataclass(frozen=True)
class TaskNode:
    id: int
    step: str
    index: int
    job_id: int
    task_id: int | None
    state: TaskState


@dataclass
class NewJob:
    """One job to insert and submit. ``deps`` name other new jobs by their position in the
    plan's list, which is also the order to submit them in."""

    like: int  # the first-attempt job row it repeats (script, tasks file, log, chunk)
    name: str  # also names its own tasks file when the step is packed (only these elements)
    array: str | None
    attempt: int
    tasks: list[int]  # task row ids it runs
    deps: list[tuple[str, int]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mem_mb: int | None = None
    time_s: int | None = None


class Graph:
    """Element-level dependencies of a run, through the first-attempt jobs."""

    def __init__(self, jobs: Iterable[JobNode], tasks: Iterable[TaskNode]):
        self.jobs = {j.id: j for j in jobs}
        self.orig = {j.id: (j.retry_of or j.id) for j in self.jobs.values()}
        self.tasks = {t.id: t for t in tasks}
        # a packed array task holds several elements: all of them share its task id
        self.by_orig_tid: dict[tuple[int, int | None], list[TaskNode]] = defaultdict(list)
        self.tasks_of: dict[int, list[TaskNode]] = defaultdict(list)
        for t in self.tasks.values():
            self.by_orig_tid[(self.orig[t.job_id], t.task_id)].append(t)
            self.tasks_of[self.orig[t.job_id]].append(t)
        self.down: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for j in self.jobs.values():
            if j.retry_of is None:
                for kind, up in j.deps:
                    self.down[up].append((kind, j.id))

    def _linked(self, kind: str, job: int, t: TaskNode) -> list[TaskNode]:
        if kind == "aftercorr":
            return list(self.by_orig_tid.get((job, t.task_id), ()))
        return list(self.tasks_of[job])

    def dependents(self, t: TaskNode) -> list[TaskNode]:
        return [x for kind, d in self.down[self.orig[t.job_id]] for x in self._linked(kind, d, t)]

    def upstream(self, t: TaskNode) -> list[tuple[str, TaskNode]]:
        d = self.jobs[self.orig[t.job_id]]
        return [(kind, x) for kind, up in d.deps for x in self._linked(kind, up, t)]


def select(g: Graph, seeds: list[int], released: list[int], rerun_steps: set[str]) -> set[int]:
    """``seeds`` plus every UPSTREAM_FAILED dependent reachable from them or from ``released``
    (resolved elements, not resubmitted themselves); COMPLETED dependents only in
    ``rerun_steps``."""
    selected = set(seeds)
    queue = [g.tasks[i] for i in seeds + released]
    while queue:
        t = queue.pop()
        for x in g.dependents(t):
            if x.id in selected or x.id in released:
                continue
            if x.state is TaskState.UPSTREAM_FAILED or (
                x.state is TaskState.COMPLETED and x.step in rerun_steps
            ):
                selected.add(x.id)
                queue.append(x)
    return selected


def scaled(
    job: JobNode, first: JobNode, mem_factor: float | None, time_factor: float | None
) -> tuple[int | None, int | None, list[str]]:
    """(mem MB, time s, extra flags) for a resubmission of ``job``: its memory and time times
    the factors; flags override the script's values whenever they differ from the first
    attempt's."""
    mem, secs = job.mem_mb, job.time_s
    for what, have, factor in (("mem", mem, mem_factor), ("time", secs, time_factor)):
        if factor and have is None:
            raise BadUsage(
                f"step {job.step!r} asks Slurm for no {what} (resources.{what} is not set), so "
                f"there is nothing to multiply by the {what}-factor; set resources.{what}"
            )
    if mem_factor and mem:
        mem = int(mem * mem_factor + 0.5)
    if time_factor and secs:
        secs = int(secs * time_factor + 0.5)
    # a row from before hpcflow stored resources keeps the overrides its retry had
    keep: tuple[str, ...] = ("--mem=",) if mem is None else ()
    keep += ("--time=",) if secs is None else ()
    flags = [f for f in job.extra if not f.startswith(("--mem=", "--time=")) or f.startswith(keep)]
    if mem is not None and mem != first.mem_mb:
        flags.append(f"--mem={mem}M")
    if secs is not None and secs != first.time_s:
        flags.append(f"--time={slurm_time(secs)}")
    return mem, secs, flags


def plan_resubmission(
    jobs: Iterable[JobNode],
    tasks: Iterable[TaskNode],
    positions: dict[str, int],
    selected: set[int],
    mem_factor: float | None = None,
    time_factor: float | None = None,
    exclude: frozenset[str] = frozenset(),
) -> list[NewJob]:
    """The new jobs for the ``selected`` task rows, in submission order: per first-attempt job
    (upstream steps first), one job per distinct set of new upstream jobs; kept off the
    ``exclude`` nodes (a node's fault, docs/faults.md)."""
    g = Graph(jobs, tasks)
    attempt_of: dict[int, int] = defaultdict(int)
    for j in g.jobs.values():
        attempt_of[g.orig[j.id]] = max(attempt_of[g.orig[j.id]], j.attempt)
    per_orig: dict[int, list[TaskNode]] = defaultdict(list)
    for i in selected:
        per_orig[g.orig[g.tasks[i].job_id]].append(g.tasks[i])
    out: list[NewJob] = []
    new_of: dict[int, int] = {}  # task row id -> position of its new job
    for orig in sorted(per_orig, key=lambda r: (positions[g.jobs[r].step], r)):
        first = g.jobs[orig]
        groups: dict[frozenset[tuple[str, int]], list[TaskNode]] = defaultdict(list)
        for t in sorted(per_orig[orig], key=lambda x: x.task_id or 0):
            needs = frozenset((k, new_of[u.id]) for k, u in g.upstream(t) if u.id in selected)
            groups[needs].append(t)
        attempt = attempt_of[orig] + 1
        for k, (needs, ts) in enumerate(sorted(groups.items(), key=lambda kv: sorted(kv[0]))):
            mem, secs, flags = scaled(g.jobs[ts[0].job_id], first, mem_factor, time_factor)
            if exclude:
                flags = exclude_flag(flags, exclude)
            ids = sorted({t.task_id for t in ts if t.task_id is not None})
            for t in ts:
                new_of[t.id] = len(out)
            out.append(
                NewJob(
                    like=orig,
                    name=f"{first.name}.r{attempt}" + (f".{k}" if len(groups) > 1 else ""),
                    array=compress_ids(ids) if first.is_array else None,
                    attempt=attempt,
                    tasks=[t.id for t in ts],
                    deps=sorted(needs),
                    extra=flags,
                    mem_mb=mem,
                    time_s=secs,
                )
            )
    return out
