"""The container part of a step script: which image (local, or pulled into the cache), which
binds, which variables go in; the launch line itself comes from containers.launch."""

from __future__ import annotations

import shlex

from hpcflow.compile.plan import Plan, StepPlan, step_image
from hpcflow.containers.images import cache_path, check_ref
from hpcflow.containers.runtimes import Bind, is_remote, launch
from hpcflow.errors import InvalidInput
from hpcflow.render.dataflow import single_ups, step_problem
from hpcflow.spec.dataflow import fan_in_upstreams
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded


def image_path(loaded: Loaded, sp: StepPlan, site: Site, image: str) -> str:
    """Where the step's image is on the cluster: pulled images in the site's cache, local
    ones relative to the workflow file."""
    if is_remote(image):
        problem = check_ref(image, site.containers.runtime)
        if problem:
            raise InvalidInput([step_problem(loaded, sp, ("container",), problem)])
        return cache_path(site.expand(site.containers.image_cache), image, site.containers.runtime)
    if image.startswith("/"):
        return image
    return f"{loaded.path.resolve().parent}/{image}"


def container_body(
    plan: Plan,
    loaded: Loaded,
    sp: StepPlan,
    site: Site | None,
    run: str,
    step_env: list[str],
    site_env: list[tuple[str, str]],
) -> str:
    """The body of the script's run function: the command itself on the host, or the
    container launch running it with /bin/sh -c."""
    ref = step_image(loaded, sp.step)
    if ref is None or site is None or site.containers.runtime == "none":
        return run
    runtime = site.containers.runtime
    image = image_path(loaded, sp, site, ref)
    wf_dir = str(loaded.path.resolve().parent)
    binds = [Bind(plan.run_dir, plan.run_dir)]
    # the workflow's folder only for steps that use it: Charliecloud (before 0.32) cannot
    # create a mount point, so every bind destination must already exist in the image
    env_values = [*sp.step.env.values(), *loaded.workflow.defaults.env.values()]
    texts = [sp.step.run, *map(str, env_values)]
    if any("workflow_dir" in t for t in texts):
        binds.append(Bind(wf_dir, wf_dir, "ro"))
    binds += [Bind.parse(site.expand(b)) for b in site.containers.binds]
    if sp.step.ffrd:
        binds += [
            Bind(f"${{HPCFLOW_TASK_DIR}}/.ffrd/{n}", path, runtime=True)
            for n, path in enumerate(sp.step.ffrd.writable)
        ]
    names = [
        "HPCFLOW_RUN_ID",
        "HPCFLOW_RUN_DIR",
        "HPCFLOW_STEP",
        "HPCFLOW_WORKFLOW_DIR",
        "HPCFLOW_INDEX",
        "HPCFLOW_TASK_DIR",
    ]
    names += [f"HPCFLOW_ITEM_{a}" for a in sp.axes]
    names += [var for _, var, _ in single_ups(plan, loaded, sp)]
    names += ["HPCFLOW_MANIFEST"] if fan_in_upstreams(sp.step, loaded.axes) else []
    names += ["HPCFLOW_FFRD_CONFIG"] if sp.step.ffrd and sp.step.ffrd.config else []
    names += [k for k, _ in site_env] + list(step_env)
    la = launch(
        runtime,
        image,
        binds=binds,
        env_names=names,
        workdir_var="HPCFLOW_TASK_DIR",
        gpu=bool(sp.resources.gpus),
        gpu_flag=site.containers.gpu_flag,
    )
    code = "set -e\n" + run
    return "\n".join([*la.prelude, " ".join([*la.argv, "/bin/sh", "-c", shlex.quote(code)])])
