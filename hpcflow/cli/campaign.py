"""`hpcflow campaign validate|plan|tick|status|schedule` (docs/campaigns.md)."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any

import click

from hpcflow.cli._common import Ctx, Group, emit_json, json_option, runner_for


@click.group(cls=Group)
def campaign() -> None:
    """Feed a workflow batch after batch of events, from cron."""


def _load(obj: Ctx, file: str) -> Any:
    from hpcflow.campaign.spec import load_campaign

    return load_campaign(file, obj.site_name)


@campaign.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def validate(obj: Ctx, file: str) -> None:
    """Check the campaign and the workflow it names (with a real batch)."""
    lc = _load(obj, file)
    click.echo(
        f"{file}: valid ({len(lc.events)} events, {len(lc.batches())} batches of up to "
        f"{lc.batch_size}, {lc.jobs_per_batch} Slurm jobs per batch)"
    )
    if lc.note:
        click.echo(f"note: {lc.note}", err=True)


@campaign.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.pass_obj
def plan(obj: Ctx, file: str, as_json: bool) -> None:
    """List the batches the campaign would submit."""
    lc = _load(obj, file)
    rows = [
        {"index": i, "events": len(b), "first": b[0], "last": b[-1]}
        for i, b in enumerate(lc.batches())
    ]
    doc = {
        "name": lc.name,
        "events": len(lc.events),
        "batch_size": lc.batch_size,
        "jobs_per_batch": lc.jobs_per_batch,
        "max_in_flight": lc.campaign.max_in_flight,
        "note": lc.note,
        "batches": rows,
    }
    if as_json:
        emit_json(doc)
        return
    click.echo(
        f"campaign {lc.name}: {len(lc.events)} events in {len(rows)} batches of up to "
        f"{lc.batch_size} ({lc.jobs_per_batch} Slurm jobs each), {lc.campaign.max_in_flight} "
        "in flight at most"
    )
    if lc.note:
        click.echo(f"note: {lc.note}")
    for r in rows:
        click.echo(f"  batch {r['index']}: {r['events']} events, {r['first']} .. {r['last']}")


@campaign.command("tick")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.option(
    "--log",
    "log_file",
    type=click.Path(dir_okay=False),
    help="Append this tick's output here; the file is rotated at 1 MiB, 3 kept (cron).",
)
@click.pass_obj
def tick(obj: Ctx, file: str, as_json: bool, log_file: str | None) -> None:
    """One idempotent step: refresh, retry failed batches per policy, submit the next ones."""
    from hpcflow.campaign.tick import tick as do_tick

    if log_file:
        from hpcflow.util.logfile import redirect_to_bounded_log

        redirect_to_bounded_log(log_file, f"campaign tick {file}")

    lc = _load(obj, file)
    obj.may_create = True  # the first tick records the campaign
    out = do_tick(obj.engine, runner_for(lc.site), lc)
    if as_json:
        emit_json(out)
        return
    if "skipped" in out:
        click.echo(f"campaign {lc.name}: {out['skipped']}; nothing done")
        return
    for s in out["submitted"]:
        click.echo(f"submitted batch {s['batch']} ({s['events']} events): run {s['run_id']}")
    for r in out["retried"]:
        click.echo(f"retried batch {r['batch']}: run {r['run_id']}")
    for n in out["notes"]:
        click.echo(n)
    click.echo(
        f"campaign {lc.name}: {out['in_flight']} batch(es) in flight, {out['remaining']} waiting"
    )


@campaign.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
@click.option("--failed-csv", type=click.Path(dir_okay=False), help="Write the failed events here.")
@click.pass_obj
def status(obj: Ctx, file: str, as_json: bool, failed_csv: str | None) -> None:
    """Events done / failed / running / pending, batches, throughput, projected finish."""
    from hpcflow.campaign.tick import status as do_status

    lc = _load(obj, file)
    doc = do_status(obj.reader, lc)
    if failed_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["event", "batch", "run_id", "steps", "states"])
        w.writeheader()
        w.writerows(  # one cell per column: the steps and states joined by ";"
            {**f, "steps": ";".join(f["steps"]), "states": ";".join(f["states"])}
            for f in doc["failed_events"]
        )
        Path(failed_csv).write_text(buf.getvalue(), encoding="utf-8")
    if as_json:
        emit_json(doc)
        return
    e = doc["events"]
    click.echo(
        f"campaign {doc['name']}: {e['done']}/{e['total']} events done, {e['failed']} failed, "
        f"{e['running']} running, {e['pending']} pending"
        + ("  (finished)" if doc["finished"] else "")
    )
    if doc["throughput_per_hour"]:
        click.echo(
            f"throughput {doc['throughput_per_hour']} events/hour"
            + (f", projected finish {doc['projected_finish']}" if doc["projected_finish"] else "")
        )
    if doc["backoff_until"]:
        click.echo(f"Slurm refused a batch: next submission after {doc['backoff_until']}")
    for b in doc["batches"]:
        note = f"  {b['note']}" if b.get("note") else ""
        if b.get("right_size"):
            sizes = "; ".join(
                f"{step} " + " ".join(f"{k} {v}" for k, v in r.items())
                for step, r in b["right_size"].items()
            )
            note += f"  right_size: {sizes}"
        run = b["run_id"] or ""
        click.echo(f"  batch {b['index']}: {b['state']:<10} {b['events']} events  {run}{note}")
    if doc["failed_events"]:
        shown = ", ".join(str(f["event"]) for f in doc["failed_events"][:20])
        more = len(doc["failed_events"]) - 20
        click.echo(f"failed events: {shown}" + (f" (+{more} more)" if more > 0 else ""))
        if failed_csv:
            click.echo(
                f"written to {failed_csv} (use it as `events: {{file: ..., column: event}}`)"
            )


def hpcflow_command() -> list[str]:
    """The absolute hpcflow that is running now: its console script, else python -m."""
    for candidate in (Path(sys.argv[0]), Path(sys.executable).parent / "hpcflow"):
        if candidate.name == "hpcflow" and candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate.resolve())]
    return [sys.executable, "-m", "hpcflow"]


@campaign.command("schedule")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--cron", "expr", help="Crontab schedule, e.g. '*/15 * * * *'.")
@click.option("--remove", is_flag=True, help="Remove the campaign's crontab line.")
@click.option("--show", is_flag=True, help="Show the campaign's crontab line.")
@click.pass_obj
def schedule(obj: Ctx, file: str, expr: str | None, remove: bool, show: bool) -> None:
    """Install (--cron), show (--show) or remove (--remove) the crontab line running `tick`."""
    from hpcflow.campaign.schedule import add_entry, cron_env, cron_line, entries, read_crontab
    from hpcflow.runners.base import LocalRunner

    lc = _load(obj, file)
    runner = LocalRunner()  # cron runs where hpcflow runs (a workstation reaches over SSH)
    text = read_crontab(runner)
    if remove:
        _unschedule(runner, text, lc.name)
        return
    if show or not expr:
        found = entries(text, lc.name)
        click.echo("\n".join(found) if found else f"no crontab entry for campaign {lc.name}")
        return
    db = str(obj.db_file().resolve())
    log_dir = Path(db).parent / "logs"  # the first tick creates the database beside it
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # cron has no HPCFLOW_SITE, HPCFLOW_DB or login PATH: the line names everything itself
    argv = [*hpcflow_command(), "--db", db]
    if not lc.campaign.site:
        argv += ["--site", str(Path(lc.site.source).resolve())]
    argv += ["campaign", "tick", str(Path(file).resolve())]
    argv += ["--log", str(log_dir / f"campaign-{lc.name}.log")]
    line = cron_line(expr, argv, cron_env(dict(os.environ), _tool_dirs()), lc.name)
    from hpcflow.campaign.schedule import write_crontab

    write_crontab(runner, add_entry(text, line, lc.name))
    click.echo(line)


@campaign.command("unschedule")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def unschedule(obj: Ctx, file: str) -> None:
    """Remove the campaign's crontab line (as `schedule --remove`)."""
    from hpcflow.campaign.schedule import read_crontab
    from hpcflow.runners.base import LocalRunner

    lc = _load(obj, file)
    runner = LocalRunner()
    _unschedule(runner, read_crontab(runner), lc.name)


def _unschedule(runner: Any, text: str, name: str) -> None:
    from hpcflow.campaign.schedule import entries, remove_entry, write_crontab

    if not entries(text, name):
        click.echo(f"no crontab entry for campaign {name}")
        return
    write_crontab(runner, remove_entry(text, name))
    click.echo(f"removed the crontab entry for campaign {name}")


def _tool_dirs() -> list[str]:
    import shutil

    from hpcflow.slurm.commands import SLURM_TOOLS

    found = (shutil.which(t) for t in SLURM_TOOLS)
    return [str(Path(p).parent) for p in found if p]
