"""The login node's side of a dynamic foreach (docs/dynamic.md), run by every sync.

When a run's hpcflow-expand job has ended, the sync expands the run from the producers' files
(launch/expansion.py, the same computation the job makes) and records the outcome:
- expanded: the deferred steps' jobs and elements are recorded; the jobs the expand job already
  submitted (dynamic/submitted.json) are adopted with their ids, any other is PLANNED and
  submitted here, adopted by name first when the expand job may have submitted it before it died;
- skipped (no values, or the producer skipped itself): the deferred steps are SKIPPED;
- failed (a malformed file, too many elements): the expand element is FAILED with the file's
  line, and the deferred steps never run.
An expansion recorded half-way leaves PLANNED jobs, which the next sync's resume submits (by
name): one expansion per run, never two.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.errors import HpcflowError
from hpcflow.facts import dynamic_state
from hpcflow.launch.expander import read_submitted
from hpcflow.launch.expansion import EXPANDED, FAILED, Expansion, expand, read_spec
from hpcflow.launch.rundir import write_run_dir
from hpcflow.node.jobtool import log_path
from hpcflow.runners.base import Runner
from hpcflow.spec.dataflow import may_skip
from hpcflow.spec.dynamic import EXPAND_STEP
from hpcflow.spec.site import Site
from hpcflow.spec.workflow import Workflow
from hpcflow.states import DynamicState, EventKind, JobStatus, TaskState, dynamic_move_allowed
from hpcflow.store import lite
from hpcflow.store import rows as rows_
from hpcflow.store.codec import dbapi
from hpcflow.store.db import Run, session, utcnow
from hpcflow.store.handles import Orm
from hpcflow.store.runstate import derive_run_state
from hpcflow.tracker.events import EventLog, move_run, move_task
from hpcflow.tracker.submit import RunLock, _record_jobs, step_rows, submit_planned, task_rows

log = logging.getLogger(__name__)


def expand_ready(engine: Engine, runner: Runner, site: Site, run_ids: list[str]) -> list[str]:
    """Expand every run whose expand job has ended and whose deferred steps still wait."""
    done = []
    for run_id in run_ids:
        if not _due(engine, run_id):
            continue
        lock = RunLock(engine, run_id)
        if not lock.acquire(wait=False):
            continue  # another process is submitting or expanding it
        try:
            if _due(engine, run_id):
                _expand_run(engine, runner, site, run_id)
                done.append(run_id)
        finally:
            lock.release()
    return done


def _due(engine: Engine, run_id: str) -> bool:
    with engine.connect() as c:
        return lite.expansion_due(dbapi(c), run_id)


def _expand_run(engine: Engine, runner: Runner, site: Site, run_id: str) -> None:
    with session(engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        run_dir = run.run_dir
    spec: dict[str, Any] = {}
    try:
        spec = read_spec(runner, run_dir)
        exp = expand(runner, spec, site)
    except HpcflowError as e:
        exp = Expansion(FAILED, str(e))
    log.info("expand %s: %s: %s", run_id, exp.outcome, exp.reason)
    if exp.outcome != EXPANDED:
        # the expand element's log says it too, as the expand job's own output would
        _note_in_log(runner, run_dir, f"hpcflow expand (login node): {exp.outcome}: {exp.reason}")
        _record_end(engine, runner, run_id, run_dir, exp)
        return
    assert exp.rendered is not None
    write_run_dir(exp.rendered, runner, steps=exp.steps(), files=exp.files())
    known = read_submitted(runner, run_dir)
    _record_expanded(engine, runner, run_id, run_dir, exp, known)
    # the expand job may have submitted a job and died before writing its id down: adopt by
    # name what is not in submitted.json (only then: asking Slurm by name costs seconds)
    adopt = bool(known) or spec.get("expand_in") == "job"  # the mode the expand job ran in
    submit_planned(engine, runner, run_id, site, adopt=adopt)


def _note_in_log(runner: Runner, run_dir: str, text: str) -> None:
    try:
        runner.append_file(log_path(run_dir, EXPAND_STEP, 0), text.rstrip("\n") + "\n")
    except (OSError, HpcflowError) as e:
        log.warning("expand: cannot write to the expand log: %s", e)


def _record_expanded(
    engine: Engine,
    runner: Runner,
    run_id: str,
    run_dir: str,
    exp: Expansion,
    known: dict[str, str],
) -> None:
    rr = exp.rendered
    assert rr is not None
    plan, steps = rr.plan, exp.steps()
    events = EventLog()
    with session(engine) as s:
        rows = {r.name: r for r in rows_.steps_of(s, run_id)}
        for new in step_rows(plan, _skippers(exp), steps):
            row = rows[new.name]
            for k in (
                "total",
                "kind",
                "role",
                "compensation",
                "may_skip",
                "pack",
                "parallel",
                "reads_result",
            ):
                setattr(row, k, getattr(new, k))
            row.policy = new.policy
            row.dynamic = _moved(row.dynamic, DynamicState.EXPANDED, exp.reason)
            s.add(row)
        row_ids = _record_jobs(s, rr, exp.jobs())
        for job in rows_.jobs_of(s, run_id, known):
            job.slurm_job_id, job.status = known[job.name], JobStatus.SUBMITTED.value
            job.submitted_at = utcnow()
            s.add(job)
            events.add(
                s,
                run_id=run_id,
                step=job.step,
                kind=EventKind.SUBMITTED,
                slurm_job_id=job.slurm_job_id,
                reason=f"job {job.job_index} submitted by the expand job"
                + (f" --array={job.array}" if job.array else ""),
            )
        if new_rows := task_rows(plan, row_ids, steps):
            rows_.insert_tasks(s, new_rows)
        events.add(s, EventKind.NOTE, run_id=run_id, reason=f"expanded: {exp.reason}")
        s.commit()
    events.publish(runner, {run_id: run_dir})


def _skippers(exp: Expansion) -> set[str]:
    rr = exp.rendered
    assert rr is not None
    plan = rr.plan
    axes = {n: plan.steps[n].axes for n in plan.order}
    wf = Workflow.model_construct(
        name=plan.workflow, steps=[plan.steps[n].step for n in plan.order]
    )
    return may_skip(wf, plan.order, axes)


def _movable(dynamic: dict[str, Any], new: DynamicState) -> bool:
    return dynamic_move_allowed(dynamic_state(dynamic.get("state")), new)


def _moved(dynamic: dict[str, Any] | None, new: DynamicState, reason: str) -> dict[str, Any]:
    """The stored expansion after a move (states.DYNAMIC_MOVES: it happens once)."""
    d = dict(dynamic or {})
    if not _movable(d, new):
        log.warning("expansion already %s: not moved to %s", d.get("state"), new.value)
        return d
    return {**d, "state": new.value, "reason": reason}


def _record_end(engine: Engine, runner: Runner, run_id: str, run_dir: str, exp: Expansion) -> None:
    """A skipped or failed expansion: the deferred steps say why; a failed one fails the
    expand element (its reason holds the file and line), so the run ends FAILED."""
    events = EventLog()
    with session(engine) as s:
        for row in rows_.steps_of(s, run_id):
            if row.dynamic and _movable(row.dynamic, exp.outcome):
                row.dynamic = _moved(row.dynamic, exp.outcome, exp.reason)
                s.add(row)
        (task,) = rows_.tasks_of(s, run_id, EXPAND_STEP)
        if exp.outcome == FAILED and TaskState(task.state) is TaskState.COMPLETED:
            move_task(s, events, task, TaskState.FAILED, "expand", exp.reason)
        elif exp.outcome == FAILED:
            task.reason = exp.reason
            s.add(task)
        events.add(
            s, EventKind.NOTE, run_id=run_id, reason=f"expansion {exp.outcome}: {exp.reason}"
        )
        run = s.get(Run, run_id)
        assert run is not None
        _settle(s, events, run)
        s.commit()
    events.publish(runner, {run_id: run_dir})


def _settle(s: Orm, events: EventLog, run: Run) -> None:
    move_run(s, events, run, derive_run_state(s, run), "derive")
