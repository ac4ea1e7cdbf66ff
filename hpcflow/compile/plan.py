"""Workflow -> plan of Slurm jobs. Pure: no I/O, no Slurm.

Layout rule (docs/compiler.md): steps linked by ``each`` form a component. All steps of a
component vary, along the array task id, over the same *base axes* (the axes every step of the
component has), laid out over the same canonical values and cut into the same chunks of at most
MaxArraySize positions. Every other axis of a step is a *group axis*: one array job per value of
the group axes and per chunk. Task ids then line up, so ``each`` becomes ``aftercorr`` between
jobs of the same chunk whose groups agree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from hpcflow.containers.images import remote_images
from hpcflow.errors import InvalidInput
from hpcflow.spec.dataflow import CLEANUP_STEP, PULL_STEP
from hpcflow.spec.dynamic import EXPAND_STEP
from hpcflow.spec.expand import n_elements
from hpcflow.spec.packing import UNPACKED, Pack, resolve_pack, task_resources
from hpcflow.spec.site import Site
from hpcflow.spec.sitefit import effective_resources
from hpcflow.spec.validate import Loaded
from hpcflow.spec.workflow import AfterKind, Resources, Retry, Step
from hpcflow.states import StepKind

SLURM_KIND = {"ok": "afterok", "any": "afterany", "notok": "afternotok", "each": "aftercorr"}


@dataclass
class JobPlan:
    step: str
    job_index: int
    chunk: int
    group: dict[str, Any]
    task_ids: list[int] = field(default_factory=list)  # distinct array task ids, sorted
    elements: list[int] = field(default_factory=list)
    element_tasks: list[int] = field(default_factory=list)  # the task id of each element
    deps: list[tuple[str, str, int]] = field(default_factory=list)  # (slurm kind, step, job)
    is_array: bool = False
    throttle: int | None = None

    def __post_init__(self) -> None:
        if not self.element_tasks and len(self.task_ids) == len(self.elements):
            self.element_tasks = list(self.task_ids)

    @property
    def array_spec(self) -> str | None:
        if not self.is_array:
            return None
        spec = compress_ids(self.task_ids)
        return f"{spec}%{self.throttle}" if self.throttle else spec


@dataclass
class StepPlan:
    name: str
    position: int
    step: Step
    axes: dict[str, list[Any]]
    base_axes: list[str]
    group_axes: list[str]
    n_elements: int
    resources: Resources  # what one array task asks for (packing multiplies the element's)
    retry: Retry
    jobs: list[JobPlan] = field(default_factory=list)
    upstream_each: list[str] = field(default_factory=list)
    extra_after: dict[str, str] = field(default_factory=dict)  # e.g. the image pull job
    pack: Pack = UNPACKED
    element_resources: Resources | None = None  # one element's, when packed
    # `each` upstreams packed differently: the link is afterany on the upstream chunk, and
    # each element checks its own upstream element's result when it starts
    loose_each: list[str] = field(default_factory=list)
    kind: StepKind = StepKind.USER  # hpcflow's own steps say so here, not by their names

    @cached_property
    def value_index(self) -> dict[str, dict[Any, int]]:
        return {a: {v: i for i, v in enumerate(vals)} for a, vals in self.axes.items()}


@dataclass
class Plan:
    workflow: str
    run_id: str
    run_dir: str
    max_array_size: int
    steps: dict[str, StepPlan]
    order: list[str]
    pull_images: list[str] = field(default_factory=list)  # pulled by the hpcflow-pull job

    @property
    def jobs(self) -> list[JobPlan]:
        return [j for name in self.order for j in self.steps[name].jobs]


def compress_ids(ids: list[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (Slurm's --array syntax)."""
    out: list[str] = []
    start = prev = None
    for i in ids:
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def _components(loaded: Loaded) -> dict[str, list[str]]:
    """step -> the (topologically ordered) steps of its each-component."""
    parent = {n: n for n in loaded.order}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s in loaded.workflow.steps:
        for up, kind in s.after.items():
            if kind == "each":
                parent[find(s.name)] = find(up)
    groups: dict[str, list[str]] = {}
    for n in loaded.order:
        groups.setdefault(find(n), []).append(n)
    return {n: groups[find(n)] for n in loaded.order}


