"""`hpcflow clean RUN`: remove a finished run's scratch directory, and nothing else."""

from __future__ import annotations

from pathlib import PurePosixPath

from sqlalchemy.engine import Engine

from hpcflow.errors import HpcflowError
from hpcflow.runners.base import Runner
from hpcflow.spec.site import Site
from hpcflow.states import EventKind
from hpcflow.store.db import Run, session
from hpcflow.tracker.events import EventLog
from hpcflow.tracker.refresh import ACTIVE


def run_dir_is_safe(run: Run, site: Site) -> bool:
    """The directory is exactly <scratch>/hpcflow/<workflow>/<run_id>, with no '..' in it."""
    expected = PurePosixPath(site.scratch_root()) / "hpcflow" / run.workflow / run.id
    actual = PurePosixPath(run.run_dir)
    return bool(run.id) and "/" not in run.id and ".." not in actual.parts and actual == expected


def clean(engine: Engine, runner: Runner, site: Site, run: Run, force: bool = False) -> str:
    if run.state in ACTIVE and not force:
        raise HpcflowError(f"run {run.id} is {run.state}; cancel it first, or --force")
    if not run_dir_is_safe(run, site):
        raise HpcflowError(
            f"run {run.id}: {run.run_dir} is not this run's directory under the "
            f"site's scratch ({site.scratch_root()}/hpcflow/...); not removing it"
        )
    if runner.exists(run.run_dir):
        runner.remove_tree(run.run_dir)
    log = EventLog()
    with session(engine) as s:
        log.add(s, EventKind.CLEANED, run_id=run.id, reason=f"removed {run.run_dir}")
        s.commit()
    return run.run_dir
