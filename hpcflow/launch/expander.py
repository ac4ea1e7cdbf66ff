"""`python -m hpcflow.launch.expander RUN_DIR`: what the hpcflow-expand job runs when the site
lets compute nodes call sbatch (`dynamic.expand_in: job`, docs/dynamic.md).

It reads the producers' files, writes the deferred steps' scripts and tasks files, and submits
their arrays in order, each under the name the tracker would give it, recording every Slurm id
in dynamic/submitted.json as soon as sbatch returns it. It never touches the tracker database:
the next sync on the login node adopts what it submitted (by that file, then by job name) and
submits what it did not get to, so an expander killed half-way is completed, not duplicated.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta

from hpcflow.errors import HpcflowError
from hpcflow.launch.expansion import EXPANDED, SKIPPED, SUBMITTED, Expansion, expand, read_spec
from hpcflow.launch.rundir import write_run_dir
from hpcflow.render.scripts import job_name
from hpcflow.runners.base import LocalRunner, Runner
from hpcflow.slurm.client import JobSpec, SlurmClient
from hpcflow.spec.site import load_site


def read_submitted(runner: Runner, run_dir: str) -> dict[str, str]:
    raw = runner.read_files([f"{run_dir}/{SUBMITTED}"])[f"{run_dir}/{SUBMITTED}"]
    return json.loads(raw) if raw else {}


def submit_expansion(
    client: SlurmClient,
    exp: Expansion,
    known: dict[str, str],
    since: datetime,
    record: Callable[[dict[str, str]], None],
) -> dict[str, str]:
    """sbatch every deferred job not in ``known`` (name -> id), upstream first, linked only to
    other deferred jobs: the producers (and the image pull) have succeeded, or this would not
    run. ``record`` is called with the growing map after every sbatch."""
    assert exp.rendered is not None
    run_id = exp.rendered.plan.run_id
    ids = dict(known)
    for rj in exp.jobs():
        if rj.name in ids:
            continue
        deps = tuple(
            (kind, ids[job_name(run_id, step, i)])
            for kind, step, i in rj.deps
            if step in exp.deferred
        )
        spec = JobSpec(rj.script, rj.tasks, rj.name, rj.output, rj.array, deps)
        ids[rj.name] = client.sbatch(spec, since)
        record(ids)
    return ids


def _clean_environment() -> None:
    # this process runs inside a Slurm job: its SLURM_*/SBATCH_* variables describe *this* job
    # and sbatch would pass them on (or read SBATCH_* as options) to the arrays it submits
    for k in list(os.environ):
        if (k.startswith("SLURM_") and k != "SLURM_CONF") or k.startswith("SBATCH_"):
            del os.environ[k]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hpcflow.launch.expander RUN_DIR", file=sys.stderr)
        return 2
    run_dir = argv[0]
    _clean_environment()
    runner = LocalRunner()
    try:
        spec = read_spec(runner, run_dir)
        site = load_site(spec["site"]) if spec.get("site") else None
        exp = expand(runner, spec, site)
        print(f"hpcflow expand: {exp.outcome}: {exp.reason}", flush=True)
        if exp.outcome != EXPANDED:
            return 0 if exp.outcome == SKIPPED else 1
        assert exp.rendered is not None
        write_run_dir(exp.rendered, runner, steps=exp.steps(), files=exp.files())
        client = SlurmClient.for_site(runner, site) if site else SlurmClient(runner)
        path = f"{run_dir}/{SUBMITTED}"
        ids = submit_expansion(
            client,
            exp,
            read_submitted(runner, run_dir),
            datetime.now() - timedelta(hours=1),
            lambda ids: runner.write_file(path, json.dumps(ids, indent=1) + "\n", 0o640),
        )
    except HpcflowError as e:
        print(f"hpcflow expand: {e}", file=sys.stderr)
        return 1
    print(f"hpcflow expand: {len(ids)} job(s) submitted: " + " ".join(ids.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