def compile_plan(
    loaded: Loaded, site: Site | None, max_array_size: int, run_id: str, run_dir: str
) -> Plan:
    wf = loaded.workflow
    steps_by = {s.name: s for s in wf.steps}
    comps = _components(loaded)
    M = max_array_size
    plans: dict[str, StepPlan] = {}
    canon_cache: dict[tuple[str, ...], tuple[list[str], dict[str, dict[Any, int]], list[int]]] = {}
    problems = []
    array_steps = sum(1 for s in wf.steps if s.foreach)
    later = loaded.deferral.deferred  # laid out when the producers have written their files
    for pos, name in enumerate(loaded.order):
        if name in later:
            continue
        step = steps_by[name]
        axes = loaded.axes[name]
        comp = tuple(comps[name])
        if comp not in canon_cache:
            first = loaded.axes[comp[0]]
            base = [a for a in first if all(a in loaded.axes[o] for o in comp)]
            if len(comp) > 1 and not base:
                i = next(k for k, s in enumerate(wf.steps) if s.name == name)
                problems.append(
                    loaded.doc.problem(
                        ("steps", i, "after"),
                        f"steps {', '.join(comp)} are chained with `each` but no foreach axis is "
                        "common to all of them, so their arrays cannot line up; add the axis to "
                        "every step of the chain or use ok/any instead of each",
                    )
                )
                continue
            canon: dict[str, dict[Any, int]] = {}
            for a in base:
                seen: dict[Any, int] = {}
                for o in comp:
                    for v in loaded.axes[o][a]:
                        seen.setdefault(v, len(seen))
                canon[a] = seen
            radix = [len(canon[a]) for a in base]
            canon_cache[comp] = (base, canon, radix)
        base, canon, radix = canon_cache[comp]
        group_axes = [a for a in axes if a not in base]
        retry = step.retry or wf.defaults.retry or Retry()
        throttle = step.throttle or wf.defaults.throttle
        element = effective_resources(wf, step, site)
        n = n_elements(axes) if step.foreach else 1
        pack = resolve_pack(step.pack, n, element, site, array_steps)
        sp = StepPlan(
            name=name,
            position=pos,
            step=step,
            axes=axes,
            base_axes=base,
            group_axes=group_axes,
            n_elements=0,
            resources=task_resources(element, pack),
            retry=retry,
            upstream_each=[u for u, k in step.after.items() if k == "each"],
            pack=pack,
            element_resources=element if pack.packed else None,
        )
        if not step.foreach:
            sp.n_elements = 1
            sp.jobs = [JobPlan(name, 0, 0, {}, [0], [0], is_array=False)]
        else:
            _layout(sp, base, canon, radix, M, throttle)
        plans[name] = sp
    if problems:
        raise InvalidInput(problems)
    order = [n for n in loaded.order if n not in later]
    pulls = images_to_pull(loaded, site)
    if pulls:
        plans[PULL_STEP] = pull_step(site, pulls)
        order.insert(0, PULL_STEP)
        for name in loaded.order:
            if name in plans and step_image(loaded, steps_by[name]) in pulls:
                plans[name].extra_after[PULL_STEP] = "ok"
    if later:
        plans[EXPAND_STEP] = expand_step(loaded, site, pulls, len(loaded.order))
        order.append(EXPAND_STEP)
    if wf.cleanup != "never":
        plans[CLEANUP_STEP] = cleanup_step(loaded, site, plans, len(order))
        order.append(CLEANUP_STEP)
    for name in order:
        _link(plans[name], plans, M)
    return Plan(wf.name, run_id, run_dir, M, plans, order, pulls)


def array_tasks(loaded: Loaded, site: Site | None) -> dict[str, int]:
    """Array tasks (Slurm jobs, for MaxSubmitJobs) each step puts in the queue: a packed
    step counts its tasks, not its elements."""
    wf = loaded.workflow
    n_array = sum(1 for s in wf.steps if s.foreach)
    out = {}
    for s in wf.steps:
        if s.name in loaded.deferral.deferred:
            continue  # not known before the expansion
        n = n_elements(loaded.axes[s.name]) if s.foreach else 1
        pack = resolve_pack(s.pack, n, effective_resources(wf, s, site), site, n_array)
        out[s.name] = pack.tasks(n)
    return out


def step_image(loaded: Loaded, step: Step) -> str | None:
    spec = step.container or loaded.workflow.defaults.container
    if spec is None:
        return None
    return (loaded.workflow.containers[spec] if isinstance(spec, str) else spec).image


def remote_images_used(loaded: Loaded) -> list[str]:
    """Remote images named by the workflow's container steps (sorted, once each)."""
    used = [step_image(loaded, s) for s in loaded.workflow.steps]
    return remote_images([i for i in used if i])


def images_to_pull(loaded: Loaded, site: Site | None) -> list[str]:
    """Remote images used by container steps, when this site pulls them in a job."""
    if site is None or site.containers.runtime == "none" or site.containers.pull != "job":
        return []
    return remote_images_used(loaded)


def _small_job(site: Site | None, time: str) -> Resources:
    return Resources(
        cpus=1,
        mem="1G",
        time=time,
        partition=site.default_partition() if site else None,
        account=site.account if site else None,
    )


def _own_step(name: str, kind: StepKind, position: int, after: dict[str, AfterKind],
              time: str, site: Site | None) -> StepPlan:  # fmt: skip
    """One of hpcflow's own steps: a single small job; its kind says what it is."""
    step = Step.model_construct(name=name, run=":", after=after)
    sp = StepPlan(name, position, step, {}, [], [], 1, _small_job(site, time), Retry(), kind=kind)
    sp.jobs = [JobPlan(name, 0, 0, {}, [0], [0], is_array=False)]
    return sp


def pull_step(site: Site | None, images: list[str]) -> StepPlan:
    """One job that pulls every remote image into the site's image cache; container steps
    depend on it (afterok). Position -1: listed first, never an `upstream` of anything."""
    return _own_step(PULL_STEP, StepKind.PULL, -1, {}, "1h", site)


