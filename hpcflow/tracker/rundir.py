"""Setting up a run on the cluster before any job is submitted: the run directory (striped on
Lustre when the site asks), its step and shard directories, the rendered files; remote images
pulled on the login node when the site says so; which sbatch gets registry credentials."""

from __future__ import annotations

from hpcflow.compile.plan import remote_images_used
from hpcflow.containers.images import (
    cache_path,
    credentials_from_env,
    pull_script,
    read_credentials,
)
from hpcflow.errors import HpcflowError, RunnerError
from hpcflow.node.jobtool import SHARD
from hpcflow.render.scripts import RenderedRun
from hpcflow.runners.base import Runner
from hpcflow.spec.dataflow import PULL_STEP
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded


def write_run_dir(rr: RenderedRun, runner: Runner, stripe_count: int | None = None) -> list[str]:
    """Create the run directory, the step and shard directories and the rendered files. Returns
    notes for the event log (e.g. striping skipped)."""
    base = rr.plan.run_dir
    runner.makedirs(base, 0o750)
    notes = stripe(runner, base, stripe_count)
    for sub in ("scripts", "logs", "steps"):
        runner.makedirs(f"{base}/{sub}", 0o750)
    for name in rr.plan.order:
        sp = rr.plan.steps[name]
        shards = range((sp.n_elements - 1) // SHARD + 1)
        for sub in ("logs", "steps"):
            runner.makedirs(f"{base}/{sub}/{name}", 0o750)
            runner.makedirs_many([f"{base}/{sub}/{name}/{k}" for k in shards], 0o750)
        # an element's own directory is made by its job, on the compute node: submit does one
        # metadata operation per 1,000 elements, not one per element (docs/packing.md)
    for parent in sorted({rel.rsplit("/", 1)[0] for rel in rr.files if "/" in rel}):
        runner.makedirs(f"{base}/{parent}", 0o750)
    for rel, content in rr.files.items():
        runner.write_file(f"{base}/{rel}", content, 0o750 if rel.endswith(".sh") else 0o640)
    return notes


def stripe(runner: Runner, run_dir: str, count: int | None) -> list[str]:
    """`lfs setstripe -c N` on the (still empty) run directory, so every file created under it
    inherits the layout. Skipped, with a note, when the site sets no count or lfs is missing."""
    if not count:
        return []
    try:
        res = runner.run(["lfs", "setstripe", "-c", str(count), run_dir], timeout=60)
    except RunnerError as e:
        return [f"lustre.stripe_count={count} not applied: {e}"]
    if not res.ok:
        why = (res.stderr or res.stdout).strip().splitlines() or [f"exit {res.returncode}"]
        return [f"lustre.stripe_count={count} not applied: lfs setstripe: {why[-1]}"]
    return [f"lfs setstripe -c {count} {run_dir}"]


def job_env(step: str, site: Site) -> dict[str, str] | None:
    """Registry credentials from hpcflow's environment go to the image pull job's sbatch
    only (sbatch passes its environment to the job); a credentials file, if the site names
    one, is read by the job itself instead."""
    if step == PULL_STEP and not site.containers.credentials:
        return credentials_from_env()
    return None


def pull_on_login(rr: RenderedRun, loaded: Loaded, site: Site, runner: Runner) -> list[str]:
    """containers.pull: login: pull remote images here, before any job is submitted."""
    if site.containers.pull != "login" or site.containers.runtime == "none":
        return []
    refs = remote_images_used(loaded)
    creds = (
        read_credentials(site.containers.credentials)
        if site.containers.credentials
        else credentials_from_env()
    )
    runtime = site.containers.runtime
    cache = site.expand(site.containers.image_cache)
    notes = []
    for ref in refs:
        dest = cache_path(cache, ref, runtime)
        res = runner.run(
            ["bash", "-c", pull_script(runtime), "hpcflow-pull", ref, dest],
            timeout=3600,
            env=creds,
        )
        if not res.ok:
            tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
            raise HpcflowError(
                f"pulling {ref} on the login node failed (exit {res.returncode}); nothing was "
                "submitted:\n  " + "\n  ".join(tail)
            )
        notes.append(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ref)
    return notes
