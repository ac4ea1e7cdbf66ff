"""Compare a site config with the live cluster (``hpcflow sites check``)."""

from __future__ import annotations

import re

from hpcflow.errors import HpcflowError, Problem
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.spec.site import Site
from hpcflow.spec.units import mem_text

MIN_PYTHON = (3, 7)
_VERSION_ARGS = ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]


def check_python(site: Site, runner: Runner) -> tuple[str | None, str | None]:
    """(version, problem) of the site's ``python``, which runs the job tool on compute nodes
    (checked where hpcflow runs Slurm commands: the login node)."""
    try:
        res = runner.run([site.python, *_VERSION_ARGS], timeout=30)
    except HpcflowError as e:
        return None, str(Problem(site.source, 0, f"python {site.python!r} cannot be run: {e}"))
    text = res.stdout.strip()
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    if not res.ok or not m:
        why = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no version printed"]
        return None, str(Problem(site.source, 0, f"python {site.python!r} failed: {why[0]}"))
    if (int(m.group(1)), int(m.group(2))) < MIN_PYTHON:
        return text, str(
            Problem(
                site.source,
                0,
                f"python {site.python!r} is {text}; the job tool needs 3.7 or newer "
                "(set python: to a newer interpreter, e.g. from a module)",
            )
        )
    return text, None


def check_live(site: Site, runner: Runner) -> list[str]:
    problems: list[str] = []
    client = SlurmClient(runner)
    try:
        mas = client.max_array_size()
        live = client.partitions()
    except HpcflowError as e:
        return [f"{site.source}: Slurm not reachable, only the file was checked ({e})"]

    def problem(msg: str) -> None:
        problems.append(str(Problem(site.source, 0, msg)))

    for name, p in site.partitions.items():
        if name not in live:
            problem(f"partition {name!r} does not exist on the cluster (it has {', '.join(live)})")
            continue
        gpus, cpus, mem = live[name]
        if p.gpus > gpus:
            problem(f"partition {name!r}: config says {p.gpus} GPUs per node, cluster has {gpus}")
        if p.cpus and cpus and p.cpus > cpus:
            problem(f"partition {name!r}: config says {p.cpus} CPUs per node, cluster has {cpus}")
        if p.mem and mem and p.mem > mem:
            problem(
                f"partition {name!r}: config says {mem_text(p.mem)} per node, cluster has {mem}M"
            )
    if site.limits.max_array_size and site.limits.max_array_size > mas:
        problem(
            f"limits.max_array_size {site.limits.max_array_size} is over the cluster's "
            f"MaxArraySize {mas}"
        )
    return problems
