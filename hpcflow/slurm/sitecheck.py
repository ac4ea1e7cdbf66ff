"""Compare a site config with the live cluster (``hpcflow sites check``)."""

from __future__ import annotations

import re

from hpcflow.errors import HpcflowError, Problem
from hpcflow.runners.base import Runner
from hpcflow.slurm.commands import SHOW_CONFIG_ARGV, max_array_size, parse_show_config
from hpcflow.spec.site import Site
from hpcflow.util.units import parse_mem_mb

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


SINFO_ARGV = ["sinfo", "-h", "-o", "%P|%G|%l|%c|%m"]


def parse_sinfo(text: str) -> dict[str, tuple[int, int, int]]:
    """partition -> (GPUs, CPUs, memory MB) of its largest node. ``%c``/``%m`` may end in
    ``+`` when nodes differ (sinfo groups them); the number before it is the smallest."""
    live: dict[str, tuple[int, int, int]] = {}

    def num(x: str) -> int:
        m = re.match(r"\d+", x.strip())
        return int(m.group()) if m else 0

    for line in text.splitlines():
        if not line.strip():
            continue
        name, gres, _limit, cpus, mem = (line.split("|") + ["", "", "", ""])[:5]
        m = re.search(r"gpu(?::[^:(,]+)?:(\d+)", gres)
        gpus = int(m.group(1)) if m else 0
        key = name.rstrip("*")
        old = live.get(key, (0, 0, 0))
        live[key] = (max(old[0], gpus), max(old[1], num(cpus)), max(old[2], num(mem)))
    return live


def check_live(site: Site, runner: Runner) -> list[str]:
    problems: list[str] = []
    try:
        cfg = runner.run(SHOW_CONFIG_ARGV, timeout=30)
        parts = runner.run(SINFO_ARGV, timeout=30)
    except HpcflowError as e:
        return [f"{site.source}: Slurm not reachable, only the file was checked ({e})"]
    if not cfg.ok or not parts.ok:
        return [f"{site.source}: Slurm not reachable, only the file was checked"]
    live = parse_sinfo(parts.stdout)

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
        if p.mem and mem and parse_mem_mb(p.mem) > mem:
            problem(f"partition {name!r}: config says {p.mem} per node, cluster has {mem}M")
    mas = max_array_size(parse_show_config(cfg.stdout))
    if site.limits.max_array_size and site.limits.max_array_size > mas:
        problem(
            f"limits.max_array_size {site.limits.max_array_size} is over the cluster's "
            f"MaxArraySize {mas}"
        )
    return problems
