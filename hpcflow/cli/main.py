"""The ``hpcflow`` command line (contract: docs/cli.md)."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from hpcflow import __version__
from hpcflow.cli._common import (
    Ctx,
    Group,
    complete_run,
    emit_json,
    json_option,
    refresh_runs,
    runner_for,
    set_option,
    site_for_run,
)
from hpcflow.cli.campaign import campaign
from hpcflow.cli.logs import COMMANDS as LOG_COMMANDS
from hpcflow.cli.recovery import COMMANDS as RECOVERY_COMMANDS
from hpcflow.cli.usage import COMMANDS as USAGE_COMMANDS
from hpcflow.cli.web import COMMANDS as WEB_COMMANDS
from hpcflow.errors import BadUsage
from hpcflow.states import RunState

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="HPCFLOW_DB",
    type=click.Path(dir_okay=False),
    help="Tracker database (default $XDG_DATA_HOME/hpcflow/tracker.db).",
)
@click.option("--site", help="Site config name or path (env HPCFLOW_SITE).")
@click.option(
    "--allow-network-db",
    is_flag=True,
    envvar="HPCFLOW_ALLOW_NETWORK_DB",
    help="Use a tracker database on a network filesystem (NFS, Lustre, ...), where SQLite's "
    "locking is unsafe; refused without this.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log every Slurm and SSH command (with its time and exit status) and every tracker "
    "decision, on stderr.",
)
@click.version_option(__version__, prog_name="hpcflow")
@click.pass_context
def main(
    ctx: click.Context, db: str | None, site: str | None, allow_network_db: bool, verbose: int
) -> None:
    """Compile workflow files into Slurm job arrays, submit them and track them to the end."""
    ctx.obj = Ctx(db, site, verbose)
    ctx.obj.allow_network_db = allow_network_db
    _log_to_stderr(verbose)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"hpcflow: {level}{record.getMessage()}"


def _log_to_stderr(verbose: int) -> None:
    """What the library logs, on stderr: its warnings always (a migration, a submission left
    to resume), and with -v its decisions too. Library code logs; it never prints."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("hpcflow")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root.propagate = False


@main.command()
@click.argument("workflow", type=click.Path())
@set_option
@json_option
@click.pass_obj
def validate(
    obj: Ctx,
    workflow: str,
    sets: tuple[str, ...],
    max_elements: int | None,
    overrides_file: str | None,
    as_json: bool,
) -> None:
    """Check WORKFLOW. With --site, also what it can provide and what would be submitted:
    sbatch calls, array tasks, pack sizes, files, and whether that fits your submit limit
    (read from Slurm, cached per site)."""
    from hpcflow.render.scripts import check_templates
    from hpcflow.spec.expand import n_elements
    from hpcflow.spec.validate import load_workflow

    site = obj.site(required=False)
    loaded = load_workflow(
        workflow, list(sets), site, max_elements=max_elements, resources=overrides_file
    )
    check_templates(loaded, site)
    total = sum(n_elements(a) for a in loaded.axes.values())
    report = None
    if site is not None:
        from hpcflow.slurm.planning import plan_report

        report = plan_report(loaded, site, runner_for(site))
    d = loaded.deferral
    dynamic = {"deferred": sorted(d.deferred), "producers": list(d.producers)} if d else None
    if as_json:
        doc = {"file": workflow, "valid": True, "elements": total, "plan": report}
        emit_json({**doc, "dynamic": dynamic} if dynamic else doc)
        return
    click.echo(f"{workflow}: valid ({len(loaded.workflow.steps)} steps, {total} elements)")
    if d:
        later = ", ".join(n for n in loaded.order if n in d.deferred)
        click.echo(
            f"laid out at run time, after {', '.join(d.producers)}: {later} "
            "(their elements are not counted above)"
        )
    if report is not None:
        from hpcflow.cli.plan_text import report_text

        click.echo(report_text(report))


