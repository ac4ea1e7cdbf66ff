"""Right-sizing across campaign batches (docs/campaigns.md#right-sizing), pure: from what the
finished batches' elements used, the memory and time each step of the next batch asks for.

Rules: never below what any element was seen to need (the largest measurement, and a request
an element ran out of, plus the margin); never above the partition's limits; only once a
step has ``min_samples`` completed elements; out-of-memory and timeout escalation still apply
on top, to the sized request.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcflow.campaign.spec import PERCENTILES, RightSize
from hpcflow.spec.overrides import Overrides, ResourceOverride, StepOverride
from hpcflow.tracker.efficiency import Floors, StepEfficiency, suggest


@dataclass(frozen=True)
class Request:
    """What the workflow itself asks for a step, and its partition's limits."""

    mem_mb: int | None
    time_s: int | None
    max_mem_mb: int | None = None
    max_time_s: int | None = None


def right_sized(
    spec: RightSize,
    measured: dict[str, StepEfficiency],
    floors: dict[str, Floors],
    requests: dict[str, Request],
) -> tuple[Overrides, dict[str, dict[str, str]], list[str]]:
    """(overrides for the next batch, step -> {mem, time} set, one note per change)."""
    steps: dict[str, StepOverride] = {}
    sized: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for name, req in requests.items():
        done = [e for e in (measured.get(name) or StepEfficiency()).elements
                if e.state == "COMPLETED" and e.elapsed_s is not None]  # fmt: skip
        fl = floors.get(name, Floors())
        sug = suggest(
            [e.peak_mb for e in done if e.peak_mb is not None] if spec.mem else [],
            [e.elapsed_s for e in done if e.elapsed_s is not None] if spec.time else [],
            fl if spec.mem or spec.time else Floors(),
            margin=spec.fraction,
            min_samples=spec.min_samples,
            partition_time_s=req.max_time_s,
            partition_mem_mb=req.max_mem_mb,
            mem_at=PERCENTILES[spec.mem or "p95"],
            time_at=PERCENTILES[spec.time or "p95"],
        )
        why = sug.get("why", {})
        wanted = ResourceOverride(**{k: sug[k] for k in ("mem", "time") if k in sug})
        got: dict[str, str] = {}
        if spec.mem and wanted.mem is not None and wanted.mem != req.mem_mb:
            got["mem"] = sug["mem"]
        if spec.time and wanted.time is not None and wanted.time != req.time_s:
            got["time"] = sug["time"]
        if not got:
            continue
        sized[name] = got
        steps[name] = StepOverride(resources=ResourceOverride(**got))
        was = {"mem": f"{req.mem_mb}M" if req.mem_mb else "default",
               "time": f"{req.time_s}s" if req.time_s else "default"}  # fmt: skip
        changes = ", ".join(f"{k} {was[k]} -> {v} ({why.get(k, '')})" for k, v in got.items())
        notes.append(f"right_size: {name}: {changes}; from {len(done)} completed elements")
    return Overrides(steps=steps), sized, notes
