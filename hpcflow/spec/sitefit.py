"""What the chosen site can provide: a step's effective resources (its own, the workflow's
defaults, the site's) checked against the partition and its node sizes, packing included."""

from __future__ import annotations

from typing import Any

from hpcflow.errors import Problem
from hpcflow.spec.expand import n_elements
from hpcflow.spec.packing import resolve_pack, task_resources
from hpcflow.spec.site import Partition, Site
from hpcflow.spec.units import duration_text, mem_text
from hpcflow.spec.workflow import Resources, Step, Workflow
from hpcflow.util.names import did_you_mean
from hpcflow.util.units import slurm_time
from hpcflow.util.yamlsafe import Located


def effective_resources(wf: Workflow, step: Step, site: Site | None) -> Resources:
    """Step keys win over workflow defaults, which win over the site's defaults."""
    merged: dict[str, Any] = {}
    if site is not None:
        merged.update(_given(site.defaults))
        if site.account:
            merged.setdefault("account", site.account)
    merged.update(_given(wf.defaults.resources))
    merged.update(_given(step.resources))
    if site is not None and not merged.get("partition"):
        default = site.default_partition()
        if default:
            merged["partition"] = default
    # every value comes from a validated model, already typed (MB, seconds): not parsed again
    return Resources.model_construct(**merged)


def _given(r: Resources) -> dict[str, Any]:
    return {k: v for k in Resources.model_fields if (v := getattr(r, k)) is not None}


def _node_fit(
    name: str, r: Resources, site: Site, where: tuple[Any, ...], doc: Located
) -> list[Problem]:
    """What one node of the partition can hold: CPUs, memory, GPUs (all per node in Slurm:
    --cpus-per-task with one task, --mem, --gres)."""
    problems = []
    part = site.partitions[r.partition or ""]
    gpus = r.gpus or 0
    if gpus and part.gpus == 0:
        gpu_parts = [n for n, p in site.partitions.items() if p.gpus]
        hint = f"; use partition: {gpu_parts[0]}" if gpu_parts else ""
        problems.append(
            doc.problem(
                where + ("gpus",),
                f"step {name!r}: asks for {gpus} GPU(s) but partition "
                f"{r.partition!r} has no GPUs{hint}",
            )
        )
    elif gpus > part.gpus:
        nodes = f" (with nodes: {r.nodes}, gpus is still per node)" if (r.nodes or 1) > 1 else ""
        problems.append(
            doc.problem(
                where + ("gpus",),
                f"step {name!r}: asks for {gpus} GPUs per node but partition "
                f"{r.partition!r} has {part.gpus} per node{nodes}",
            )
        )
    if part.cpus and (r.cpus or 1) > part.cpus:
        problems.append(
            doc.problem(
                where + ("cpus",),
                f"step {name!r}: asks for {r.cpus} CPUs but a node of partition "
                f"{r.partition!r} has {part.cpus}",
            )
        )
    if part.mem and r.mem is not None and r.mem > part.mem:
        problems.append(
            doc.problem(
                where + ("mem",),
                f"step {name!r}: asks for {mem_text(r.mem)} of memory but a node of partition "
                f"{r.partition!r} has {mem_text(part.mem)}",
            )
        )
    return problems


def _escalation_base(wf: Workflow, s: Step, r: Resources, i: int, doc: Located) -> list[Problem]:
    """on_oom multiplies the step's memory, on_timeout its time: hpcflow must know them
    (what Slurm applies when none is asked for is the partition's default, not hpcflow's)."""
    out = []
    retry = s.retry or wf.defaults.retry
    for key, have, what in (("on_oom", r.mem, "mem"), ("on_timeout", r.time, "time")):
        if retry is not None and getattr(retry, key) is not None and have is None:
            out.append(
                doc.problem(
                    ("steps", i, "retry", key),
                    f"step {s.name!r}: retry.{key} multiplies the step's {what}, but no "
                    f"resources.{what} is set (step, workflow defaults or site defaults); "
                    f"set one",
                )
            )
    return out


def check_site(
    wf: Workflow, doc: Located, site: Site, axes: dict[str, dict[str, list[Any]]] | None = None
) -> list[Problem]:
    problems = []
    array_steps = sum(1 for s in wf.steps if s.foreach)
    for i, s in enumerate(wf.steps):
        if s.outputs and not site.paths.results:
            problems.append(
                doc.problem(
                    ("steps", i, "outputs"),
                    f"step {s.name!r}: outputs are copied to the site's results directory, "
                    f"but site {site.name!r} has no paths.results; set it in {site.source}",
                )
            )
        r = effective_resources(wf, s, site)
        where = ("steps", i, "resources")
        problems += _escalation_base(wf, s, r, i, doc)
        if not site.partitions:
            continue
        if r.partition and r.partition not in site.partitions:
            problems.append(
                doc.problem(
                    where + ("partition",),
                    f"step {s.name!r}: partition {r.partition!r} is not in "
                    f"site {site.name!r}{did_you_mean(r.partition, site.partitions)} "
                    f"({', '.join(site.partitions)})",
                )
            )
            continue
        part = site.partitions.get(r.partition or "")
        if part is None:
            continue
        problems += _node_fit(s.name, r, site, where, doc)
        if r.time is not None and part.max_time is not None and r.time > part.max_time:
            problems.append(
                doc.problem(
                    where + ("time",),
                    f"step {s.name!r}: time {duration_text(r.time)} is over partition "
                    f"{r.partition!r}'s limit of {duration_text(part.max_time)}",
                )
            )
        elif s.pack is not None and s.foreach and axes is not None and s.name in axes:
            problems += _pack_fit(s, r, site, part, i, doc, axes[s.name], array_steps)
    return problems


def _pack_fit(
    s: Step,
    r: Resources,
    site: Site,
    part: Partition,
    i: int,
    doc: Located,
    axes: dict[str, list[Any]],
    array_steps: int,
) -> list[Problem]:
    """A packed task asks for parallel x the element's CPUs/memory/GPUs and
    ceil(size / parallel) x its time: that must fit a node and the partition's time limit."""
    pack = resolve_pack(s.pack, n_elements(axes), r, site, array_steps)
    if not pack.packed:
        return []
    task = task_resources(r, pack)
    where = ("steps", i, "pack")
    problems = [
        doc.problem(where, p.message + f" (pack parallel {pack.parallel} x the element's)")
        for p in _node_fit(s.name, task, site, where, doc)
    ]
    if task.time is not None and part.max_time is not None:
        limit = part.max_time
        if task.time > limit:
            fits = max(1, limit // max(1, r.time or 0)) * pack.parallel
            problems.append(
                doc.problem(
                    where,
                    f"step {s.name!r}: a packed task runs {pack.size} elements, "
                    f"{pack.parallel} at once, of up to {duration_text(r.time or 0)} each: "
                    f"{slurm_time(task.time)} is over partition "
                    f"{r.partition!r}'s limit of {duration_text(limit)}; use pack size <= {fits}",
                )
            )
    return problems
