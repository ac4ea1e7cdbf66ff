"""Memory and time typed once, at the edge: a spec field holds megabytes or seconds (int),
parsed from what the user wrote when the file is loaded. Everything after works on the
numbers; a dump (``sites show``, ``dynamic/spec.json``) writes them back as text that reads
the same (``6G``, ``1h30m``). See docs/workflow-format.md#units."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from hpcflow.util.units import parse_duration_s, parse_mem_mb, parse_slurm_time_s


def mem_text(mb: int) -> str:
    """Megabytes as the shortest size text that parses back to the same number."""
    for unit, size in (("T", 1024 * 1024), ("G", 1024)):
        if mb % size == 0:
            return f"{mb // size}{unit}"
    return f"{mb}M"


def duration_text(seconds: int) -> str:
    """Seconds as ``2d``, ``1h30m``, ``90s`` -> ``1m30s``: text that parses back the same."""
    if seconds <= 0:
        return "0s"
    out, rest = "", int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out += f"{n}{unit}"
    return out


def _mem(value: Any) -> int:
    if isinstance(value, float):  # 1.5 of what? a bare number is MB, and MB are whole
        raise ValueError(f"bad memory size {value!r} (use e.g. 512M, 1.5G)")
    return parse_mem_mb(value)


def _duration_or_zero(value: Any) -> int:
    return 0 if value in (0, "0", "0s") and not isinstance(value, bool) else parse_duration_s(value)


MB = Annotated[int, BeforeValidator(_mem), PlainSerializer(mem_text, return_type=str)]
"""A memory size in megabytes; the file may say 512M, 6G, 1.5G or 4096 (MB)."""

JobTime = Annotated[
    int, BeforeValidator(parse_slurm_time_s), PlainSerializer(duration_text, return_type=str)
]
"""A job time limit in seconds; the file says 90s, 20m, 1h30m or 2-00:00:00 (never a bare
number, which Slurm would read as minutes)."""

Seconds = Annotated[
    int, BeforeValidator(parse_duration_s), PlainSerializer(duration_text, return_type=str)
]
"""A positive duration in seconds (90s, 5m, 1h; a bare number is seconds)."""

SecondsOrZero = Annotated[
    int, BeforeValidator(_duration_or_zero), PlainSerializer(duration_text, return_type=str)
]
"""A duration in seconds where 0 means none (no wait, no cap)."""
