"""Plan -> sbatch scripts (one per step), tasks files (one per job) and sbatch argv."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from typing import Any

import jinja2

from hpcflow import __version__, resources_dir
from hpcflow.compile.plan import Plan, StepPlan, upstream_index
from hpcflow.containers.images import cache_path, pull_script
from hpcflow.errors import InvalidInput, Problem
from hpcflow.node.jobtool import SHARD, item_of, log_path, task_dir, task_line
from hpcflow.render.container import container_body
from hpcflow.render.dataflow import dataflow_context, ffrd_environment, single_ups, step_problem
from hpcflow.render.deferred import deferred_spec
from hpcflow.render.planfiles import plan_json, plan_text
from hpcflow.render.rendered import RenderedJob, RenderedRun
from hpcflow.spec.dataflow import (
    jobtool_source,
)
from hpcflow.spec.dynamic import NONE
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded
from hpcflow.states import StepKind
from hpcflow.util.secrets import SECRET_NAMES
from hpcflow.util.templating import (
    RuntimeRef,
    Sandbox,
    _to_text,
    as_shell_code,
    as_shell_word,
    configure,
    namespace,
    render_segments,
)
from hpcflow.util.units import slurm_time


def _template_env(site: Site | None) -> jinja2.Environment:
    own = site.templates_dir() if site else None
    dirs = [str(own)] if own else []
    dirs.append(str(resources_dir("job_templates")))
    env = Sandbox(
        loader=jinja2.FileSystemLoader(dirs),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    configure(env)
    return env


def _check_directive(step: str, flag: str, value: str) -> str:
    """Last guard: the models refuse these values with FILE:LINE already."""
    text = str(value)
    one_word = flag == "sbatch_extra" or (bool(text) and not text.startswith("-"))
    one_word = one_word and (flag == "sbatch_extra" or not any(c.isspace() for c in text))
    if not text or not one_word or any(ord(c) < 32 or c == "\x7f" for c in text):
        raise InvalidInput(
            [
                Problem(
                    step,
                    0,
                    f"step {step!r}: {flag} value {text!r} is empty, starts with '-', "
                    "or contains white space or a control character",
                )
            ]
        )
    return text


def directives(sp: StepPlan, site: Site | None) -> list[str]:
    r = sp.resources
    flags: list[tuple[str, Any]] = []
    for key, flag in (
        ("partition", "--partition"),
        ("account", "--account"),
        ("qos", "--qos"),
        ("constraint", "--constraint"),
    ):
        v = getattr(r, key)
        if v:
            flags.append((flag, v))
    if r.nodes:
        flags.append(("--nodes", r.nodes))
    flags.append(("--ntasks", 1))
    flags.append(("--cpus-per-task", r.cpus or 1))
    if r.mem is not None:
        flags.append(("--mem", f"{r.mem}M"))
    if r.gpus:
        gtype = r.gpu_type
        flags.append(("--gres", f"gpu:{gtype}:{r.gpus}" if gtype else f"gpu:{r.gpus}"))
    if r.time is not None:
        flags.append(("--time", slurm_time(r.time)))
    lines = [f"#SBATCH {f}={_check_directive(sp.name, f, str(v))}" for f, v in flags]
    for extra in site.sbatch_extra if site else []:
        lines.append(f"#SBATCH {_check_directive(sp.name, 'sbatch_extra', extra)}")
    return lines


def _waits(sp: StepPlan) -> list[int]:
    rt = sp.retry
    b, cap = float(rt.backoff), rt.max_backoff
    out: list[int] = []
    for _ in range(rt.attempts - 1):
        out.append(int(min(b, cap) if cap else b))
        b = b * rt.factor
    return out


def _context(plan: Plan, loaded: Loaded, sp: StepPlan) -> dict[str, Any]:
    items = {a: RuntimeRef(f"HPCFLOW_ITEM_{a}", f"item.{a}") for a in sp.axes}
    ups = {
        u: namespace(f"upstream.{u}", {"task_dir": RuntimeRef(var, f"upstream.{u}.task_dir")})
        for u, var, _ in single_ups(plan, loaded, sp)
    }
    return {
        "params": namespace("params", loaded.params),
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "workflow": plan.workflow,
        "workflow_dir": str(loaded.path.resolve().parent),
        "step": sp.name,
        "step_dir": f"{plan.run_dir}/steps/{sp.name}",
        "item": namespace("item", items),
        "index": RuntimeRef("HPCFLOW_INDEX", "index"),
        "task_dir": RuntimeRef("HPCFLOW_TASK_DIR", "task_dir"),
        "upstream": namespace("upstream", ups),
    }


def render_step_script(
    plan: Plan,
    loaded: Loaded,
    sp: StepPlan,
    site: Site | None,
    env: jinja2.Environment,
    files: dict[str, str],
) -> str:
    """The step's sbatch script; spec files the script reads go into ``files``."""
    ctx = _context(plan, loaded, sp)
    problems: list[Problem] = []
    run = ""
    try:
        run = as_shell_code(render_segments(sp.step.run, ctx)).rstrip("\n")
    except jinja2.TemplateError as e:
        problems.append(step_problem(loaded, sp, ("run",), f"run: {e}"))
    extra = dataflow_context(plan, loaded, sp, site, files)
    try:
        ffrd_env = ffrd_environment(plan, loaded, sp, ctx, files)
    except InvalidInput as e:
        problems += e.problems
        ffrd_env = []
    if sp.step.ffrd and sp.step.ffrd.config and sp.step.ffrd.config_via == "argv":
        run += ' "$(cat "$HPCFLOW_FFRD_CONFIG")"'
    elif sp.step.ffrd and sp.step.ffrd.config and sp.step.ffrd.config_via == "stdin":
        run += ' <"$HPCFLOW_FFRD_CONFIG"'
    step_env = list(ffrd_env)
    merged = {**loaded.workflow.defaults.env, **sp.step.env}
    for k, v in merged.items():
        try:
            step_env.append((k, as_shell_word(render_segments(_to_text(v), ctx))))
        except jinja2.TemplateError as e:
            if k in sp.step.env:
                problems.append(step_problem(loaded, sp, ("env", k), f"env {k}: {e}"))
            else:
                msg = f"step {sp.name!r}: defaults env {k}: {e}"
                problems.append(loaded.doc.problem(("defaults", "env", k), msg))
    if problems:
        raise InvalidInput(problems)
    site_env = [(k, shlex.quote(_to_text(v))) for k, v in (site.env if site else {}).items()]
    rt = sp.retry
    tmpl_ctx = {
        "directives": "\n".join(directives(sp, site)),
        "hpcflow_version": __version__,
        "workflow": plan.workflow,
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "workflow_dir": ctx["workflow_dir"],
        "step": sp.name,
        "modules": [m.split() for m in (site.modules if site else [])],
        "site_env": site_env,
        "step_env": step_env,
        "run": container_body(plan, loaded, sp, site, run, [k for k, _ in step_env], site_env),
        "waits": [str(w) for w in _waits(sp)],
        "attempts": str(rt.attempts),
        "retry_on": " ".join(str(c) for c in rt.exit_codes) if rt.exit_codes else "",
        "never": " ".join(str(c) for c in rt.never),
        "shard": SHARD,
        "parallel": str(sp.pack.parallel),
        **extra,
    }
    name = "default.sh.j2"
    try:
        segs = render_segments(_load(env, name), tmpl_ctx, env)
    except jinja2.TemplateError as e:
        raise InvalidInput(
            [Problem(name, getattr(e, "lineno", 0) or 0, f"job template: {e}")]
        ) from e
    return as_shell_code(segs)


