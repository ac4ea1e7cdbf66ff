"""Inline SVG for the report, no library: the step graph, the timeline, state counts over
time, histograms. Every text a user wrote goes through ``esc``; sizes are bounded by the
number of steps and bins, never by the number of elements above data.GANTT_ELEMENTS."""

from __future__ import annotations

import math
from datetime import datetime
from html import escape
from typing import Any

COLORS = {
    "COMPLETED": "#2e7d32", "RUNNING": "#0288d1", "PENDING": "#9e9e9e", "FAILED": "#c62828",
    "TIMEOUT": "#ef6c00", "OUT_OF_MEMORY": "#ad1457", "NODE_FAIL": "#6a1b9a",
    "CANCELLED": "#f9a825", "UPSTREAM_FAILED": "#8d6e63", "UNKNOWN": "#000000",
    "SKIPPED": "#90caf9", "RESOLVED": "#4db6ac", "LOST": "#424242", "PREEMPTED": "#7e57c2",
}  # fmt: skip


def esc(v: Any) -> str:
    return escape(str(v), quote=True)


def color(state: str) -> str:
    return COLORS.get(state, "#607d8b")


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%m-%d %H:%M:%S")


def dag(steps: dict[str, dict[str, Any]], edges: list[tuple[str, str, str]]) -> str:
    """Steps in layers by their longest chain of upstreams; each box shows its counts; each
    edge its Slurm dependency kind."""
    ups: dict[str, list[str]] = {s: [] for s in steps}
    for a, _, b in edges:
        if a in ups and b in ups:
            ups[b].append(a)
    depth: dict[str, int] = {}

    def d(s: str, seen: frozenset[str] = frozenset()) -> int:
        if s not in depth:
            depth[s] = 1 + max((d(u, seen | {s}) for u in ups[s] if u not in seen), default=-1)
        return depth[s]

    for s in steps:
        d(s)
    layers: dict[int, list[str]] = {}
    for s in steps:
        layers.setdefault(depth[s], []).append(s)
    bw, bh, gx, gy = 210, 58, 40, 50
    width = max(len(v) for v in layers.values()) * (bw + gx) + gx if layers else 100
    height = len(layers) * (bh + gy) + gy
    pos = {}
    for lv, names in layers.items():
        for i, s in enumerate(names):
            pos[s] = (gx + i * (bw + gx), gy // 2 + lv * (bh + gy))
    out = [f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'role="img" aria-label="step graph">']  # fmt: skip
    for a, kind, b in edges:
        if a not in pos or b not in pos:
            continue
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1, x2, y2 = ax + bw / 2, ay + bh, bx + bw / 2, float(by)
        out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                   'class="edge" marker-end="url(#arrow)"/>')  # fmt: skip
        out.append(f'<text x="{(x1 + x2) / 2 + 4:.0f}" y="{(y1 + y2) / 2:.0f}" '
                   f'class="kind">{esc(kind)}</text>')  # fmt: skip
    out.append(
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z"/></marker></defs>'
    )
    for s, st in steps.items():
        x, y = pos[s]
        total = st.get("total", 0) or 0
        out.append(
            f"<g><title>{esc(s)}: {esc(_counts_text(st))}</title>"
            f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="6" class="box"/>'
        )
        out.append(f'<text x="{x + 8}" y="{y + 18}" class="name">{esc(s[:28])}</text>')
        # a bar of the step's states
        cx = x + 8.0
        for state, n in sorted(st.get("states", {}).items()):
            w = (bw - 16) * n / total if total else 0
            out.append(f'<rect x="{cx:.1f}" y="{y + 28}" width="{w:.1f}" height="10" '
                       f'fill="{color(state)}"/>')  # fmt: skip
            cx += w
        out.append(f'<text x="{x + 8}" y="{y + 52}" class="small">{total} elements</text></g>')
    out.append("</svg>")
    return "".join(out)


def _counts_text(st: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(st.get("states", {}).items()))


