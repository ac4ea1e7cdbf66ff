"""What people see: status tables, run lists and the live watch view (rich)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from hpcflow.states import TERMINAL, TaskState
from hpcflow.store.lite import dynamic_label
from hpcflow.util.units import human_duration

ORDER = [s.value for s in TaskState]
STYLE = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "FAILED": "red",
    "TIMEOUT": "red",
    "OUT_OF_MEMORY": "red",
    "NODE_FAIL": "red",
    "CANCELLED": "yellow",
    "UPSTREAM_FAILED": "magenta",
    "UNKNOWN": "bold red",
    "SKIPPED": "blue",
    "RESOLVED": "blue",
    "LOST": "bold red",
}


def _console() -> Console:
    return Console(highlight=False)


def _counts(states: dict[str, int]) -> str:
    parts = []
    for k in ORDER:
        if states.get(k):
            style = STYLE.get(k)
            parts.append(f"[{style}]{k} {states[k]}[/]" if style else f"{k} {states[k]}")
    return "  ".join(parts)


def print_status(doc: dict[str, Any], with_tasks: bool = False) -> None:
    c = _console()
    # everything a user wrote (labels, versions, reasons, values) is escaped: rich markup
    # such as "[/x]" in a label is printed as written, never interpreted
    c.print(
        f"[bold]{escape(doc['run_id'])}[/]  workflow {escape(doc['workflow'])}"
        f"{' ' + escape(doc['version']) if doc.get('version') else ''}  "
        f"state [bold]{doc['state']}[/]  submitted {doc['submitted_at']}  "
        f"refreshed {doc['refreshed_at'] or 'never'}"
    )
    if doc.get("degraded"):
        c.print(f"[bold yellow]degraded:[/] {escape(str(doc['degraded']))}")
    for a in doc.get("nodes_avoided") or []:
        c.print(f"[bold yellow]avoiding node {escape(a['node'])}:[/] {escape(a['why'])}")
    present = [s for s in ORDER if any(st["states"].get(s) for st in doc["steps"].values())]
    t = Table(show_edge=False)
    t.add_column("step")
    t.add_column("total", justify="right")
    for s in present:
        t.add_column(s, justify="right", style=STYLE.get(s))
    t.add_column("slurm jobs")
    for name, st in doc["steps"].items():
        jobs = st["slurm_jobs"]
        shown = ",".join(jobs[:4]) + (f",+{len(jobs) - 4}" if len(jobs) > 4 else "")
        label = f"{name} ({st['role']})" if st.get("role") else name
        if st.get("dynamic") and st["dynamic"]["state"] != "expanded":
            label += f" ({dynamic_label(st['dynamic'])})"
        total = "?" if st["total"] is None else str(st["total"])
        t.add_row(escape(label), total, *[str(st["states"].get(s, "")) for s in present], shown)
    c.print(t)
    if with_tasks:
        for name, st in doc["steps"].items():
            for task in st.get("tasks", []):
                if task["state"] != "COMPLETED":
                    why = f"  {task['reason']}" if task.get("reason") else ""
                    c.print(
                        escape(
                            f"  {name}[{task['index']}] {task['item']} {task['state']} "
                            f"exit={task['exit_code']} job={task['slurm_job_id']}{why}"
                        )
                    )
                if task.get("outputs"):
                    c.print(escape(f"  {name}[{task['index']}] outputs {task['outputs']}"))


def print_runs(rows: list[Any]) -> None:
    t = Table(show_edge=False)
    # the run id is what people copy: never cut or wrapped, whatever the terminal's width
    width = max([len(r.id) for r in rows] + [3])
    t.add_column("run", no_wrap=True, min_width=width)
    for col in ("workflow", "namespace", "state", "submitted (UTC)", "label"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            escape(r.id),
            escape(r.workflow),
            escape(r.namespace or ""),
            r.state,
            r.submitted_at.strftime("%Y-%m-%d %H:%M"),
            escape(r.label or ""),
        )
    _console().print(t)


def pace(done: int, total: int, submitted_at: str | None, now: float | None = None) -> str:
    """'12.0/min ETA 3m20s' from the elements finished since submission."""
    if not submitted_at or done == 0:
        return ""
    start = datetime.strptime(submitted_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    elapsed = max((now or time.time()) - start.timestamp(), 1.0)
    per_min = done / elapsed * 60
    if done >= total:
        return f"{per_min:.1f}/min"
    return f"{per_min:.1f}/min ETA {human_duration((total - done) / per_min * 60)}"


def watch(
    next_doc: Callable[[], dict[str, Any]],
    run_id: str,
    interval: float,
    timeout: float | None,
) -> int:
    """Draw bars until the run ends; ``next_doc`` syncs with Slurm and returns the status
    document (this module only draws)."""
    start = time.monotonic()
    c = _console()
    progress = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[pace]:>22}"),
        TextColumn("{task.fields[counts]}"),
        console=c,
        auto_refresh=False,
    )
    bars: dict[str, Any] = {}
    with Live(progress, console=c, refresh_per_second=4, transient=False) as live:
        while True:
            doc = next_doc()
            for name, st in doc["steps"].items():
                done = sum(n for s, n in st["states"].items() if TaskState(s) in TERMINAL)
                if name not in bars:
                    bars[name] = progress.add_task(
                        escape(name), total=st["total"], counts="", pace=""
                    )
                dyn = st.get("dynamic")
                waiting = dynamic_label(dyn) if dyn and dyn["state"] != "expanded" else None
                progress.update(
                    bars[name],
                    total=st["total"],
                    completed=done,
                    counts=waiting or _counts(st["states"]),
                    pace=""
                    if st["total"] is None
                    else pace(done, st["total"], doc["submitted_at"]),
                )
            live.refresh()
            if doc["state"] not in ("PENDING", "RUNNING"):
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                c.print(
                    escape(f"watch: timed out after {timeout:.0f}s; run {run_id} is {doc['state']}")
                )
                return 124
            time.sleep(interval)
    if not c.is_terminal:
        c.line()  # Live leaves the cursor at the end of the last bar when not on a terminal
    c.print(f"run {run_id}: [bold]{doc['state']}[/]")
    return 0 if doc["state"] == "COMPLETED" else 1


def print_efficiency(doc: dict[str, Any]) -> None:
    """Three lines per step: what it used against what it asked for, and the suggestion
    (docs/efficiency.md). Plain lines: they fit a login node's 80 columns."""
    c = Console(highlight=False, soft_wrap=True)  # long lines stay whole: grep-able
    c.print(f"[bold]{escape(doc['run_id'])}[/]  used against requested")
    for name, st in doc["steps"].items():
        cpu, mem, el, ch = st["cpu"], st["mem"], st["elapsed"], st["core_hours"]
        eff = f"{cpu['efficiency']:.0%}" if cpu["efficiency"] is not None else "-"
        asked = f"{mem['requested_mb']}M" if mem["requested_mb"] else "default"
        limit = human_duration(el["limit_s"]) if el["limit_s"] else "default"
        spans = "/".join(human_duration(el[k]) if el[k] is not None else "-"
                         for k in ("p50_s", "p95_s", "max_s"))  # fmt: skip
        peaks = "/".join(_mb_text(mem[k]) for k in ("p50_mb", "p95_mb", "max_mb"))
        c.print(f"[bold]{escape(name)}[/]  {st['measured']}/{st['elements']} measured  "
                f"CPUs {_or_dash(cpu['requested'])} at {eff}  "
                f"core-h {ch['used']:.2f} of {ch['reserved']:.2f}")  # fmt: skip
        c.print(f"  mem {asked} asked, p50/p95/max {peaks}   "
                f"time {limit} limit, p50/p95/max {spans}")  # fmt: skip
        sug, why = st["suggest"], st["suggest"].get("why", {})
        shown = ", ".join(f"{k}: {sug[k]}" + (f" ({escape(why[k])})" if why.get(k) else "")
                          for k in ("mem", "time") if k in sug)  # fmt: skip
        out = st["ran_out"]
        if out["memory"] or out["time"]:
            c.print(f"  [red]ran out: {out['memory']} of memory, {out['time']} of time[/]")
        c.print(f"  suggest {shown or '- (nothing completed yet)'}")


def _or_dash(v: Any) -> str:
    return "-" if v is None else str(v)


def _mb_text(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1024:.1f}G" if v >= 1024 else f"{v:.0f}M"
