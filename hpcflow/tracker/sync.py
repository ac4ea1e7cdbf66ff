"""The one sync loop: resume unfinished submissions -> refresh from Slurm -> expand a dynamic
foreach whose producers ended -> act on node faults -> escalate OOM/timeout elements.
`status`, `watch`, `retry`, `resolve` and `campaign tick` all call it, so none of them can
forget a step (a campaign tick once skipped the escalation)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.runners.base import Runner
from hpcflow.spec.site import Site
from hpcflow.tracker.expansion import expand_ready
from hpcflow.tracker.nodefaults import avoid_node_faults
from hpcflow.tracker.notify import deliver, queue_run_ends
from hpcflow.tracker.recovery import escalate
from hpcflow.tracker.refresh import refresh
from hpcflow.tracker.submit import resume_incomplete


def sync(engine: Engine, runner: Runner, site: Site, runs: list[Any], force: bool = False) -> None:
    """Bring ``runs`` (all of one site) up to date with Slurm. ``force`` ignores the site's
    poll interval (commands that are about to act on what they read)."""
    if not runs:
        return
    ids = [r.id for r in runs]
    resume_incomplete(engine, runner, site, ids)
    lost_after = site.tracker.lost_after
    refresh(engine, runner, runs, site.poll_seconds(), lost_after, force, site.source)
    expand_ready(engine, runner, site, ids)  # dynamic foreach whose producers have ended
    for run_id in ids:
        avoid_node_faults(engine, runner, site, run_id)  # black holes, NODE_FAIL retries
        escalate(engine, runner, site, run_id)
    # runs that ended get their notifications queued once; anything pending is delivered
    # (bounded in time: an endpoint that hangs never holds up the sync for long)
    queue_run_ends(engine, ids)
    deliver(engine)