def render_pull(plan: Plan, sp: StepPlan, site: Site, env: jinja2.Environment) -> str:
    runtime = site.containers.runtime
    cache = site.expand(site.containers.image_cache)
    images = [(ref, cache_path(cache, ref, runtime)) for ref in plan.pull_images]
    ctx = {
        "directives": "\n".join(directives(sp, site)),
        "hpcflow_version": __version__,
        "run_id": plan.run_id,
        "credentials_file": os.path.expanduser(site.containers.credentials or ""),
        "secret_names": "|".join(SECRET_NAMES),
        "pull_script": pull_script(runtime),
        "images": images,
    }
    return as_shell_code(render_segments(_load(env, "pull.sh.j2"), ctx, env))


def render_cleanup(
    plan: Plan, loaded: Loaded, sp: StepPlan, site: Site | None, env: jinja2.Environment
) -> str:
    ctx = {
        "directives": "\n".join(directives(sp, site)),
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "parent": plan.run_dir.rsplit("/", 1)[0],
        "policy": loaded.workflow.cleanup,
    }
    return as_shell_code(render_segments(_load(env, "cleanup.sh.j2"), ctx, env))


def render_expand(plan: Plan, sp: StepPlan, site: Site | None, env: jinja2.Environment) -> str:
    mode = site.dynamic.expand_in if site else "login"
    python = (site.dynamic.hpcflow_python if site else None) or sys.executable
    if mode == "job" and site and site.login.host and not site.dynamic.hpcflow_python:
        raise InvalidInput([Problem(site.source, 1, (
            "dynamic.expand_in: job runs hpcflow on a compute node, and this site submits over "
            "SSH, so the python here is not one the cluster has: set dynamic.hpcflow_python to "
            "the cluster's python that has hpcflow installed"
        ))])  # fmt: skip
    ctx = {
        "directives": "\n".join(directives(sp, site)),
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "mode": mode,
        "python": python,
    }
    return as_shell_code(render_segments(_load(env, "expand.sh.j2"), ctx, env))


