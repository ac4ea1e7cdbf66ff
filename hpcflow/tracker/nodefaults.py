"""A run's node faults, acted on (docs/faults.md): black holes are recorded, told (history,
status, one notice per node) and kept out of the run's pending jobs (scontrol ExcNodeList);
the elements a node's fault took are resubmitted away from it. The decision is
hpcflow/faults.py; the evidence is read by store/nodes.py."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from hpcflow import __version__
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.spec.site import Site
from hpcflow.states import EventKind
from hpcflow.store import nodes
from hpcflow.store import rows as rows_
from hpcflow.store.codec import dbapi
from hpcflow.store.db import Run, session, utcnow
from hpcflow.tracker.events import EventLog
from hpcflow.tracker.notify import queue
from hpcflow.tracker.recovery import Resubmitted, resubmit

log = logging.getLogger(__name__)


def avoid_node_faults(engine: Engine, runner: Runner, site: Site, run_id: str) -> Resubmitted:
    events = EventLog()
    with session(engine) as s:
        conn = dbapi(s)
        d = nodes.decision(conn, run_id)
        if d is None or (not d.holes and not d.resubmit):
            return Resubmitted()
        _, before = nodes.policy(conn, run_id)
        new = rows_.avoid(s, run_id, d.holes, utcnow())
        # every node the run avoids now (the session's change is not flushed: not read back)
        avoided = frozenset(before) | {h.node for h in new}
        for h in new:
            why = (f"node {h.node} looks like a black hole: {h.why()}; this run's pending jobs "
                   "and retries keep off it")  # fmt: skip
            log.warning("%s: %s", run_id, why)
            events.add(s, EventKind.NOTE, run_id=run_id, reason=why)
        pending = nodes.pending_job_ids(conn, run_id) if new else []
        site_file, targets = nodes.run_targets(conn, run_id)
        run = s.get(Run, run_id)
        assert run is not None
        run_dir = run.run_dir
        s.commit()
    events.publish(runner, {run_id: run_dir})
    for h in new:  # once per node and day, whichever run found it
        doc = {"kind": "node_fault", "hpcflow": __version__, "run_id": run_id, "node": h.node,
               "fault": "black_hole", "why": h.why()}  # fmt: skip
        queue(engine, f"node_fault:{site_file}:{h.node}:{utcnow():%Y-%m-%d}", targets, doc)
    if pending:
        SlurmClient.for_site(runner, site).exclude_nodes(pending, avoided)
    total = Resubmitted()
    for away, ids in sorted(d.resubmit.items(), key=lambda kv: sorted(kv[0])):
        why = "node fault: resubmitted" + (f" away from {', '.join(sorted(away))}" if away else "")
        r = resubmit(engine, runner, site, run_id, ids, [], set(), why, exclude=away,
                     node_fault=True)  # fmt: skip
        total.tasks += r.tasks
        total.jobs += r.jobs
    return total
