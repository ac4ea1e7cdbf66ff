"""Sizes and durations as users write them, converted to what Slurm wants."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_FACTOR = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_mem_mb(value: object) -> int:
    """'512M', '6G', '1.5G', 4096 (MB) -> megabytes. Raises ValueError with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"bad memory size {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"memory must be positive, got {value}")
        if value > MAX_MEM_MB:
            raise ValueError(f"memory {value!r} is absurdly large")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"bad memory size {value!r} (use e.g. 512M, 6G)")
    mb = float(m.group(1)) * _FACTOR[m.group(2).upper()]
    if mb < 1:
        raise ValueError(f"memory {value!r} is under 1M")
    if mb > MAX_MEM_MB:
        raise ValueError(f"memory {value!r} is absurdly large")
    return int(round(mb))


_DUR_UNITS = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_duration_s(value: object) -> int:
    """'90s', '20m', '1h30m', '1d', '2-00:00:00', '01:30:00', 3600 (s) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"duration must be positive, got {value}")
        return int(value)
    text = str(value).strip()
    m = _SLURM_TIME.match(text)
    if m and (":" in text or "-" in text):
        d, a, b, c = m.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if d is not None:  # D-HH[:MM[:SS]]
            h, mi, s = (parts + [0, 0])[:3]
        elif len(parts) == 3:
            h, mi, s = parts
        else:  # MM:SS, as Slurm reads it
            h, (mi, s) = 0, parts
        total = int(d or 0) * 86400 + h * 3600 + mi * 60 + s
        if total <= 0:
            raise ValueError(f"duration must be positive, got {value!r}")
        return total
    pos = 0
    total_f = 0.0
    for um in _DUR_UNITS.finditer(text):
        if text[pos : um.start()].strip():
            break
        total_f += float(um.group(1)) * _SECONDS[um.group(2).lower()]
        pos = um.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"bad duration {value!r} (use e.g. 90s, 20m, 1h30m, 2-00:00:00)")
    if total_f <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return int(total_f)


def parse_slurm_time_s(value: object) -> int:
    """A job time limit. A bare number is refused as ambiguous: Slurm reads ``--time=10``
    as 10 minutes, most people as 10 seconds (docs/workflow-format.md)."""
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)
    ):
        raise ValueError(
            f"time {value!r} is ambiguous (Slurm reads a bare number as minutes): "
            f"write {str(value).strip()}m, {str(value).strip()}s or HH:MM:SS"
        )
    seconds = parse_duration_s(value)
    if seconds > MAX_TIME_S:
        raise ValueError(f"time {value!r} is over Slurm's limit of 365 days")
    return seconds


MAX_TIME_S = 365 * 86400
MAX_MEM_MB = 2**40  # 1 EiB: over this Slurm's fields overflow


def slurm_time(seconds: int) -> str:
    """Seconds -> Slurm's D-HH:MM:SS (rounded up to whole minutes Slurm uses anyway)."""
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}"


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
