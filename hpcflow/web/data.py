"""What the dashboard and its API read (docs/web.md): the tracker through a read-only sqlite3
connection per request, in the shapes the CLI's JSON has. Pages are bounded (tasks and
history come in pages); what costs a pass over every element (timeline, metrics) is cached
per run until the run changes."""

from __future__ import annotations

import threading
from typing import Any

from hpcflow.errors import HpcflowError, NotFound
from hpcflow.facts import projection
from hpcflow.store import campaigns as store_campaigns
from hpcflow.store import lite, reads

PER_PAGE = 100
MAX_PAGE = 1_000_000  # pages and indexes past these are a 422, never an SQLite overflow (500)
MAX_INDEX = 100_000_000
MAX_PER_PAGE = 1000
MAX_TAIL_LINES = 5000
TAIL_BYTES = 256 * 1024


Db = reads.ReadOnly  # the read-only connection every request opens


def run_of(db: Db, run_id: str) -> Any:
    run = lite.find_run(db.conn, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


def runs(db: Db, state: str | None = None, workflow: str | None = None,
         namespace: str | None = None, since: str | None = None) -> dict[str, Any]:  # fmt: skip
    """As `hpcflow runs --json`, newest first, with per-run element counts."""
    counts = reads.counts_by_run(db.conn)
    out = []
    for r in reads.run_rows(db.conn, state, workflow, namespace, since):
        h = lite.run_header(r)
        h.pop("steps")
        h["counts"] = counts.get(r.id, {})
        out.append(h)
    return {"runs": out}


def run_doc(db: Db, run_id: str) -> dict[str, Any]:
    """As `hpcflow status RUN --json`."""
    return lite.status_doc(db.conn, run_of(db, run_id))


def tasks(db: Db, run_id: str, step: str | None, state: str | None, page: int,
          per_page: int = PER_PAGE) -> dict[str, Any]:  # fmt: skip
    """One page of elements (as `status --tasks` prints them), by step and index."""
    run = run_of(db, run_id)
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    total, rows, job_sid = reads.task_page(db.conn, run.id, step, state, page, per_page)
    docs = []
    for t in rows:
        d = lite.task_doc(t, job_sid.get(t.job_id), run.run_dir)
        d["step"] = t.step
        docs.append(d)
    pages = max(1, -(-total // per_page))
    return {"run_id": run.id, "step": step, "state": state, "page": page, "per_page": per_page,
            "pages": pages, "total": total, "tasks": docs}  # fmt: skip


def history(db: Db, run_id: str, page: int, per_page: int = 500) -> dict[str, Any]:
    """As `hpcflow history RUN --json`, a page at a time (oldest first)."""
    from hpcflow.tracker.events import event_json

    run = run_of(db, run_id)
    per_page = max(1, min(per_page, MAX_PER_PAGE * 5))
    total, rows = reads.history_page(db.conn, run.id, page, per_page)
    events = [event_json(r | {"time": lite._dt(r["time"])}) for r in rows]
    return {"run_id": run.id, "page": max(1, page), "per_page": per_page,
            "pages": max(1, -(-total // per_page)), "total": total, "events": events}  # fmt: skip


def graph(db: Db, run_id: str) -> dict[str, Any]:
    """Steps with their counts, and the dependencies between them with their Slurm kinds."""
    from hpcflow.report.data import step_edges

    doc = run_doc(db, run_id)
    edges = step_edges(db, doc["run_id"])
    return {"run_id": doc["run_id"],
            "steps": {n: {"total": st["total"], "states": st["states"]}
                      for n, st in doc["steps"].items()},
            "edges": [{"from": a, "kind": k, "to": b} for a, k, b in edges]}  # fmt: skip


class RunCache:
    """Per-run results of whole-run passes (timeline, metrics), kept until the run's
    refreshed_at or state changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[tuple[Any, ...], Any]] = {}

    def get(self, db: Db, run_id: str, what: str, make: Any) -> Any:
        run = run_of(db, run_id)
        stamp = (run.state, str(run.refreshed_at), str(run.finished_at))
        with self._lock:
            hit = self._items.get((run.id, what))
        if hit and hit[0] == stamp:
            return hit[1]
        value = make(db, run)
        with self._lock:
            self._items[(run.id, what)] = (stamp, value)
        return value


def timeline(db: Db, run: Any) -> dict[str, Any]:
    """The report's timeline (binned above GANTT_ELEMENTS a step) and states over time."""
    import time

    from hpcflow.report.data import element_times, epoch_utc, lanes_of, states_over_time

    doc = lite.status_doc(db.conn, run)
    now = time.time()
    times = element_times(db, run.id)
    starts = [x[0] for v in times.values() for x in v]
    ends = [x[1] for v in times.values() for x in v]
    t0 = min([epoch_utc(doc["submitted_at"]) or now, *starts])
    t1 = max([t0 + 1, *ends, epoch_utc(doc["finished_at"]) or now if doc["finished_at"] else
              (max(ends) if ends else now)])  # fmt: skip
    lanes = lanes_of(times, list(doc["steps"]), t0, t1, now)
    totals = {n: st["total"] or 0 for n, st in doc["steps"].items()}
    return {"run_id": run.id, "t0": t0, "t1": t1,
            "lanes": [{"step": ln.step, "elements": ln.elements, "bins": ln.bins,
                       "bars": [list(b) for b in ln.bars]} for ln in lanes],
            "states_over_time": states_over_time(db, run.id, totals, t0, t1)}  # fmt: skip


def metrics(db: Db, run: Any) -> dict[str, Any]:
    """As `hpcflow efficiency RUN --json`, from what the tracker stored (no sacct)."""
    from hpcflow.tracker.efficiency import summarize_step
    from hpcflow.tracker.usage import element_uses

    uses = element_uses(db, run.id)
    return {"run_id": run.id, "steps": {n: summarize_step(u) for n, u in uses.items()}}


def log_tail(db: Db, runner: Any, run_id: str, step: str, index: int, stream: str,
             tail: int) -> dict[str, Any]:  # fmt: skip
    """The last ``tail`` lines of one element's log. The path is built from the run's
    directory, a step the run has and an integer index: nothing a request sends can point
    elsewhere."""
    from hpcflow.node.jobtool import log_path

    run = run_of(db, run_id)
    if step not in reads.step_names(db.conn, run.id):
        raise NotFound(f"run {run.id} has no step {step!r}")
    if stream not in ("stdout", "stderr"):
        raise NotFound(f"no stream {stream!r} (stdout or stderr)")
    if not reads.has_element(db.conn, run.id, step, index):
        raise NotFound(f"step {step!r} of run {run.id} has no element {index}")
    path = log_path(run.run_dir, step, index, "err" if stream == "stderr" else "out")
    data = runner.read_tails([path], TAIL_BYTES, within=run.run_dir).get(path)
    if data is None:
        raise NotFound(f"no {stream} yet for {step}[{index}] (has it started?)")
    lines = data.decode(errors="replace").split("\n")  # as written: not at U+2028 too
    lines = lines[:-1] if lines[-1] == "" else lines
    tail = max(1, min(tail, MAX_TAIL_LINES))
    return {"run_id": run.id, "step": step, "index": index, "stream": stream,
            "lines": lines[-tail:]}  # fmt: skip


def campaigns(db: Db) -> dict[str, Any]:
    """Every campaign in the tracker with its batches' progress (from the database alone)."""
    return {"campaigns": [campaign(db, n) for n in store_campaigns.names(db.conn)]}


def campaign(db: Db, name: str) -> dict[str, Any]:
    """A campaign's batches (events, run, run state, elements per state) and its events'
    progress, as `hpcflow campaign status --json` counts them (hpcflow/facts.py): events
    done, failed, running and pending, the failed events, throughput, a projected finish."""
    from datetime import datetime, timezone

    try:
        info, stored, prog = store_campaigns.progress(db.conn, name)
    except KeyError:
        raise NotFound(f"no campaign {name!r}") from None
    batches = []
    for b in stored:
        f = b.facts
        counts = store_campaigns.element_counts(db.conn, f.run_id) if f.run_id else {}
        batches.append({"index": f.index, "events": b.n_events,
                        "state": b.run_state or f.state.value, "run_id": f.run_id,
                        "retries": f.retries, "note": b.note, "elements": counts})  # fmt: skip
    first = min((b.submitted_at for b in stored if b.submitted_at), default=None)
    rate, eta = projection(prog.counts, first, datetime.now(timezone.utc))
    return {"name": name, "file": info.file,
            "events": {"total": sum(len(b.facts.events) for b in stored), **prog.counts},
            "batches": batches, "failed_events": prog.failed,
            "throughput_per_hour": round(rate, 2),
            "projected_finish": eta.strftime("%Y-%m-%dT%H:%M:%SZ") if eta else None,
            "backoff_until": info.backoff_until.strftime("%Y-%m-%dT%H:%M:%SZ")
            if info.backoff_until else None, "note": info.note}  # fmt: skip


def runner_of(db: Db, run_id: str) -> Any:
    """Where the run's files are read: its site's runner (local when the site is gone)."""
    from hpcflow.runners.factory import runner_for
    from hpcflow.spec.site import load_site

    run = run_of(db, run_id)
    try:
        return runner_for(load_site(run.site))
    except HpcflowError:  # its site file moved or broke: the files may still be here
        from hpcflow.runners.base import LocalRunner

        return LocalRunner()
