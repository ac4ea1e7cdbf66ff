"""CLI commands that act on submitted runs: cancel, retry, resolve, clean, history."""

from __future__ import annotations

import click

from hpcflow.cli._common import (
    Ctx,
    complete_run,
    complete_step,
    emit_json,
    json_option,
    refresh_runs,
    runner_for,
    site_for_run,
)


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--step", help="Cancel only this step's jobs.")
@click.pass_obj
def cancel(obj: Ctx, run: str, step: str | None) -> None:
    """scancel RUN's jobs (or one step's) and record them CANCELLED."""
    from hpcflow.tracker.query import cancel as do_cancel
    from hpcflow.tracker.query import get_run

    r = get_run(obj.engine, run)
    ids = do_cancel(obj.engine, runner_for(site_for_run(r)), r.id, step)
    click.echo(f"cancelled {len(ids)} Slurm job(s) of {r.id}" + (f" step {step}" if step else ""))


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--step",
    "steps",
    multiple=True,
    help="Only this step (repeatable); also re-runs "
    "its already-completed elements that depend on what is retried.",
)
@click.option(
    "--index",
    "indices",
    multiple=True,
    type=int,
    help="Only this element index of --step (repeatable).",
)
@click.option(
    "--mem-factor",
    type=click.FloatRange(min=1.0, min_open=True),
    help="Multiply the memory of the resubmitted jobs.",
)
@click.option(
    "--time-factor",
    type=click.FloatRange(min=1.0, min_open=True),
    help="Multiply the time limit of the resubmitted jobs.",
)
@json_option
@click.pass_obj
def retry(
    obj: Ctx,
    run: str,
    steps: tuple[str, ...],
    indices: tuple[int, ...],
    mem_factor: float | None,
    time_factor: float | None,
    as_json: bool,
) -> None:
    """Resubmit RUN's failed, timed-out, out-of-memory, node-failed elements only, and the
    dependents their failure cancelled, with dependencies on the new jobs."""
    from hpcflow.tracker.query import get_run
    from hpcflow.tracker.recovery import retry as do_retry

    r = get_run(obj.engine, run)
    refresh_runs(obj, [r], force=True)
    site = site_for_run(r)
    res = do_retry(
        obj.engine,
        runner_for(site),
        site,
        r.id,
        list(steps),
        list(indices),
        mem_factor,
        time_factor,
    )
    if as_json:
        emit_json(
            {"run_id": r.id, "resubmitted": res.tasks, "by_step": res.by_step, "jobs": res.jobs}
        )
    elif not res.tasks:
        click.echo(f"{r.id}: nothing to retry")
    else:
        steps_txt = ", ".join(f"{k} {v}" for k, v in res.by_step.items())
        click.echo(
            f"{r.id}: resubmitted {res.tasks} element(s) ({steps_txt}) in {len(res.jobs)} job(s)"
        )


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("step", shell_complete=complete_step)
@click.argument("index", type=click.IntRange(min=0))
@click.pass_obj
def resolve(obj: Ctx, run: str, step: str, index: int) -> None:
    """Mark element INDEX of STEP resolved by hand and release the dependents it blocked."""
    from hpcflow.tracker.query import get_run
    from hpcflow.tracker.recovery import resolve as do_resolve

    r = get_run(obj.engine, run)
    refresh_runs(obj, [r], force=True)
    site = site_for_run(r)
    res = do_resolve(obj.engine, runner_for(site), site, r.id, step, index)
    click.echo(f"{r.id}: {step}[{index}] RESOLVED; released {res.tasks} dependent element(s)")


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--force", is_flag=True, help="Even if the run is still active.")
@click.pass_obj
def clean(obj: Ctx, run: str, force: bool) -> None:
    """Remove RUN's directory from scratch (the tracker keeps its record and history)."""
    from hpcflow.tracker.clean import clean as do_clean
    from hpcflow.tracker.query import get_run

    r = get_run(obj.engine, run)
    site = site_for_run(r)
    click.echo(f"removed {do_clean(obj.engine, runner_for(site), site, r, force)}")


@click.command()
@click.argument("run", shell_complete=complete_run)
@json_option
@click.pass_obj
def history(obj: Ctx, run: str, as_json: bool) -> None:
    """The run's event log, oldest first."""
    from hpcflow.tracker.events import event_json
    from hpcflow.tracker.query import history as do_history

    events = do_history(obj.reader, run)
    rows = [event_json(e) for e in events]
    if as_json:
        emit_json({"run_id": run, "events": rows})
        return
    for e in rows:
        where = f"{e['step']}[{e['index']}]" if e["index"] is not None else (e["step"] or "run")
        click.echo(
            f"{e['time']}  {where:<18} {e['old_state'] or '-':>15} -> "
            f"{e['new_state']:<15} {e['slurm_job_id'] or ''} "
            f"{'' if e['exit_code'] is None else 'exit ' + str(e['exit_code'])} "
            f"{e['reason'] or ''}".rstrip()
        )


COMMANDS = [cancel, retry, resolve, clean, history]
