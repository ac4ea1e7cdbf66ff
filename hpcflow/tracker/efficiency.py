"""Used against requested, per step, and what to request next time (docs/efficiency.md).

Pure: ``summarize`` turns what each element used (``ElementUse``, from its record and the
usage sacct gave once its chunk ended) into the stable JSON of `hpcflow efficiency --json`.
``suggest`` never goes below what any element was seen to need: a peak or an elapsed time
that was measured, or the request of an element that ran out of memory or time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MARGIN = 0.20  # headroom over the p95, as in "p95 1.3G + 20%"
MIN_SAMPLES = 1  # efficiency suggests from any sample; right_size: sets its own


@dataclass(slots=True)
class ElementUse:
    """One finished element: what it asked for (per element) and what it used."""

    state: str
    cpus: int | None = None  # CPUs asked for
    mem_req_mb: int | None = None
    time_limit_s: int | None = None
    gpus: int = 0
    elapsed_s: float | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None


@dataclass
class Floors:
    """What elements were seen to need more than: requests of the elements of a step that ran
    out of memory (mem) or time (time), at any attempt."""

    mem_mb: int = 0
    time_s: int = 0
    oom: int = 0
    timeouts: int = 0


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0-100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(p / 100 * len(s)))
    return s[k - 1]


def _dist(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values) if values else None}  # fmt: skip


def mem_text(mb: float) -> str:
    """Megabytes -> a request Slurm and the workflow format read, rounded up: to 100M below
    10G, to whole G above."""
    if mb < 10_000:
        return f"{max(100, math.ceil(mb / 100) * 100)}M"
    return f"{math.ceil(mb / 1024)}G"


def time_text(seconds: float) -> str:
    """Seconds -> '15m', '1h30m', '2d4h' (rounded up to the minute, at least 1m)."""
    minutes = max(1, math.ceil(seconds / 60))
    d, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    return "".join(parts)


def suggest(
    peaks_mb: list[float], elapsed_s: list[float], floors: Floors, margin: float = MARGIN,
    min_samples: int = MIN_SAMPLES, partition_time_s: int | None = None,
    partition_mem_mb: int | None = None, mem_at: float = 95, time_at: float = 95,
) -> dict[str, Any]:  # fmt: skip
    """{'mem': '1600M', 'time': '15m', 'why': {...}} from the p95 plus ``margin``; a key is
    left out when there are fewer than ``min_samples`` measurements. Never below the largest
    measurement, nor below the request of an element that ran out of memory / time (then
    ``margin`` above it), nor above the partition's limits. ``mem_at`` / ``time_at``: the
    percentile (100: the maximum)."""
    out: dict[str, Any] = {}
    why: dict[str, str] = {}
    for key, values, at, ran_out, floor, cap, text, shown, what in (
        ("mem", peaks_mb, mem_at, floors.oom, floors.mem_mb, partition_mem_mb, mem_text,
         lambda v: f"{v:.0f}M", "memory"),
        ("time", elapsed_s, time_at, floors.timeouts, floors.time_s, partition_time_s,
         time_text, _secs, "time"),
    ):  # fmt: skip
        if len(values) < min_samples and not ran_out:
            continue
        p = percentile(values, at) or 0.0
        want = max(p * (1 + margin), max(values, default=0.0))
        why[key] = f"{_p(at)} {shown(p)} + {margin:.0%}" if values else ""
        if ran_out and want <= floor:
            want = floor * (1 + margin)
            why[key] = f"{ran_out} element(s) ran out of {what} at {text(floor)}: never lower"
        if cap is not None and want >= cap:  # never above the partition
            out[key] = text(cap) if key == "time" else f"{cap}M"
        else:
            out[key] = text(want)
    if out:
        out["why"] = {k: v for k, v in why.items() if v}
    return out


def _secs(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else time_text(s)


def _p(at: float) -> str:
    return "max" if at >= 100 else f"p{at:g}"


@dataclass
class StepEfficiency:
    elements: list[ElementUse] = field(default_factory=list)
    floors: Floors = field(default_factory=Floors)


def summarize_step(step: StepEfficiency, margin: float = MARGIN) -> dict[str, Any]:
    """The JSON of one step (docs/cli.md#efficiency)."""
    els = step.elements
    ran = [e for e in els if e.elapsed_s is not None]  # core-hours: every element that ran
    done = [e for e in ran if e.state == "COMPLETED"]  # what is needed: the ones that worked
    first = next((e for e in els if e.cpus is not None), None)
    cpus = first.cpus if first else None
    mem_req = next((e.mem_req_mb for e in els if e.mem_req_mb is not None), None)
    limit = next((e.time_limit_s for e in els if e.time_limit_s is not None), None)
    cpu_used = sum(e.cpu_s for e in ran if e.cpu_s is not None)
    reserved = sum((e.cpus or 1) * (e.elapsed_s or 0) for e in ran if e.cpu_s is not None)
    all_reserved = sum((e.cpus or 1) * (e.elapsed_s or 0) for e in ran)
    gpu_reserved = sum(e.gpus * (e.elapsed_s or 0) for e in ran)
    peaks = [e.peak_mb for e in done if e.peak_mb is not None]
    elapsed = [e.elapsed_s for e in done if e.elapsed_s is not None]
    mem = _dist(peaks)
    span = _dist(elapsed)
    return {
        "elements": len(els),
        "measured": len(done),
        "states": _counts(e.state for e in els),
        "cpu": {
            "requested": cpus,
            "used_s": round(cpu_used, 2),
            "efficiency": round(cpu_used / reserved, 4) if reserved else None,
        },  # fmt: skip
        "mem": {
            "requested_mb": mem_req,
            "p50_mb": _r(mem["p50"]),
            "p95_mb": _r(mem["p95"]),
            "max_mb": _r(mem["max"]),
            "measured": len(peaks),
        },  # fmt: skip
        "elapsed": {
            "limit_s": limit,
            "p50_s": _r(span["p50"]),
            "p95_s": _r(span["p95"]),
            "max_s": _r(span["max"]),
        },  # fmt: skip
        "core_hours": {
            "used": round(cpu_used / 3600, 4),
            "reserved": round(all_reserved / 3600, 4),
        },
        "gpu_hours": {"reserved": round(gpu_reserved / 3600, 4)},
        "ran_out": {"memory": step.floors.oom, "time": step.floors.timeouts},
        "suggest": suggest(peaks, elapsed, step.floors, margin),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _counts(states: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in states:
        out[s] = out.get(s, 0) + 1
    return dict(sorted(out.items()))
