"""`hpcflow logs`: one element's log, read as a regular file inside the run directory."""

from __future__ import annotations

import click

from hpcflow.cli._common import Ctx, complete_run, complete_step, runner_for, site_for_run
from hpcflow.errors import NotFound


@click.command()
@click.argument("run", shell_complete=complete_run)
@click.argument("step", shell_complete=complete_step)
@click.argument("index", type=click.IntRange(min=0), required=False, default=0)
@click.option("--stderr", is_flag=True, help="The element's stderr instead of stdout.")
@click.option("--tail", type=int, default=None, help="Only the last N lines.")
@click.pass_obj
def logs(obj: Ctx, run: str, step: str, index: int, stderr: bool, tail: int | None) -> None:
    """Print the log of one element (INDEX, default 0) of STEP in RUN."""
    from hpcflow.node.jobtool import log_path
    from hpcflow.tracker.query import get_run, run_steps

    r = get_run(obj.reader, run)
    names = run_steps(obj.reader, r.id)
    if step not in names:  # also keeps the path inside the run directory
        from hpcflow.util.names import did_you_mean

        raise NotFound(
            f"run {r.id} has no step {step!r}{did_you_mean(step, names)} "
            f"(steps: {', '.join(names)})"
        )
    path = log_path(r.run_dir, step, index, "err" if stderr else "out")
    runner = runner_for(site_for_run(r))
    if not runner.exists(path):
        raise NotFound(f"no log at {path} (has element {index} of {step!r} started?)")
    if tail is not None:  # only the end of a log is read, whatever its size
        got = runner.read_tails([path], max(tail, 1) * 4096, within=r.run_dir).get(path)
        if got is None:
            runner.read_file(path, 0, within=r.run_dir)  # says why: a FIFO, a device...
        lines = (got or b"").decode(errors="replace").split("\n")
        lines = lines[:-1] if lines[-1] == "" else lines
        text = "".join(ln + "\n" for ln in (lines[-tail:] if tail > 0 else []))
    else:
        text = runner.read_file(path, within=r.run_dir).decode(errors="replace")
    click.echo(text, nl=False)


COMMANDS = [logs]
