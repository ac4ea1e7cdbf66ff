"""Element packing (docs/packing.md): how many elements one Slurm array task runs, and what
the task then asks Slurm for. Pure functions of the step, its element count and the site."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcflow.spec.site import Site
from hpcflow.spec.units import duration_text
from hpcflow.spec.workflow import PackSpec, Resources


@dataclass(frozen=True)
class Pack:
    """``size`` elements per array task, ``parallel`` of them at once."""

    size: int = 1
    parallel: int = 1
    why: str = ""  # how `auto` chose the size, for validate --site

    @property
    def packed(self) -> bool:
        return self.size > 1

    def tasks(self, n_elements: int) -> int:
        return math.ceil(n_elements / self.size) if n_elements else 0


UNPACKED = Pack()


def resolve_pack(
    spec: PackSpec | None,
    n_elements: int,
    element: Resources,
    site: Site | None,
    array_steps: int = 1,
) -> Pack:
    """The pack of a step with ``n_elements`` elements. ``auto`` takes the smallest size that
    keeps the run's queued array tasks within the site's MaxSubmitJobs (shared by the run's
    ``array_steps`` foreach steps, which are all queued at once) and makes a task last at least
    the site's ``min_task_time`` (from the per-element ``time``), without going over the
    partition's time limit."""
    if spec is None or n_elements <= 1:
        return UNPACKED
    k = min(spec.parallel, n_elements)
    if spec.size != "auto":
        return Pack(min(spec.size, n_elements), k)
    reasons: list[str] = []
    size = k
    elem_s = element.time
    if site is not None and elem_s:
        rounds = math.ceil(site.limits.min_task_time / elem_s)
        if rounds * k > size:
            size = rounds * k
            reasons.append(
                f"tasks of at least min_task_time {duration_text(site.limits.min_task_time)}"
            )
    budget = site.limits.max_submit_jobs if site is not None else None
    if budget:
        share = max(1, budget // max(1, array_steps))
        need = math.ceil(math.ceil(n_elements / share) / k) * k
        if need > size:
            size = need
            reasons.append(f"at most {share} queued tasks (MaxSubmitJobs {budget})")
    cap = _size_cap(element, site, k)
    if cap is not None and size > cap:
        size = cap
        reasons.append(f"capped at {cap} by the partition's time limit")
    size = min(size, n_elements)
    return Pack(size, min(k, size), "; ".join(reasons) or "no limit asks for packing")


def _size_cap(element: Resources, site: Site | None, k: int) -> int | None:
    if site is None or element.time is None:
        return None
    part = site.partitions.get(element.partition or "")
    if part is None or part.max_time is None:
        return None
    rounds = part.max_time // max(1, element.time)
    return max(k, rounds * k)


def task_resources(element: Resources, pack: Pack) -> Resources:
    """What one array task asks Slurm for: ``parallel`` times the per-element CPUs, memory
    and GPUs, and ceil(size / parallel) times the per-element time."""
    if not pack.packed:
        return element
    k = pack.parallel
    update: dict[str, int] = {"cpus": (element.cpus or 1) * k}
    if element.mem is not None:
        update["mem"] = element.mem * k
    if element.gpus:
        update["gpus"] = element.gpus * k
    if element.time is not None:
        rounds = math.ceil(pack.size / k)
        update["time"] = element.time * rounds
    return element.model_copy(update=update)