def _load(env: jinja2.Environment, name: str) -> str:
    assert env.loader is not None
    src, _, _ = env.loader.get_source(env, name)
    return src


def _item_of(sp: StepPlan, idx: int) -> dict[str, Any]:
    return item_of(sp.axes, idx)


def tasks_file(
    plan: Plan, sp: StepPlan, job_index: int, quoted: dict[str, dict[Any, str]] | None = None
) -> str:
    job = sp.jobs[job_index]
    quoted = quoted or quoted_values(sp)
    ups = [plan.steps[u] for u in sp.upstream_each if all(a in sp.axes for a in plan.steps[u].axes)]
    lines = []
    for tid, idx in zip(job.element_tasks, job.elements):
        item = _item_of(sp, idx)
        parts = [f"HPCFLOW_ITEM_{a}={quoted[a][v]}" for a, v in item.items()]
        for up in ups:
            uidx = upstream_index(up, item)
            if uidx is not None:
                parts.append(
                    f"HPCFLOW_UPSTREAM_{up.position}_TASK_DIR="
                    + shlex.quote(task_dir(plan.run_dir, up.name, uidx))
                )
        lines.append(task_line(tid, idx, parts))
    return "\n".join(lines) + "\n"


def quoted_values(sp: StepPlan) -> dict[str, dict[Any, str]]:
    return {a: {v: shlex.quote(_to_text(v)) for v in vals} for a, vals in sp.axes.items()}


def job_name(run_id: str, step: str, job_index: int) -> str:
    return f"hpcflow.{run_id}.{step}.{job_index}"


def check_templates(loaded: Loaded, site: Site | None) -> None:
    """Render every step's script (not the per-element tasks files) as `render` would,
    so `validate` reports the same template problems, all at once."""
    from hpcflow.compile.plan import compile_plan

    m = (site.limits.max_array_size if site else None) or 1001
    if loaded.deferral:  # a dynamic axis gets one stand-in value: the templates are the same
        loaded = preview(loaded)
    plan = compile_plan(loaded, site, m, "validate-0000", "/validate/run")
    env = _template_env(site)
    problems: list[Problem] = []
    for name in loaded.order:
        try:
            render_step_script(plan, loaded, plan.steps[name], site, env, {})
        except InvalidInput as e:
            problems += e.problems
    if problems:
        raise InvalidInput(problems)


def preview(loaded: Loaded) -> Loaded:
    """``loaded`` with every dynamic axis given one stand-in value, laid out as if expanded."""
    axes = {n: dict(a) for n, a in loaded.axes.items()}
    for s in loaded.workflow.steps:
        for axis, src in s.dynamic_axes.items():
            axes[s.name][axis] = [f"from-{src.step}"]
    return dataclasses.replace(loaded, axes=axes, deferral=NONE)


def render_run(plan: Plan, loaded: Loaded, site: Site | None) -> RenderedRun:
    env = _template_env(site)
    files: dict[str, str] = {}
    jobs: list[RenderedJob] = []
    for name in plan.order:
        sp = plan.steps[name]
        script_rel = f"scripts/{name}.sh"
        if sp.kind is StepKind.CLEANUP:
            files[script_rel] = render_cleanup(plan, loaded, sp, site, env)
        elif sp.kind is StepKind.PULL:
            assert site is not None
            files[script_rel] = render_pull(plan, sp, site, env)
        elif sp.kind is StepKind.EXPAND:
            files[script_rel] = render_expand(plan, sp, site, env)
        else:
            files[script_rel] = render_step_script(plan, loaded, sp, site, env, files)
        quoted = quoted_values(sp)
        for job in sp.jobs:
            tasks_rel = f"scripts/{name}.{job.job_index}.tasks"
            files[tasks_rel] = tasks_file(plan, sp, job.job_index, quoted)
            pattern = "%A" if job.is_array else "%j"
            jobs.append(
                RenderedJob(
                    step=name,
                    job_index=job.job_index,
                    chunk=job.chunk,
                    name=job_name(plan.run_id, name, job.job_index),
                    script=f"{plan.run_dir}/{script_rel}",
                    tasks=f"{plan.run_dir}/{tasks_rel}",
                    output=log_path(plan.run_dir, name, 0)  # `hpcflow logs RUN hpcflow-expand`
                    if sp.kind is StepKind.EXPAND
                    else f"{plan.run_dir}/logs/{name}/slurm-{pattern}.out",
                    array=job.array_spec,
                    deps=list(job.deps),
                    n_tasks=len(job.task_ids),
                )
            )
    files["scripts/hpcflow_job.py"] = jobtool_source()
    if loaded.deferral:
        files.update(deferred_spec(plan, loaded, site))
    files["plan.json"] = json.dumps(plan_json(plan, jobs), indent=2) + "\n"
    files["plan.txt"] = plan_text(plan, jobs)
    return RenderedRun(files, jobs, plan)
