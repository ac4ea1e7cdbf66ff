"""Rendering the data-flow parts of a step script: matching upstream elements, skip checks,
`when:` / manifest / outputs specs, FFRD plugin variables and files."""

from __future__ import annotations

import json
import shlex
from typing import Any

import jinja2

from hpcflow.compile.plan import Plan, StepPlan
from hpcflow.errors import InvalidInput, Problem
from hpcflow.node.jobtool import SHARD, task_dir
from hpcflow.spec.dataflow import (
    ALWAYS,
    fan_in_upstreams,
    manifest_spec,
    read_workflow_file,
    results_dir,
    single_match_upstreams,
    when_spec,
)
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded
from hpcflow.util.templating import _to_text, as_shell_word, render_segments


def step_problem(loaded: Loaded, sp: StepPlan, key: tuple[Any, ...], msg: str) -> Problem:
    i = next(k for k, s in enumerate(loaded.workflow.steps) if s.name == sp.name)
    return loaded.doc.problem(("steps", i) + key, f"step {sp.name!r}: {msg}")


def single_ups(plan: Plan, loaded: Loaded, sp: StepPlan) -> list[tuple[str, str, str | None]]:
    """(upstream, variable holding its matching element's task_dir, constant value or None
    when the value comes from the tasks file)."""
    out = []
    for u in single_match_upstreams(sp.step, loaded.axes):
        up = plan.steps[u]
        var = f"HPCFLOW_UPSTREAM_{up.position}_TASK_DIR"
        const = None if up.axes else task_dir(plan.run_dir, u, 0)
        out.append((u, var, const))
    return out


def dataflow_context(
    plan: Plan, loaded: Loaded, sp: StepPlan, site: Site | None, files: dict[str, str]
) -> dict[str, Any]:
    """Template values (and spec files) for skips, when:, manifests, outputs, FFRD."""
    step = sp.step
    scripts = f"{plan.run_dir}/scripts"
    singles = single_ups(plan, loaded, sp)
    always = step.when is not None and step.when.strip() == ALWAYS
    out: dict[str, Any] = {
        "python": site.python if site else "python3",
        "upstream_consts": [(var, shlex.quote(c)) for _, var, c in singles if c is not None],
        "skip_checks": []
        if always
        else [(var, u) for u, var, _ in singles if step.after[u] == "each"],
        "upstream_checks": []
        if always
        else [(var, u) for u, var, _ in singles if u in sp.loose_each],
        "when_spec": "",
        "manifest_spec": "",
        "outputs_spec": "",
        "ffrd_config": "",
        "ffrd_dirs": [str(n) for n in range(len(step.ffrd.writable))] if step.ffrd else [],
    }
    if step.when is not None and not always:
        spec = when_spec(step, loaded.params, sp.axes, {u: var for u, var, _ in singles})
        files[f"scripts/{sp.name}.when.json"] = json.dumps(spec, default=str) + "\n"
        out["when_spec"] = f"{scripts}/{sp.name}.when.json"
    fan_in = fan_in_upstreams(step, loaded.axes)
    if fan_in:
        spec = manifest_spec(plan.run_dir, SHARD, fan_in, loaded.axes)
        files[f"scripts/{sp.name}.manifest.json"] = json.dumps(spec, default=str) + "\n"
        out["manifest_spec"] = f"{scripts}/{sp.name}.manifest.json"
    if step.outputs and site and site.paths.results:
        root = site.expand(site.paths.results)
        spec = {
            "globs": step.outputs,
            "results": results_dir(root, plan.workflow, plan.run_id, sp.name),
            "shard": SHARD,
        }
        files[f"scripts/{sp.name}.outputs.json"] = json.dumps(spec) + "\n"
        out["outputs_spec"] = f"{scripts}/{sp.name}.outputs.json"
    if step.ffrd and step.ffrd.config:
        wf_dir = loaded.path.resolve().parent
        files[f"scripts/{sp.name}.ffrd-config.json"] = read_workflow_file(wf_dir, step.ffrd.config)
        out["ffrd_config"] = f"{scripts}/{sp.name}.ffrd-config.json"
    return out


def ffrd_environment(
    plan: Plan, loaded: Loaded, sp: StepPlan, ctx: dict[str, Any], files: dict[str, str]
) -> list[tuple[str, str]]:
    """Cloud Compute plugin variables: event, payload id, FS data store on the run's scratch."""
    f = sp.step.ffrd
    if f is None:
        return []
    pid = f.payload_id or sp.name
    if f.payload:
        wf_dir = loaded.path.resolve().parent
        files[f"ffrd/{pid}/payload"] = read_workflow_file(wf_dir, f.payload)
    if f.event is not None:
        try:
            event = as_shell_word(render_segments(_to_text(f.event), ctx))
        except jinja2.TemplateError as e:
            raise InvalidInput([step_problem(loaded, sp, ("ffrd", "event"), str(e))]) from e
    elif "event" in sp.axes:
        event = '"$HPCFLOW_ITEM_event"'
    else:
        event = '"$((HPCFLOW_INDEX + 1))"'
    root = '"$HPCFLOW_RUN_DIR/ffrd"'
    return [
        ("CC_EVENT_IDENTIFIER", event),
        ("CC_EVENT_NUMBER", '"$CC_EVENT_IDENTIFIER"'),
        ("CC_PAYLOAD_ID", shlex.quote(pid)),
        ("CC_MANIFEST_ID", shlex.quote(sp.name)),
        ("CC_STORE_TYPE", "FS"),
        ("FSB_ROOT_PATH", root),
        ("CC_ROOT", root),
    ]
