"""What finished elements used, from sacct: asked once per finished chunk (array job), with
its step rows, never re-polled (docs/efficiency.md). Pure: argv builder and parser, tested
on output captured from the lab (tests/test_usage.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcflow.slurm.commands import _keys, _mb

USAGE_FIELDS = [
    "JobID",
    "State",
    "AllocCPUS",
    "ElapsedRaw",
    "TimelimitRaw",
    "TotalCPU",
    "MaxRSS",
    "ReqMem",
    "AllocTRES",
]


def usage_argv(job_ids: list[str], starttime: str) -> list[str]:
    """Allocation and step rows (no -X: MaxRSS is only on the steps) of whole jobs."""
    return [
        "sacct",
        "-P",
        "-n",
        f"--format={','.join(USAGE_FIELDS)}",
        f"--starttime={starttime}",
        "-j",
        ",".join(job_ids),
    ]


@dataclass(slots=True)
class Usage:
    """One array task (or job) as sacct accounts it: the allocation row, plus the largest
    MaxRSS and the summed TotalCPU of its steps."""

    alloc_cpus: int | None = None
    elapsed_s: int | None = None
    timelimit_s: int | None = None
    total_cpu_s: float | None = None  # the allocation row's: Slurm sums the steps'
    max_rss_mb: int | None = None  # largest MaxRSS of its steps (.batch, srun steps)
    req_mem_mb: int | None = None
    gpus: int = 0
    steps: int = 0  # step rows seen: 0 right after the end means slurmdbd has not them yet

    def as_json(self) -> dict[str, object]:
        return {
            "alloc_cpus": self.alloc_cpus,
            "elapsed_s": self.elapsed_s,
            "timelimit_s": self.timelimit_s,
            "total_cpu_s": self.total_cpu_s,
            "max_rss_mb": self.max_rss_mb,
            "req_mem_mb": self.req_mem_mb,
            "gpus": self.gpus,
        }


_CPU_TIME = re.compile(r"^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_GPUS = re.compile(r"(?:^|,)gres/gpu(?::[^=,]+)?=(\d+)")


def cpu_seconds(text: str) -> float | None:
    """sacct's TotalCPU: '[DD-[HH:]]MM:SS[.mmm]' -> seconds; None when not a time."""
    m = _CPU_TIME.match(text.strip())
    if not m:
        return None
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi) * 60 + float(s)


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdecimal() else None


def _gpus(tres: str) -> int:
    """AllocTRES 'billing=2,cpu=2,gres/gpu=1,mem=64M,node=1' -> 1. Typed entries
    ('gres/gpu:a100=1') are counted once, by the untyped total when both are there."""
    found = [int(n) for n in _GPUS.findall(tres)]
    return max(found, default=0)


def parse_usage(stdout: str) -> dict[tuple[str, int | None], Usage]:
    """``sacct -P -n --format=USAGE_FIELDS`` (allocation and step rows) -> (job, task) ->
    Usage. Pending meta records ('A_[0-9]') and het-job parts are left out: they used
    nothing."""
    out: dict[tuple[str, int | None], Usage] = {}
    steps: dict[tuple[str, int | None], list[tuple[int | None, float | None]]] = {}
    n = len(USAGE_FIELDS)
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) != n or "+" in parts[0]:
            continue
        job, _state, cpus, elapsed, limit, total, rss, req, tres = parts
        head, dot, _step = job.partition(".")
        keys, meta = _keys(head)
        if meta or len(keys) != 1:
            continue
        key = keys[0]
        if dot:
            steps.setdefault(key, []).append((_mb(rss), cpu_seconds(total)))
            continue
        minutes = _int(limit)
        out[key] = Usage(
            alloc_cpus=_int(cpus),
            elapsed_s=_int(elapsed),
            timelimit_s=minutes * 60 if minutes is not None else None,
            total_cpu_s=cpu_seconds(total),
            req_mem_mb=_mb(req),
            gpus=_gpus(tres),
        )
    for key, rows in steps.items():
        u = out.get(key)
        if u is None:
            continue
        rss_values = [r for r, _ in rows if r is not None]
        u.max_rss_mb = max(rss_values) if rss_values else None
        u.steps = len(rows)
        if u.total_cpu_s is None:
            cpu = [c for _, c in rows if c is not None]
            u.total_cpu_s = sum(cpu) if cpu else None
    return out