def expand_step(loaded: Loaded, site: Site | None, pulls: list[str], position: int) -> StepPlan:
    """The job after the producers that expands the dynamic foreach (docs/dynamic.md): afterok
    on every producer, and on the image pull when a deferred step uses a pulled image, so a
    failed producer leaves it (and so the deferred steps) UPSTREAM_FAILED."""
    after: dict[str, AfterKind] = {p: "ok" for p in loaded.deferral.producers}
    by = {s.name: s for s in loaded.workflow.steps}
    if any(step_image(loaded, by[n]) in pulls for n in loaded.deferral.deferred):
        after[PULL_STEP] = "ok"
    return _own_step(EXPAND_STEP, StepKind.EXPAND, position, after, "30m", site)


def cleanup_step(
    loaded: Loaded, site: Site | None, plans: dict[str, StepPlan], position: int
) -> StepPlan:
    """The final job that removes the run's scratch. on_success: afterok on every job except
    compensation steps (which only run on failure), so Slurm runs it only if all succeeded;
    always: afterany on every job."""
    wf = loaded.workflow
    after: dict[str, AfterKind]
    if wf.cleanup == "always":
        after = {n: "any" for n in plans}
    else:
        after = {n: "ok" for n, p in plans.items() if "notok" not in p.step.after.values()}
    return _own_step(CLEANUP_STEP, StepKind.CLEANUP, position, after, "30m", site)


def _layout(
    sp: StepPlan,
    base: list[str],
    canon: dict[str, dict[Any, int]],
    radix: list[int],
    M: int,
    throttle: int | None,
) -> None:
    names = list(sp.axes)
    base_pos = [names.index(a) for a in base]
    group_pos = [names.index(a) for a in sp.group_axes]
    canon_maps = [canon[a] for a in base]
    size = sp.pack.size
    jobs: dict[tuple[tuple[Any, ...], int], JobPlan] = {}
    n = 0
    for idx, elem in enumerate(itertools.product(*sp.axes.values())):
        p = 0
        for r, cmap, bp in zip(radix, canon_maps, base_pos):
            p = p * r + cmap[elem[bp]]
        chunk, tid = divmod(p // size, M)
        key = (tuple(elem[g] for g in group_pos), chunk)
        job = jobs.get(key)
        if job is None:
            job = JobPlan(
                sp.name,
                0,
                chunk,
                dict(zip(sp.group_axes, key[0])),
                is_array=True,
                throttle=throttle,
            )
            jobs[key] = job
        if not job.task_ids or job.task_ids[-1] != tid:
            job.task_ids.append(tid)
        job.elements.append(idx)
        job.element_tasks.append(tid)
        n = idx + 1
    sp.n_elements = n
    ordered = list(jobs.values())
    group_rank: dict[tuple[Any, ...], int] = {}
    for g, _c in jobs:
        group_rank.setdefault(g, len(group_rank))
    ordered.sort(key=lambda j: (group_rank[tuple(j.group.values())], j.chunk))
    for i, job in enumerate(ordered):
        job.job_index = i
        if sorted(job.element_tasks) != job.element_tasks or len(set(job.task_ids)) != len(
            job.task_ids
        ):
            pairs = sorted(zip(job.element_tasks, job.elements))
            job.element_tasks = [t for t, _ in pairs]
            job.elements = [e for _, e in pairs]
            job.task_ids = sorted(set(job.element_tasks))
    sp.jobs = ordered


def _positions(sp: StepPlan, job: JobPlan, M: int) -> range:
    """The component positions a job's chunk covers."""
    per_chunk = M * sp.pack.size
    return range(job.chunk * per_chunk, (job.chunk + 1) * per_chunk)


def _link(sp: StepPlan, plans: dict[str, StepPlan], M: int) -> None:
    sp.loose_each = [
        u for u, k in sp.step.after.items() if k == "each" and plans[u].pack.size != sp.pack.size
    ]
    for job in sp.jobs:
        deps: list[tuple[str, str, int]] = []
        for up, kind in {**sp.step.after, **sp.extra_after}.items():
            upp = plans[up]
            if kind == "each":
                mine = _positions(sp, job, M)
                for uj in upp.jobs:
                    if not all(job.group.get(a, v) == v for a, v in uj.group.items()):
                        continue
                    if up not in sp.loose_each and uj.chunk == job.chunk:
                        # equal packs: task i holds the same elements in both steps
                        deps.append(("aftercorr", up, uj.job_index))
                    elif up in sp.loose_each:
                        theirs = _positions(upp, uj, M)
                        if theirs.start < mine.stop and mine.start < theirs.stop:
                            deps.append(("afterany", up, uj.job_index))
            else:
                deps.extend((SLURM_KIND[kind], up, uj.job_index) for uj in upp.jobs)
        job.deps = deps


def upstream_index(up: StepPlan, item: dict[str, Any]) -> int | None:
    """Element index of the unique matching upstream element, or None if not unique."""
    if any(a not in item for a in up.axes):
        return None
    idx = 0
    for a, vals in up.axes.items():
        idx = idx * len(vals) + up.value_index[a][item[a]]
    return idx
