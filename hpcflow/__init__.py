"""hpcflow: declarative workflows compiled into Slurm job arrays, tracked to the end."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def resources_dir(name: str) -> Path:
    """``job_templates`` or ``site_configs``: shipped in the wheel, or beside a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_data" / name, here.parent / name):
        if cand.is_dir():
            return cand
    return here / "_data" / name
