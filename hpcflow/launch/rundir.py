"""The run directory on the cluster: made (striped on Lustre when the site asks) with its step
and shard directories and the rendered files, at submit or, for the steps of a dynamic foreach,
by their expansion (docs/dynamic.md)."""

from __future__ import annotations

from hpcflow.errors import RunnerError
from hpcflow.node.jobtool import SHARD
from hpcflow.render.rendered import RenderedRun
from hpcflow.runners.base import Runner


def write_run_dir(
    rr: RenderedRun,
    runner: Runner,
    stripe_count: int | None = None,
    steps: list[str] | None = None,
    files: dict[str, str] | None = None,
) -> list[str]:
    """Create the run directory, the step and shard directories and the rendered files. Returns
    notes for the event log (e.g. striping skipped). An expansion passes only its ``steps``
    and their ``files``: the directory exists and is striped already."""
    base = rr.plan.run_dir
    if steps is None:
        runner.makedirs(base, 0o750)
        notes = stripe(runner, base, stripe_count)
        for sub in ("scripts", "logs", "steps"):
            runner.makedirs(f"{base}/{sub}", 0o750)
    else:
        notes = []
    files = rr.files if files is None else files
    for name in rr.plan.order if steps is None else steps:
        sp = rr.plan.steps[name]
        shards = range((sp.n_elements - 1) // SHARD + 1)
        for sub in ("logs", "steps"):
            runner.makedirs(f"{base}/{sub}/{name}", 0o750)
            runner.makedirs_many([f"{base}/{sub}/{name}/{k}" for k in shards], 0o750)
        # an element's own directory is made by its job, on the compute node: submit does one
        # metadata operation per 1,000 elements, not one per element (docs/packing.md)
    for parent in sorted({rel.rsplit("/", 1)[0] for rel in files if "/" in rel}):
        runner.makedirs(f"{base}/{parent}", 0o750)
    for rel, content in files.items():
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
