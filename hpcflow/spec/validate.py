"""Load a workflow file and check everything the spec lists, reporting all problems at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.dataflow import RESERVED_STEPS, check_when
from hpcflow.spec.dynamic import EXPAND_STEP, NONE, Deferral, check_dynamic, deferral
from hpcflow.spec.expand import (
    DEFAULT_MAX_ELEMENTS,
    did_you_mean,
    n_elements,
    parse_set,
    resolve_axes,
)
from hpcflow.spec.overrides import Overrides, apply_file
from hpcflow.spec.packing import resolve_pack, task_resources
from hpcflow.spec.site import Partition, Site
from hpcflow.spec.templates import check_not_templates, render_images
from hpcflow.spec.workflow import Resources, Step, Workflow
from hpcflow.util.pydantic_errors import problems_from
from hpcflow.util.units import parse_duration_s, parse_mem_mb, slurm_time
from hpcflow.util.yamlsafe import Located, load_file


@dataclass
class Loaded:
    """A workflow that passed validation, with its params and axis values resolved."""

    workflow: Workflow
    doc: Located
    path: Path
    params: dict[str, Any]
    axes: dict[str, dict[str, list[Any]]]  # a dynamic axis is [] until it is expanded
    order: list[str]  # topological
    deferral: Deferral = NONE  # steps laid out at run time (spec/dynamic.py)
    max_elements: int = DEFAULT_MAX_ELEMENTS  # the bound the expansion checks too


def load_workflow(
    path: str | Path,
    sets: list[str] | None = None,
    site: Site | None = None,
    overrides: dict[str, Any] | None = None,
    max_elements: int | None = None,
    resources: str | Path | Overrides | None = None,
) -> Loaded:
    """Load and check a workflow. ``overrides`` sets params by value (campaign batches), after
    ``sets`` (`--set k=v`). ``max_elements`` (default: the site's) bounds the expansion before
    it happens. ``resources``: a file of per-step resources (spec/overrides.py)."""
    p = Path(path)
    doc = load_file(p)
    if not isinstance(doc.data, dict):
        raise InvalidInput([Problem(str(p), 1, "a workflow file must be a YAML mapping")])
    try:
        wf = Workflow.model_validate(doc.data)
    except ValidationError as e:
        raise InvalidInput(problems_from(e, doc, Workflow) + check_not_templates(doc)) from e
    problems = check_graph(wf, doc) + check_not_templates(doc)
    problems += [] if problems else check_dynamic(wf, doc)
    wf, problems = apply_file(wf, resources, problems) if resources else (wf, problems)
    order = [] if problems else topo_order(wf)
    params = parse_set(sets or [], wf, doc)
    for k, v in (overrides or {}).items():
        if k not in params:
            known = ", ".join(params) or "none"
            why = f"the workflow has no parameter {k!r} (params: {known}); declare it under params:"
            raise InvalidInput([Problem(str(p), 1, why)])
        params[k] = v
    if max_elements is None:
        max_elements = site.limits.max_elements if site is not None else DEFAULT_MAX_ELEMENTS
    axes = resolve_axes(wf, params, doc, p.resolve().parent, max_elements)
    wf, image_problems = render_images(wf, doc, params)
    problems += image_problems
    problems += check_each(wf, doc, axes)
    if not problems:
        problems += check_when(wf, doc, axes, params)
        problems += check_files(wf, doc, p.resolve().parent)
    d = deferral(wf)
    if site is not None:
        laid_out = {k: v for k, v in axes.items() if k not in d.deferred}
        problems += check_site(wf, doc, site, laid_out)
    if problems:
        raise InvalidInput(problems)
    return Loaded(wf, doc, p, params, axes, order, d, max_elements)


def check_graph(wf: Workflow, doc: Located) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    names = {s.name for s in wf.steps}
    for i, s in enumerate(wf.steps):
        if s.name in seen:
            problems.append(
                doc.problem(
                    ("steps", i, "name"),
                    f"duplicate step name {s.name!r} (first at step #{seen[s.name] + 1})",
                )
            )
        seen.setdefault(s.name, i)
        for target in s.after:
            if target == s.name:
                problems.append(
                    doc.problem(
                        ("steps", i, "after", target), f"step {s.name!r} cannot come after itself"
                    )
                )
            elif target not in names:
                problems.append(
                    doc.problem(
                        ("steps", i, "after", target),
                        f"step {s.name!r}: unknown step {target!r} in after"
                        + did_you_mean(target, names - {s.name}),
                    )
                )
        if isinstance(s.container, str) and s.container not in wf.containers:
            problems.append(
                doc.problem(
                    ("steps", i, "container"),
                    f"step {s.name!r}: unknown container {s.container!r}"
                    + did_you_mean(s.container, wf.containers)
                    + " (define it under containers:)",
                )
            )
        if s.name in (*RESERVED_STEPS, EXPAND_STEP):
            problems.append(
                doc.problem(
                    ("steps", i, "name"),
                    f"step name {s.name!r} is reserved for hpcflow's own jobs; rename it",
                )
            )
    if not problems:
        cycle = find_cycle(wf)
        if cycle:
            i = next(k for k, s in enumerate(wf.steps) if s.name == cycle[0])
            problems.append(
                doc.problem(("steps", i, "after"), "cycle in after: " + " -> ".join(cycle))
            )
    return problems


def find_cycle(wf: Workflow) -> list[str] | None:
    deps = {s.name: list(s.after) for s in wf.steps}
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for m in deps.get(n, []):
            if color.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m in deps and color.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for s in wf.steps:
        if color.get(s.name) is None:
            found = visit(s.name)
            if found:
                return found
    return None


def topo_order(wf: Workflow) -> list[str]:
    """Kahn's algorithm, ties broken by file order: deterministic."""
    pending = {s.name: set(s.after) for s in wf.steps}
    order: list[str] = []
    while pending:
        ready = [s.name for s in wf.steps if s.name in pending and not pending[s.name]]
        for n in ready:
            order.append(n)
            del pending[n]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def check_each(wf: Workflow, doc: Located, axes: dict[str, dict[str, list[Any]]]) -> list[Problem]:
    problems = []
    for i, s in enumerate(wf.steps):
        for up, kind in s.after.items():
            if kind != "each" or up not in axes:
                continue
            shared = [a for a in axes.get(s.name, {}) if a in axes[up]]
            where = ("steps", i, "after", up)
            if not shared:
                problems.append(
                    doc.problem(
                        where,
                        f"step {s.name!r}: `each` on {up!r} needs an "
                        "axis shared by both steps' foreach (none is)",
                    )
                )
                continue
            for a in shared:
                up_values = set(axes[up][a])
                missing = [v for v in axes[s.name][a] if v not in up_values]
                if missing:
                    problems.append(
                        doc.problem(
                            where,
                            f"step {s.name!r}: `each` on {up!r}: "
                            f"{a}={missing[0]!r} has no matching element "
                            f"in {up!r}",
                        )
                    )
    return problems


def check_files(wf: Workflow, doc: Located, wf_dir: Path) -> list[Problem]:
    """FFRD payload and config files exist; argv/stdin configs need a one-line run."""
    problems = []
    for i, s in enumerate(wf.steps):
        if s.ffrd is None:
            continue
        for key in ("payload", "config"):
            rel = getattr(s.ffrd, key)
            if rel is not None and not (wf_dir / rel).is_file():
                problems.append(
                    doc.problem(
                        ("steps", i, "ffrd", key),
                        f"step {s.name!r}: ffrd {key} file {rel!r} not found "
                        f"(paths are relative to {wf_dir})",
                    )
                )
        if s.ffrd.config and s.ffrd.config_via != "file" and "\n" in s.run.strip():
            problems.append(
                doc.problem(
                    ("steps", i, "run"),
                    f"step {s.name!r}: with ffrd config_via {s.ffrd.config_via}, run must be "
                    "one command line (hpcflow adds the config to it)",
                )
            )
    return problems


def effective_resources(wf: Workflow, step: Step, site: Site | None) -> Resources:
    """Step keys win over workflow defaults, which win over the site's defaults."""
    merged: dict[str, Any] = {}
    if site is not None:
        merged.update(site.defaults.model_dump(exclude_none=True))
        if site.account:
            merged.setdefault("account", site.account)
    merged.update(wf.defaults.resources.model_dump(exclude_none=True))
    merged.update(step.resources.model_dump(exclude_none=True))
    if site is not None and not merged.get("partition"):
        default = site.default_partition()
        if default:
            merged["partition"] = default
    return Resources.model_validate(merged)


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
    if part.mem and r.mem is not None and parse_mem_mb(r.mem) > parse_mem_mb(part.mem):
        problems.append(
            doc.problem(
                where + ("mem",),
                f"step {name!r}: asks for {r.mem} of memory but a node of partition "
                f"{r.partition!r} has {part.mem}",
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
        try:
            r = effective_resources(wf, s, site)
        except ValidationError as e:
            problems.append(
                doc.problem(
                    ("steps", i, "resources"), f"step {s.name!r}: site defaults invalid: {e}"
                )
            )
            continue
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
        too_long = (
            r.time is not None
            and part.max_time is not None
            and parse_duration_s(r.time) > parse_duration_s(part.max_time)
        )
        if too_long:
            problems.append(
                doc.problem(
                    where + ("time",),
                    f"step {s.name!r}: time {r.time} is over partition "
                    f"{r.partition!r}'s limit of {part.max_time}",
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
        limit = parse_duration_s(part.max_time)
        if parse_duration_s(task.time) > limit:
            fits = max(1, limit // max(1, parse_duration_s(r.time or 0))) * pack.parallel
            problems.append(
                doc.problem(
                    where,
                    f"step {s.name!r}: a packed task runs {pack.size} elements, "
                    f"{pack.parallel} at once, of up to {r.time} each: "
                    f"{slurm_time(parse_duration_s(task.time))} is over partition "
                    f"{r.partition!r}'s limit of {part.max_time}; use pack size <= {fits}",
                )
            )
    return problems