@main.command()
@click.argument("workflow", type=click.Path())
@set_option
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write the scripts and the plan into.",
)
@click.pass_obj
def render(
    obj: Ctx,
    workflow: str,
    sets: tuple[str, ...],
    max_elements: int | None,
    overrides_file: str | None,
    out_dir: str,
) -> None:
    """Write the sbatch scripts and a readable plan for WORKFLOW; submit nothing."""
    from hpcflow.runners.base import LocalRunner
    from hpcflow.slurm.planning import prepare
    from hpcflow.spec.validate import load_workflow

    site = obj.site()
    loaded = load_workflow(
        workflow, list(sets), site, max_elements=max_elements, resources=overrides_file
    )
    from hpcflow.render.outdir import MANIFEST, clear_earlier, manifest_text

    rr = prepare(loaded, site, runner_for(site))
    local = LocalRunner()
    out = Path(out_dir)
    removed = clear_earlier(out)  # before writing: a refused directory gets nothing
    for rel, content in rr.files.items():
        local.makedirs(str((out / rel).parent), 0o750)
        local.write_file(str(out / rel), content, 0o750 if rel.endswith(".sh") else 0o640)
    local.write_file(str(out / MANIFEST), manifest_text(list(rr.files)), 0o640)
    click.echo(rr.files["plan.txt"], nl=False)
    again = f"; the {removed} files of the earlier render removed" if removed else ""
    click.echo(f"wrote {len(rr.files)} files to {out}/ (nothing submitted){again}")


@main.command()
@click.argument("workflow", type=click.Path())
@set_option
@click.option("--name", "label", help="A label recorded with the run.")
@json_option
@click.pass_obj
def submit(
    obj: Ctx,
    workflow: str,
    sets: tuple[str, ...],
    max_elements: int | None,
    overrides_file: str | None,
    label: str | None,
    as_json: bool,
) -> None:
    """Compile, render and submit WORKFLOW; every job with its dependencies, all at once."""
    from hpcflow.spec.validate import load_workflow
    from hpcflow.tracker.submit import submit as do_submit

    site = obj.site()
    loaded = load_workflow(
        workflow, list(sets), site, max_elements=max_elements, resources=overrides_file
    )
    obj.may_create = True  # the first run recorded creates the tracker
    res = do_submit(obj.engine, runner_for(site), loaded, site, label)
    if as_json:
        emit_json({"run_id": res.run_id, "run_dir": res.run_dir, "jobs": res.jobs})
    else:
        click.echo(res.run_id)
        if obj.verbose:
            for j in res.jobs:
                click.echo(
                    f"  {j['step']} job {j['job']}: {j['slurm_job_id']}"
                    + (f" --array={j['array']}" if j["array"] else ""),
                    err=True,
                )


@main.command()
@click.argument("run", required=False, shell_complete=complete_run)
@json_option
@click.option("--tasks", is_flag=True, help="Include every element.")
@click.option("--no-refresh", is_flag=True, help="Read the database only; ask Slurm nothing.")
@click.pass_obj
def status(obj: Ctx, run: str | None, as_json: bool, tasks: bool, no_refresh: bool) -> None:
    """Per-step counts by state for RUN (default: every active run)."""
    from contextlib import ExitStack

    from hpcflow.store.lite import status_lite

    with ExitStack() as stack:  # elements (--tasks) are read while they are printed
        docs = stack.enter_context(status_lite(obj.db_path, run, tasks, not no_refresh))
        if docs is None:
            from hpcflow.tracker.query import active_runs, get_run, status_docs

            db = obj.reader if no_refresh else obj.engine  # --no-refresh only reads
            runs = [get_run(db, run)] if run else active_runs(db)
            if not no_refresh:
                refresh_runs(obj, runs)
            docs = stack.enter_context(status_docs(db, [r.id for r in runs], tasks))
        if as_json:
            emit_json(docs[0] if run else {"runs": docs})
            return
        if not docs:
            click.echo("no active runs (`hpcflow runs` lists all)")
        from hpcflow.cli.view import print_status

        for d in docs:
            print_status(d, tasks)


@main.command()
@click.argument("run", shell_complete=complete_run)
@click.option("--timeout", type=float, default=None, help="Give up after SEC seconds (exit 124).")
@click.option("--interval", type=float, default=None, help="Seconds between refreshes.")
@click.pass_obj
def watch(obj: Ctx, run: str, timeout: float | None, interval: float | None) -> None:
    """Live progress bars per step until RUN ends. Exit 0 COMPLETED, 1 otherwise, 124 timeout."""
    from hpcflow.cli.view import watch as do_watch
    from hpcflow.tracker.query import get_run, status_doc
    from hpcflow.tracker.sync import sync

    r = get_run(obj.engine, run)
    site = site_for_run(r)
    step = interval if interval is not None else max(float(site.poll_seconds()), 2.0)

    def next_doc() -> dict[str, Any]:
        sync(obj.engine, runner_for(site), site, [get_run(obj.engine, r.id)])
        return status_doc(obj.engine, r.id)

    sys.exit(do_watch(next_doc, r.id, step, timeout))


