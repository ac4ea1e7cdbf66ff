"""Load a workflow file and check everything the spec lists, reporting all problems at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.dataflow import RESERVED_STEPS, check_when
from hpcflow.spec.dynamic import EXPAND_STEP, NONE, Deferral, check_dynamic, deferral
from hpcflow.spec.execlimits import check_exec
from hpcflow.spec.expand import DEFAULT_MAX_ELEMENTS, parse_set, resolve_axes
from hpcflow.spec.overrides import Overrides, apply_file
from hpcflow.spec.site import Site
from hpcflow.spec.sitefit import check_site
from hpcflow.spec.templates import check_not_templates, render_images
from hpcflow.spec.userconfig import notify_problems
from hpcflow.spec.workflow import Workflow
from hpcflow.util.names import did_you_mean
from hpcflow.util.pydantic_errors import load_model
from hpcflow.util.safeio import inside
from hpcflow.util.yamlsafe import Located


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
    wf, doc = load_model(p, Workflow, "a workflow file", more=check_not_templates)
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
    problems += check_exec(wf, doc, axes)
    if not problems:
        problems += check_when(wf, doc, axes, params)
        problems += check_files(wf, doc, p.resolve().parent)
    d = deferral(wf)
    if site is not None:
        laid_out = {k: v for k, v in axes.items() if k not in d.deferred}
        problems += check_site(wf, doc, site, laid_out)
        problems += notify_problems(wf.notify, site.notify, doc)
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
            if rel is None:
                continue
            where = ("steps", i, "ffrd", key)
            if not (wf_dir / rel).is_file():
                why = f"ffrd {key} file {rel!r} not found (paths are relative to {wf_dir})"
                problems.append(doc.problem(where, f"step {s.name!r}: {why}"))
            elif not inside(wf_dir / rel, wf_dir):
                why = f"ffrd {key} file {rel!r} is outside the workflow's folder {wf_dir}"
                problems.append(doc.problem(where, f"step {s.name!r}: {why}; copy it there"))
        if s.ffrd.config and s.ffrd.config_via != "file" and "\n" in s.run.strip():
            problems.append(
                doc.problem(
                    ("steps", i, "run"),
                    f"step {s.name!r}: with ffrd config_via {s.ffrd.config_via}, run must be "
                    "one command line (hpcflow adds the config to it)",
                )
            )
    return problems
