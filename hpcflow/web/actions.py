"""The two things `hpcflow serve --allow-actions` can do to a run: cancel it, retry its failed
elements (the same code as `hpcflow cancel RUN` and `hpcflow retry RUN`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcflow.runners.factory import runner_for
from hpcflow.spec.site import load_site
from hpcflow.store.db import open_db
from hpcflow.tracker.query import cancel, get_run
from hpcflow.tracker.recovery import retry


def run_action(db_path: Path, what: str, run_id: str) -> dict[str, Any]:
    engine = open_db(db_path)
    try:
        run = get_run(engine, run_id)
        site = load_site(run.site)
        runner = runner_for(site)
        if what == "cancel":
            ids = cancel(engine, runner, run.id)
            return {"run_id": run.id, "action": "cancel", "cancelled_jobs": ids}
        res = retry(engine, runner, site, run.id, [], [], None, None)
        return {"run_id": run.id, "action": "retry", "resubmitted": res.tasks,
                "jobs": res.jobs}  # fmt: skip
    finally:
        engine.dispose()