def timeline(lanes: list[Any], t0: float, t1: float, width: int = 960) -> str:
    """A Gantt chart: one bar per element for small steps, running counts per bin above."""
    left, span = 150, max(t1 - t0, 1e-9)
    plot = width - left - 10

    def x(t: float) -> float:
        return left + (t - t0) / span * plot

    rows: list[str] = []
    y = 24
    for lane in lanes:
        rows.append(f'<text x="4" y="{y + 12}" class="name">{esc(lane.step[:20])}</text>')
        if lane.bins:
            peak = max(lane.bins) or 1
            bw = plot / len(lane.bins)
            for i, n in enumerate(lane.bins):
                if n:
                    h = 36 * n / peak
                    rows.append(
                        f'<rect x="{left + i * bw:.1f}" y="{y + 36 - h:.1f}" width="{bw:.2f}" '
                        f'height="{h:.1f}" fill="#0288d1"><title>{n} running</title></rect>'
                    )
            rows.append(f'<text x="{left}" y="{y + 48}" class="small">{lane.elements} '
                        f"elements, running at once (peak {peak})</text>")  # fmt: skip
            y += 60
        else:
            for s, e, state, index in lane.bars:
                w = max(x(e) - x(s), 1.0)
                rows.append(f'<rect x="{x(s):.1f}" y="{y}" width="{w:.1f}" height="3" '
                            f'fill="{color(state)}"><title>{esc(lane.step)}[{index}] {esc(state)} '
                            f"{e - s:.0f} s</title></rect>")  # fmt: skip
                y += 4
            y += 16
    axis = "".join(
        f'<text x="{x(t0 + span * k / 4):.0f}" y="14" class="small">'
        f"{_clock(t0 + span * k / 4)}</text>"
        for k in range(4)
    )
    return (f'<svg class="timeline" viewBox="0 0 {width} {y}" width="{width}" height="{y}" '
            f'role="img" aria-label="timeline">{axis}{"".join(rows)}</svg>')  # fmt: skip


def stacked(series: dict[str, list[int]], t0: float, t1: float, width: int = 960,
            height: int = 200) -> str:  # fmt: skip
    """Elements per state over time, stacked."""
    if not series:
        return '<p class="small">no state changes recorded</p>'
    n = len(next(iter(series.values())))
    top = max(sum(v[i] for v in series.values()) for i in range(n)) or 1
    left, plot = 40, width - 50
    base = [0.0] * n
    out = []
    for state in sorted(series, key=lambda s: list(COLORS).index(s) if s in COLORS else 99):
        v = series[state]
        upper = [base[i] + v[i] for i in range(n)]
        pts = [(left + i * plot / max(n - 1, 1), height - 20 - upper[i] / top * (height - 30))
               for i in range(n)]  # fmt: skip
        low = [(left + i * plot / max(n - 1, 1), height - 20 - base[i] / top * (height - 30))
               for i in reversed(range(n))]  # fmt: skip
        d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts + low)
        out.append(f'<polygon points="{d}" fill="{color(state)}"><title>{state}</title></polygon>')
        base = upper
    legend = "".join(f'<tspan fill="{color(s)}">&#9632; {s} </tspan>' for s in series)
    return (
        f'<svg class="states" viewBox="0 0 {width} {height + 16}" width="{width}" '
        f'height="{height + 16}" role="img" aria-label="states over time">'
        f'<text x="{left}" y="{height + 10}" class="small">{legend}</text>'
        f'<text x="2" y="12" class="small">{top}</text>{"".join(out)}'
        f'<text x="{left}" y="{height - 6}" class="small">{_clock(t0)}</text>'
        f'<text x="{width - 130}" y="{height - 6}" class="small">{_clock(t1)}</text></svg>'
    )


def histogram(values: list[float], label: str, bins: int = 20, width: int = 300,
              height: int = 110) -> str:  # fmt: skip
    """Counts of ``values`` in ``bins`` equal bins from 0 (or the minimum) to the maximum."""
    if not values:
        return f'<div class="hist"><p class="small">{esc(label)}: not measured</p></div>'
    lo, hi = min(0.0, min(values)), max(values)
    step = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / step))] += 1
    top = max(counts)
    bw = (width - 20) / bins
    bars = "".join(
        f'<rect x="{10 + i * bw:.1f}" y="{height - 20 - 70 * c / top:.1f}" width="{bw - 1:.1f}" '
        f'height="{70 * c / top:.1f}" fill="#5c6bc0"><title>{_num(lo + i * step)}-'
        f"{_num(lo + (i + 1) * step)}: {c}</title></rect>"
        for i, c in enumerate(counts)
        if c
    )
    return (
        f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(label)}"><text x="10" y="12" class="small">'
        f"{esc(label)} (n={len(values)})</text>{bars}"
        f'<text x="10" y="{height - 6}" class="small">{_num(lo)}</text>'
        f'<text x="{width - 60}" y="{height - 6}" class="small">{_num(hi)}</text></svg>'
    )


def _num(v: float) -> str:
    if math.isfinite(v) and abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2g}"
