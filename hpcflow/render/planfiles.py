"""plan.json and plan.txt: what a run will submit, for people and for tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcflow.compile.plan import Plan
from hpcflow.util.templating import _to_text

if TYPE_CHECKING:
    from hpcflow.render.rendered import RenderedJob


def plan_json(plan: Plan, jobs: list[RenderedJob]) -> dict[str, Any]:
    return {
        "workflow": plan.workflow,
        "run_id": plan.run_id,
        "run_dir": plan.run_dir,
        "max_array_size": plan.max_array_size,
        "steps": [
            {
                "name": n,
                "elements": plan.steps[n].n_elements,
                "axes": {a: len(v) for a, v in plan.steps[n].axes.items()},
                "base_axes": plan.steps[n].base_axes,
                "group_axes": plan.steps[n].group_axes,
            }
            for n in plan.order
        ],
        "jobs": [
            {
                "step": j.step,
                "job": j.job_index,
                "chunk": j.chunk,
                "name": j.name,
                "array": j.array,
                "tasks": j.n_tasks,
                "group": {
                    k: _to_text(v) for k, v in plan.steps[j.step].jobs[j.job_index].group.items()
                },
                "after": [{"kind": k, "step": s, "job": i} for k, s, i in j.deps],
            }
            for j in jobs
        ],
        "sbatch_calls": len(jobs),
    }


def plan_text(plan: Plan, jobs: list[RenderedJob]) -> str:
    out = [
        f"run {plan.run_id}: workflow {plan.workflow}, {len(plan.order)} steps, "
        f"{len(jobs)} Slurm jobs (= sbatch calls), "
        f"{sum(s.n_elements for s in plan.steps.values())} elements, "
        f"MaxArraySize {plan.max_array_size}",
        f"run dir: {plan.run_dir}",
        "",
    ]
    for name in plan.order:
        sp = plan.steps[name]
        axes = " x ".join(f"{a}({len(v)})" for a, v in sp.axes.items()) or "no foreach"
        out.append(f"step {name}: {sp.n_elements} element(s), {axes}; {len(sp.jobs)} job(s)")
        for j in jobs:
            if j.step != name:
                continue
            g = plan.steps[name].jobs[j.job_index].group
            desc = [f"job {j.job_index}"]
            if g:
                desc.append("group " + ",".join(f"{k}={_to_text(v)}" for k, v in g.items()))
            desc.append(f"chunk {j.chunk}")
            desc.append(f"--array={j.array}" if j.array else "single job")
            if j.deps:
                desc.append("after " + " ".join(f"{k}:{s}[{i}]" for k, s, i in j.deps))
            out.append("  " + "  ".join(desc))
    return "\n".join(out) + "\n"