@main.command()
@click.option(
    "--state",
    type=click.Choice([s.value for s in RunState], case_sensitive=False),
    help="Only runs in this state.",
)
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--namespace", help="Only runs in this namespace.")
@click.option("--since", help="Only runs submitted since DATE (YYYY-MM-DD[THH:MM]).")
@json_option
@click.pass_obj
def runs(
    obj: Ctx,
    state: str | None,
    workflow: str | None,
    namespace: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    from hpcflow.tracker.query import list_runs

    since_dt = None
    if since:
        try:
            since_dt = datetime.fromisoformat(since)
        except ValueError as e:
            raise BadUsage(f"--since {since!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from e
    rows = list_runs(obj.reader, state.upper() if state else None, workflow, namespace, since_dt)
    if as_json:
        emit_json(
            {
                "runs": [
                    {
                        "run_id": r.id,
                        "workflow": r.workflow,
                        "version": r.version,
                        "namespace": r.namespace,
                        "label": r.label,
                        "state": r.state,
                        "submitted_at": r.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "run_dir": r.run_dir,
                    }
                    for r in rows
                ]
            }
        )
        return
    from hpcflow.cli.view import print_runs

    print_runs(rows)


@main.group()
def sites() -> None:
    """Site configs: list, show, check."""


@sites.command("list")
def sites_list() -> None:
    """The site configs hpcflow can find."""
    from hpcflow.spec.site import list_sites

    for name, path in list_sites().items():
        click.echo(f"{name}\t{path}")


@sites.command("show")
@click.argument("name")
@json_option
def sites_show(name: str, as_json: bool) -> None:
    """Print a site config as hpcflow reads it (defaults filled in)."""
    from hpcflow.spec.site import load_site

    site = load_site(name)
    if as_json:
        emit_json({"source": site.source, "site": site.model_dump()})
        return
    click.echo(f"# {site.source}")
    emit_json(site.model_dump())


@sites.command("init")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def sites_init(name: str, output: str | None, force: bool) -> None:
    """Write a site config NAME from the live cluster (partitions, GPUs, time limits,
    MaxArraySize, your account and submit limits) for you to edit."""
    import getpass
    import re

    from hpcflow.runners.base import LocalRunner
    from hpcflow.slurm.siteinit import init_site

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,62}", name):
        raise BadUsage(f"site name {name!r}: use letters, digits, _ and - (a letter first)")
    if output and Path(output).exists() and not force:
        raise BadUsage(f"{output} exists; use --force to overwrite it")
    text = init_site(LocalRunner(), name, getpass.getuser())
    if output:
        LocalRunner().write_file(output, text, 0o640)
        click.echo(f"wrote {output}; edit it, then: hpcflow sites check {output}")
    else:
        click.echo(text, nl=False)


@sites.command("check")
@click.argument("name")
@click.option("--offline", is_flag=True, help="Check the file only; ask no cluster.")
def sites_check(name: str, offline: bool) -> None:
    """Validate a site config and compare it with the live cluster when Slurm is reachable."""
    from hpcflow.slurm.sitecheck import check_live, check_python
    from hpcflow.spec.site import load_site

    site = load_site(name)
    if offline:
        click.echo(f"{site.source}: ok (file only)")
        return
    runner = runner_for(site)
    problems = check_live(site, runner)
    version, problem = check_python(site, runner)
    if version:
        click.echo(f"python: {site.python} {version}")
    if problem:
        problems.append(problem)
    for p in problems:
        click.echo(p, err=True)
    if problems:
        sys.exit(2)
    click.echo(f"{site.source}: ok")


# composed here: the command modules know nothing of `main`
main.add_command(campaign)
for _cmd in [*LOG_COMMANDS, *RECOVERY_COMMANDS, *USAGE_COMMANDS, *WEB_COMMANDS]:
    main.add_command(_cmd)

if __name__ == "__main__":
    main()
