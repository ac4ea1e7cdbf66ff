"""Keeping a run's pending jobs off nodes (docs/faults.md): the argv and its answer, pure.

``scontrol update JobId=A ExcNodeList=n3`` on an array applies to its pending tasks only and
answers per range, exiting 1 when some tasks had started or ended already (measured on the
lab, 22.05)::

    A_0-7,12-15: Job is no longer pending execution
    A_8-11,16-19: Job has already finished
    A_20-59: No error
"""

from __future__ import annotations

import re

from hpcflow.errors import SlurmError

_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-\[\]]{0,127}$")


def node_list(nodes: list[str] | set[str] | frozenset[str]) -> str:
    """Slurm's node list (n1,n3), each name checked: these come from sacct's NodeList."""
    bad = [n for n in nodes if not _NODE.match(n)]
    if bad:
        raise SlurmError(f"not a node name Slurm prints: {bad[0]!r}")
    return ",".join(sorted(nodes))


def exclude_argv(job_id: str, nodes: list[str] | set[str] | frozenset[str]) -> list[str]:
    if not job_id.isdigit():
        raise SlurmError(f"not a Slurm job id: {job_id!r}")
    if not nodes:  # `ExcNodeList=` would clear what the job excludes
        raise SlurmError("no node to exclude")
    return ["scontrol", "update", f"JobId={job_id}", f"ExcNodeList={node_list(nodes)}"]


def excluded_pending(text: str) -> bool:
    """Whether the answer says the update reached the job's pending part (a plain job that
    is pending answers nothing and exits 0)."""
    return any(line.rstrip().endswith(": No error") for line in text.splitlines())


def exclude_flag(extra: list[str] | tuple[str, ...], nodes: frozenset[str]) -> list[str]:
    """``extra`` sbatch flags with ``--exclude`` widened to ``nodes`` (kept: what it had)."""
    had: set[str] = set()
    out = []
    for f in extra:
        if f.startswith("--exclude="):
            had |= set(f.split("=", 1)[1].split(","))
        else:
            out.append(f)
    return [*out, f"--exclude={node_list(had | set(nodes))}"] if nodes or had else out
