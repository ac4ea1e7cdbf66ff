"""Compare a site config with the live cluster (``hpcflow sites check``)."""

from __future__ import annotations

import re

from .errors import HpcflowError, Problem
from .runner import Runner
from .site import Site
from .slurm import SHOW_CONFIG_ARGV, max_array_size, parse_show_config

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
    try:
        cfg = runner.run(SHOW_CONFIG_ARGV, timeout=30)
        parts = runner.run(["sinfo", "-h", "-o", "%P|%G|%l"], timeout=30)
    except HpcflowError as e:
        return [f"{site.source}: Slurm not reachable, only the file was checked ({e})"]
    if not cfg.ok or not parts.ok:
        return [f"{site.source}: Slurm not reachable, only the file was checked"]
    live: dict[str, int] = {}
    for line in parts.stdout.splitlines():
        name, gres, _limit = (line.split("|") + ["", ""])[:3]
        m = re.search(r"gpu(?::[^:(,]+)?:(\d+)", gres)
        live[name.rstrip("*")] = max(live.get(name.rstrip("*"), 0), int(m.group(1)) if m else 0)
    for name, p in site.partitions.items():
        if name not in live:
            problems.append(
                str(
                    Problem(
                        site.source,
                        0,
                        f"partition {name!r} does not exist "
                        f"on the cluster (it has {', '.join(live)})",
                    )
                )
            )
        elif p.gpus > live[name]:
            problems.append(
                str(
                    Problem(
                        site.source,
                        0,
                        f"partition {name!r}: config says "
                        f"{p.gpus} GPUs per node, cluster has {live[name]}",
                    )
                )
            )
    mas = max_array_size(parse_show_config(cfg.stdout))
    if site.limits.max_array_size and site.limits.max_array_size > mas:
        problems.append(
            str(
                Problem(
                    site.source,
                    0,
                    f"limits.max_array_size "
                    f"{site.limits.max_array_size} is over the cluster's "
                    f"MaxArraySize {mas}",
                )
            )
        )
    return problems
