"""From a checked workflow to what will be submitted, with the cluster's limits: the plan and
its rendered files (``prepare``, what `render` and `submit` use), and the report `validate
--site` prints (``plan_report``): sbatch calls, array tasks, elements, pack sizes, files
created, and whether it fits the user's submit limit, with a pack that would."""

from __future__ import annotations

import getpass
import math
import secrets
from datetime import datetime, timezone
from typing import Any

from hpcflow.compile.plan import Plan, compile_plan
from hpcflow.errors import SlurmError
from hpcflow.node.jobtool import SHARD
from hpcflow.render.rendered import RenderedRun
from hpcflow.render.scripts import render_run
from hpcflow.runners.base import Runner
from hpcflow.slurm.limits import ClusterLimits, SubmitLimit, cluster_limits, submit_limit
from hpcflow.spec.site import Site
from hpcflow.spec.units import duration_text
from hpcflow.spec.validate import Loaded

PER_ELEMENT_INODES = 5  # its directory, .hpcflow/, result.json, .out and .err logs


def new_run_id(workflow: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{workflow}-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def run_dir_for(site: Site, workflow: str, run_id: str) -> str:
    return f"{site.scratch_root().rstrip('/')}/hpcflow/{workflow}/{run_id}"


def limits_for(site: Site, runner: Runner | None) -> ClusterLimits | None:
    """The cluster's limits (cached per site and user for ``limits.cache_ttl``); None without a
    runner."""
    if runner is None:
        return None
    user = site.login.user or getpass.getuser()
    return cluster_limits(runner, site.name, user, site.limits.cache_ttl)


def effective_site(site: Site, loaded: Loaded, runner: Runner | None) -> Site:
    """The site with the limits it leaves open filled in from Slurm: MaxArraySize when
    ``limits.max_array_size`` is null, and the user's submit limit when a step packs ``auto``
    and ``limits.max_submit_jobs`` is null. Slurm is asked only then."""
    lim = site.limits
    auto = any(s.pack is not None and s.pack.size == "auto" for s in loaded.workflow.steps)
    if lim.max_array_size and (lim.max_submit_jobs or not auto):
        return site
    cl = limits_for(site, runner)
    update: dict[str, Any] = {}
    if not lim.max_array_size:
        if cl is None or cl.max_array_size is None:
            why = "; ".join(cl.errors) if cl else "no connection to Slurm"
            raise SlurmError(f"cannot read MaxArraySize ({why}); set limits.max_array_size")
        update["max_array_size"] = cl.max_array_size
    if auto and not lim.max_submit_jobs and cl is not None:
        update["max_submit_jobs"] = submit_limit(cl, site.account, site.defaults.qos).limit
    return site.model_copy(update={"limits": lim.model_copy(update=update)})


def prepare(
    loaded: Loaded, site: Site, runner: Runner | None, run_id: str | None = None
) -> RenderedRun:
    run_id = run_id or new_run_id(loaded.workflow.name)
    eff = effective_site(site, loaded, runner)
    m = eff.limits.max_array_size
    assert m is not None
    plan = compile_plan(loaded, eff, m, run_id, run_dir_for(site, loaded.workflow.name, run_id))
    return render_run(plan, loaded, eff)


def plan_report(loaded: Loaded, site: Site, runner: Runner | None) -> dict[str, Any]:
    """What `submit` would do on this site, and whether it fits (validate --site --json)."""
    cl = limits_for(site, runner)
    limit = (
        submit_limit(cl, site.account, site.defaults.qos, site.limits.max_submit_jobs)
        if cl is not None
        else SubmitLimit(site.limits.max_submit_jobs, "site limits.max_submit_jobs")
    )
    known_mas = site.limits.max_array_size or (cl.max_array_size if cl else None)
    fill: dict[str, Any] = {"max_array_size": known_mas or 1001}
    if limit.limit and not site.limits.max_submit_jobs:
        fill["max_submit_jobs"] = limit.limit
    eff = site.model_copy(update={"limits": site.limits.model_copy(update=fill)})
    plan = compile_plan(loaded, eff, fill["max_array_size"], "validate-0000", "/validate/run")
    steps = {name: _step_doc(plan, name) for name in plan.order}
    tasks = sum(s["array_tasks"] for s in steps.values())
    calls = sum(s["sbatch_calls"] for s in steps.values())
    max_calls = site.limits.max_sbatch_calls
    doc: dict[str, Any] = {
        "site": site.name,
        "sbatch_calls": calls,
        "array_tasks": tasks,
        "elements": sum(s["elements"] for s in steps.values()),
        "files_estimate": sum(s["files_estimate"] for s in steps.values()) + 4,
        "steps": steps,
        "limits": {
            "max_array_size": known_mas,
            "max_job_count": cl.max_job_count if cl else None,
            "submit_limit": limit.limit,
            "submit_limit_source": limit.source,
            "max_sbatch_calls": max_calls,
            "unreadable": cl.errors if cl else ["Slurm not asked"],
        },
        "tasks_fit": limit.limit is None or tasks <= limit.limit,
        "calls_fit": calls <= max_calls,
        "suggest_pack": None,
    }
    doc["fits"] = doc["tasks_fit"] and doc["calls_fit"]
    if not doc["fits"]:
        doc["suggest_pack"] = suggest_pack(plan, limit.limit, max_calls, fill["max_array_size"])
    return doc


def _step_doc(plan: Plan, name: str) -> dict[str, Any]:
    sp = plan.steps[name]
    tasks = sum(len(j.task_ids) for j in sp.jobs)
    shards = math.ceil(sp.n_elements / SHARD)
    t = sp.resources.time
    return {
        "elements": sp.n_elements,
        "array_tasks": tasks,
        "sbatch_calls": len(sp.jobs),
        "pack": {"size": sp.pack.size, "parallel": sp.pack.parallel, "why": sp.pack.why or None},
        "task_time": None if t is None else duration_text(t),
        "task_time_s": t,
        "files_estimate": sp.n_elements * PER_ELEMENT_INODES + 2 * shards + len(sp.jobs) + 3,
    }


def suggest_pack(
    plan: Plan, task_limit: int | None, call_limit: int, max_array_size: int
) -> dict[str, Any] | None:
    """The smallest ``pack: N`` on every foreach step that brings the run's array tasks
    within ``task_limit`` and its sbatch calls (one per chunk of ``max_array_size`` tasks)
    within ``call_limit``; None when no pack can (more plain jobs than a limit)."""
    arrays = [sp for sp in plan.steps.values() if sp.jobs and sp.jobs[0].is_array]
    fixed = sum(len(sp.jobs) for sp in plan.steps.values() if sp not in arrays)
    groups: dict[tuple[str, tuple[Any, ...]], int] = {}  # (step, group): its elements
    for sp in arrays:
        for j in sp.jobs:
            key = (sp.name, tuple(j.group.values()))
            groups[key] = groups.get(key, 0) + len(j.elements)
    sizes = list(groups.values())
    if not sizes or fixed + len(sizes) > min(task_limit or call_limit, call_limit):
        return None  # every array group is at least one task in one sbatch call

    def tasks(n: int) -> int:
        return fixed + sum(math.ceil(k / n) for k in sizes)

    def calls(n: int) -> int:
        return fixed + sum(math.ceil(math.ceil(k / n) / max_array_size) for k in sizes)

    def fits(n: int) -> bool:
        return (task_limit is None or tasks(n) <= task_limit) and calls(n) <= call_limit

    lo, hi = 1, max(sizes)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    steps = [sp.name for sp in arrays]
    return {"pack": lo, "steps": steps, "array_tasks": tasks(lo), "sbatch_calls": calls(lo)}
