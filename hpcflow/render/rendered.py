"""What rendering a run gives: its files and its jobs, as submit needs them."""

from __future__ import annotations

from dataclasses import dataclass

from hpcflow.compile.plan import Plan


@dataclass
class RenderedJob:
    step: str
    job_index: int
    chunk: int
    name: str
    script: str  # absolute path in the run directory
    tasks: str
    output: str
    array: str | None
    deps: list[tuple[str, str, int]]
    n_tasks: int


@dataclass
class RenderedRun:
    files: dict[str, str]  # path relative to run_dir -> content
    jobs: list[RenderedJob]
    plan: Plan
