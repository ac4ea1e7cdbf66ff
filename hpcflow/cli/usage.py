"""CLI commands about what a run used and did: efficiency (docs/efficiency.md) and report
(docs/report.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from hpcflow.cli._common import (
    Ctx,
    complete_run,
    emit_json,
    json_option,
    refresh_runs,
    runner_for,
    site_for_run,
)


def refreshed(obj: Ctx, run_ref: str) -> Any:
    """The run, refreshed if it is still active or some of its usage has not been asked of
    sacct yet (once per finished chunk): only then is the tracker opened for writing. A
    read-only tracker or Slurm not answering is said, and the stored data used."""
    from hpcflow.errors import HpcflowError
    from hpcflow.slurm.client import SlurmClient
    from hpcflow.store.db import session
    from hpcflow.tracker.query import get_run, usage_pending

    run = get_run(obj.reader, run_ref)
    if not usage_pending(obj.reader, run):
        return run
    if not os.access(obj.db_file(), os.W_OK):
        click.echo("hpcflow: not refreshed: the tracker is read-only", err=True)
        return run
    from hpcflow.tracker.usage import collect_usage

    try:
        refresh_runs(obj, [run])
        with session(obj.engine) as s:
            collect_usage(s.connection(), SlurmClient(runner_for(site_for_run(run))), [run.id])
            s.commit()
    except HpcflowError as e:  # what is stored is still worth showing
        click.echo(f"hpcflow: not refreshed: {e}", err=True)
    return run


def efficiency_doc(obj: Ctx, run_ref: str, step: str | None) -> dict[str, Any]:
    """Per-step summaries of what the run's finished elements used."""
    from hpcflow.errors import NotFound
    from hpcflow.store.db import session
    from hpcflow.tracker.efficiency import summarize_step
    from hpcflow.tracker.query import get_run, run_steps
    from hpcflow.tracker.usage import element_uses

    run = get_run(obj.reader, run_ref)
    if step is not None and step not in run_steps(obj.reader, run.id):
        raise NotFound(f"run {run.id} has no step {step!r}")
    run = refreshed(obj, run.id)
    with session(obj.reader) as s:
        uses = element_uses(s.connection(), run.id, step)
    return {"run_id": run.id, "steps": {name: summarize_step(st) for name, st in uses.items()}}


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--step", help="Only this step.")
@json_option
@click.option(
    "--write-overrides",
    "overrides_out",
    type=click.Path(dir_okay=False),
    help="Write the suggestions as a YAML file that `submit --overrides FILE` applies.",
)
@click.pass_obj
def efficiency(
    obj: Ctx, run: str, step: str | None, as_json: bool, overrides_out: str | None
) -> None:
    """Used against requested, per step of RUN: CPU efficiency, memory and elapsed time
    (p50/p95/max), core-hours, and what to request next time."""
    doc = efficiency_doc(obj, run, step)
    if overrides_out:
        from hpcflow.spec.overrides import overrides_yaml

        text = overrides_yaml(doc)
        Path(overrides_out).write_text(text)
        Path(overrides_out).chmod(0o640)
    if as_json:
        emit_json(doc)
        return
    from hpcflow.cli.view import print_efficiency

    print_efficiency(doc)
    if overrides_out:
        click.echo(f"wrote {overrides_out}: submit --overrides {overrides_out} applies it")


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The HTML file to write.",
)
@click.pass_obj
def report(obj: Ctx, run: str, out: str) -> None:
    """Write one self-contained HTML file about RUN: summary, step graph, timeline, states
    over time, efficiency, failures with their stderr, history. It loads nothing from the
    network."""
    from hpcflow.report.page import build, render

    r = refreshed(obj, run)
    html = render(build(obj.reader, runner_for(site_for_run(r)), r.id))
    path = Path(out)
    path.write_text(html, encoding="utf-8")
    path.chmod(0o640)
    click.echo(f"wrote {out} ({len(html.encode()) / 1024:.0f} KiB)")


COMMANDS = [efficiency, report]
