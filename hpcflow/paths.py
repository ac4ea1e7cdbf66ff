"""Where things live in a run directory (docs/scratch-layout.md). Element directories are
sharded by SHARD so that no directory holds more than ~1,000 entries, as Lustre wants."""

from __future__ import annotations

SHARD = 1000


def task_dir(run_dir: str, step: str, index: int) -> str:
    return f"{run_dir}/steps/{step}/{index // SHARD}/{index}"


def log_path(run_dir: str, step: str, index: int, stream: str = "out") -> str:
    return f"{run_dir}/logs/{step}/{index // SHARD}/{index}.{stream}"
