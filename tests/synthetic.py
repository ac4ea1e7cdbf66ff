"""A finished run of any size in a real tracker database, without Slurm: recorded by
hpcflow's own submit path (record_run), then given the states, times, records, usage and
history a run that ran would have. For reports and benchmarks at 100,000 elements."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .helpers import REPO

FFRD = """\
name: synth
params: {n: 10}
steps:
  - {name: sample, run: 'true'}
  - name: hms
    after: [sample]
    foreach: {event: {range: [1, "{{ params.n }}"]}}
    resources: {mem: 2G, time: 1h}
    run: 'true'
  - name: ras
    after: {hms: each}
    foreach:
      event: {range: [1, "{{ params.n }}"]}
      unit: {values: [A, B]}
    resources: {mem: 4G, time: 2h, cpus: 2}
    run: 'true'
  - {name: summarize, after: {ras: any}, run: 'true'}
"""


def finished_run(d: Path, events: int, failed_every: int = 500) -> tuple[Path, str]:
    """A run of 3 x ``events`` + 2 elements in ``d``/t.db, its elements ended over about an
    hour; every ``failed_every``-th RAS element FAILED (exit 3) and the next OUT_OF_MEMORY.
    Returns (database, run id)."""
    from hpcflow.compile.plan import compile_plan
    from hpcflow.render.scripts import render_run
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow
    from hpcflow.store.db import open_db
    from hpcflow.tracker.submit import record_run

    site = load_site(str(REPO / "site_configs/lab.yaml"))
    wf = d / "wf.yaml"
    wf.write_text(FFRD)
    loaded = load_workflow(wf, [f"n={events}"], site)
    plan = compile_plan(loaded, site, 100_001, "synth-20261206-0000-aaaa", str(d / "run"))
    db = d / "t.db"
    engine = open_db(db)
    record_run(engine, render_run(plan, loaded, site), loaded, site, None)
    engine.dispose()
    rnd = random.Random(7)
    t0 = datetime(2026, 12, 6, 0, 0, tzinfo=timezone.utc)
    with sqlite3.connect(db) as c:
        c.execute(
            "UPDATE job SET slurm_job_id = CAST(1000 + id AS TEXT), status = 'SUBMITTED', "
            "usage_done = 1, submitted_at = ?",
            (t0.strftime("%Y-%m-%d %H:%M:%S.%f"),),
        )
        rows = c.execute('SELECT id, step, "index", job_id, task_id FROM task').fetchall()
        updates, events_ = [], []
        for tid, step, index, job, task in rows:
            display = f"{1000 + job}" + (f"_{task}" if task is not None else "")
            start = t0 + timedelta(seconds=rnd.uniform(0, 3000))
            wall = rnd.uniform(60, 600)
            end = start + timedelta(seconds=wall)
            state, code = "COMPLETED", 0
            if step == "ras" and index % failed_every == 0:
                state, code = "FAILED", 3
            elif step == "ras" and index % failed_every == 1:
                state, code = "OUT_OF_MEMORY", 137
            local = (
                start.astimezone().replace(tzinfo=None).isoformat(timespec="seconds"),
                end.astimezone().replace(tzinfo=None).isoformat(timespec="seconds"),
            )
            peak = rnd.uniform(300, 1500)
            result = {
                "index": index,
                "state": state,
                "exit_code": code,
                "attempts": 1,
                "start": int(start.timestamp()),
                "end": int(end.timestamp()),
                "wall_ms": int(wall * 1000),
                "cpu_ms": int(wall * 800),
                "outputs": False,
            }
            usage = {
                "alloc_cpus": 1,
                "elapsed_s": int(wall),
                "timelimit_s": 3600,
                "total_cpu_s": wall * 0.8,
                "max_rss_mb": int(peak),
                "req_mem_mb": 2048,
                "gpus": 0,
            }
            updates.append(
                (state, code, local[0], local[1], "vm", json.dumps(result), json.dumps(usage), tid)
            )
            stamp = "%Y-%m-%d %H:%M:%S.%f"
            events_.append(
                (
                    "synth-20261206-0000-aaaa",
                    step,
                    index,
                    "PENDING",
                    "RUNNING",
                    (start + timedelta(seconds=30)).strftime(stamp),
                    display,
                )
            )
            events_.append(
                (
                    "synth-20261206-0000-aaaa",
                    step,
                    index,
                    "RUNNING",
                    state,
                    (end + timedelta(seconds=30)).strftime(stamp),
                    display,
                )
            )
        c.executemany(
            'UPDATE task SET state = ?, exit_code = ?, start = ?, "end" = ?, node = ?, '
            "result = ?, usage = ?, attempts = 1 WHERE id = ?",
            updates,
        )
        c.executemany(
            'INSERT INTO event (run_id, step, "index", old_state, new_state, time, '
            "slurm_job_id, kind) VALUES (?, ?, ?, ?, ?, ?, ?, 'TASK')",
            events_,
        )
        c.execute(
            "UPDATE run SET state = 'FAILED', submitted_at = ?, finished_at = ?",
            (
                t0.strftime("%Y-%m-%d %H:%M:%S.%f"),
                (t0 + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f"),
            ),
        )
    return db, "synth-20261206-0000-aaaa"
