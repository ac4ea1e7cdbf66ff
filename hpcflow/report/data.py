"""Everything `hpcflow report` shows, read from the tracker (driver SQL) into plain data:
bounded whatever the run's size. Elements become per-step bins above GANTT_ELEMENTS, events
become counts per time bin, failures become groups with a few stderr tails
(docs/report.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hpcflow.states import TaskState
from hpcflow.store import reports
from hpcflow.store.handles import Handle

BINS = 160  # time bins of the timeline and of the state counts
GANTT_ELEMENTS = 150  # a step with more elements is drawn as bins, not one bar each
TAIL_SAMPLES = 3  # stderr tails per failure group
TAIL_TOTAL = 30  # stderr tails in all
TAIL_BYTES = 2048
TAIL_LINES = 12
EVENT_ROWS = 500  # run-level events listed one by one (the latest); element moves are counted


@dataclass
class Lane:
    """One step on the timeline: its elements' (start, end, state) in epoch seconds, or
    ``bins`` (running elements per time bin) when it has more than GANTT_ELEMENTS."""

    step: str
    bars: list[tuple[float, float, str, int]] = field(default_factory=list)
    bins: list[int] = field(default_factory=list)
    elements: int = 0


@dataclass
class ReportData:
    status: dict[str, Any]
    edges: list[tuple[str, str, str]]  # (upstream step, kind, downstream step)
    t0: float
    t1: float
    lanes: list[Lane]
    states_over_time: dict[str, list[int]]  # state -> count per bin
    efficiency: dict[str, Any]
    histograms: dict[str, dict[str, list[float]]]  # step -> metric -> values
    failures: list[dict[str, Any]]
    events: list[dict[str, Any]]
    moves: list[dict[str, Any]]  # element moves counted by (step, state)


def epoch_local(text: Any) -> float | None:
    """sacct's 'YYYY-MM-DDTHH:MM:SS' (the cluster's local time) -> epoch seconds."""
    if not text or not isinstance(text, str) or len(text) != 19:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def epoch_utc(text: Any) -> float | None:
    """A DateTime column as stored (UTC text) -> epoch seconds."""
    if isinstance(text, datetime):
        dt = text
    else:
        try:
            dt = datetime.fromisoformat(str(text))
        except ValueError:
            return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def step_edges(db: Handle, run_id: str) -> list[tuple[str, str, str]]:
    """Dependencies between steps, with their Slurm kinds, from the jobs' recorded deps."""
    return sorted({(up, kind, down) for up, kind, down in reports.job_edges(db, run_id)
                   if up != down})  # fmt: skip


def element_times(db: Handle, run_id: str) -> dict[str, list[tuple[float, float, str, int]]]:
    """step -> [(start, end, state, index)] of elements that started: the job script's own
    times where it wrote them (per element, packed too), else sacct's."""
    out: dict[str, list[tuple[float, float, str, int]]] = {}
    for step, index, state, start, end, r_start, r_end in reports.element_time_rows(db, run_id):
        s = float(r_start) if isinstance(r_start, (int, float)) else epoch_local(start)
        e = float(r_end) if isinstance(r_end, (int, float)) else epoch_local(end)
        if s is None:
            continue
        out.setdefault(step, []).append((s, e if e is not None else s, state, index))
    return out


def lanes_of(times: dict[str, list[tuple[float, float, str, int]]], order: list[str],
             t0: float, t1: float, now: float) -> list[Lane]:  # fmt: skip
    span = max(t1 - t0, 1e-9)
    lanes = []
    for step in order:
        els = times.get(step, [])
        lane = Lane(step, elements=len(els))
        if len(els) <= GANTT_ELEMENTS:
            lane.bars = sorted(els, key=lambda x: (x[0], x[3]))
        else:
            # running elements per bin: +1 at the bin it starts, -1 after the bin it ends
            delta = [0] * (BINS + 1)
            for s, e, state, _ in els:
                end = now if state == TaskState.RUNNING.value else e
                a = min(BINS - 1, int((s - t0) / span * BINS))
                b = min(BINS - 1, int((end - t0) / span * BINS))
                delta[a] += 1
                delta[b + 1] -= 1
            run = 0
            for i in range(BINS):
                run += delta[i]
                lane.bins.append(run)
        lanes.append(lane)
    return lanes


def states_over_time(db: Handle, run_id: str, totals: dict[str, int], t0: float,
                     t1: float) -> dict[str, list[int]]:  # fmt: skip
    """Elements in each state at the end of each time bin, as the tracker recorded them
    (every element PENDING at submission, then its moves)."""
    span = max(t1 - t0, 1e-9)
    current: dict[str, int] = {TaskState.PENDING.value: sum(totals.values())}
    series: dict[str, list[int]] = {}
    moves = reports.element_moves(db, run_id)
    b = 0

    def close_until(limit: int) -> None:
        nonlocal b
        while b < limit:
            for st in set(series) | set(current):
                series.setdefault(st, [0] * b).append(current.get(st, 0))
            b += 1

    for when, old, new in moves:
        t = epoch_utc(when)
        if t is None:
            continue
        close_until(min(BINS - 1, max(0, int((t - t0) / span * BINS))))  # late: last bin
        current[old] = current.get(old, 0) - 1
        current[new] = current.get(new, 0) + 1
    close_until(BINS)
    return {st: v for st, v in series.items() if any(v)}


def failure_groups(db: Handle, run_id: str) -> list[dict[str, Any]]:
    """Failed elements grouped by (step, state, exit code, reason), with their indices."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for step, index, state, code, reason in reports.failed_elements(db, run_id):
        groups.setdefault((step, state, code, reason or ""), []).append(index)
    return [
        {
            "step": k[0],
            "state": k[1],
            "exit_code": k[2],
            "reason": k[3],
            "indices": v,
            "count": len(v),
            "tails": {},
        }  # fmt: skip
        for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


def run_events(db: Handle, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run-level events and notes one by one (the latest EVENT_ROWS), element moves counted
    per (step, new state) with their first and last time."""
    events = reports.run_level_events(db, run_id, EVENT_ROWS)
    moves = [
        {"step": step, "new_state": new, "count": n, "first": first, "last": last}
        for step, new, n, first, last in reports.move_counts(db, run_id)
    ]
    return events, moves
