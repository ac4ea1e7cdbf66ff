"""Setting up a run on the cluster before any job is submitted (the run directory itself is
written by launch/rundir.py): remote images pulled on the login node when the site says so;
which sbatch gets registry credentials."""

from __future__ import annotations

from hpcflow.compile.plan import remote_images_used
from hpcflow.containers.images import (
    cache_path,
    credentials_from_env,
    pull_script,
    read_credentials,
)
from hpcflow.errors import HpcflowError
from hpcflow.render.rendered import RenderedRun
from hpcflow.runners.base import Runner
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded
from hpcflow.states import StepKind


def job_env(kind: StepKind, site: Site) -> dict[str, str] | None:
    """Registry credentials from hpcflow's environment go to the image pull job's sbatch
    only (sbatch passes its environment to the job); a credentials file, if the site names
    one, is read by the job itself instead."""
    if kind is StepKind.PULL and not site.containers.credentials:
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
