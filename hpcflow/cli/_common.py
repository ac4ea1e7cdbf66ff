"""What every command shares: the context object (database, site, runner), the group that
gives each command --db/--site, error handling (one line, or one JSON document with --json;
never a traceback) and its exit codes in --help, the sync before a command reads a run, and
shell completion of run ids and step names. Command modules import this, never `cli`."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from hpcflow.errors import BadUsage, HpcflowError, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("hpcflow")

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


class Ctx:
    def __init__(self, db: str | None, site: str | None, verbose: int):
        self.db_path = db
        self.site_name = site or os.environ.get("HPCFLOW_SITE")
        self.verbose = verbose
        self.allow_network_db = False
        self.may_create = False  # set by the commands that record runs (submit, tick)
        self._engine: Any = None
        self._reader: Any = None

    def db_file(self) -> Any:
        from hpcflow.store.lite import default_db_path

        return Path(self.db_path).expanduser() if self.db_path else default_db_path()

    @property
    def engine(self) -> Any:
        """The tracker for a command that writes: migrated (after a copy aside) when old;
        created only by a command that records runs, else a missing file is an error."""
        if self._engine is None:
            from hpcflow.errors import NotFound
            from hpcflow.store.db import open_db

            path = self.db_file()
            if not self.may_create and not path.exists():
                raise NotFound(
                    f"no tracker database at {path} (nothing submitted with this --db / "
                    "HPCFLOW_DB?)"
                )
            self._engine = open_db(path, allow_network_fs=self.allow_network_db or None)
        return self._engine

    @property
    def reader(self) -> Any:
        """The tracker for a command that only reads: read-only (mode=ro), never created,
        migrated or locked for writing; a 0400 file reads."""
        if self._engine is not None:
            return self._engine
        if self._reader is None:
            from hpcflow.store.db import open_db

            self._reader = open_db(self.db_file(), readonly=True)
        return self._reader

    def site(self, required: bool = True) -> Any:
        from hpcflow.spec.site import load_site

        if not self.site_name:
            if not required:
                return None
            raise BadUsage(
                "no site given: use --site NAME|PATH or set HPCFLOW_SITE "
                "(`hpcflow sites list` shows the known ones)"
            )
        return load_site(self.site_name)


def runner_for(site: Any) -> Any:
    """LocalRunner on the login node; SSHRunner when the site names a login host (one
    connection per hpcflow command, reused by every call)."""
    from hpcflow.runners.factory import runner_for as make

    return make(site)


def emit_json(doc: Any) -> None:
    """One JSON document on stdout; its LazyLists (a run's elements) written as read."""
    from hpcflow.util.jsonstream import dump

    dump(doc, sys.stdout.write)


def site_for_run(run: Any) -> Any:
    from hpcflow.spec.site import load_site

    return load_site(run.site)


def refresh_runs(obj: Ctx, runs: list[Any], force: bool = False) -> None:
    from hpcflow.tracker.sync import sync

    by_site: dict[str, list[Any]] = {}
    for r in runs:
        by_site.setdefault(r.site, []).append(r)
    for runs_ in by_site.values():
        site = site_for_run(runs_[0])
        sync(obj.engine, runner_for(site), site, runs_, force)


COMMON_EXITS = "2 bad usage or invalid input, 3 Slurm or the login host failed, 130 interrupted"
EXIT_CODES = {
    "validate": "0 valid, 2 invalid",
    "render": "0 written, 2 invalid",
    "submit": "0 submitted, 2 invalid, 3 Slurm refused (nothing left half-submitted)",
    "status": "0, 1 no such run",
    "watch": "0 run COMPLETED, 1 run ended otherwise (or no such run), 124 timeout",
    "runs": "0",
    "logs": "0, 1 no such run, step or log",
    "cancel": "0, 1 no such run or step",
    "retry": "0, 1 no such run or nothing to retry",
    "resolve": "0, 1 not a failed element",
    "history": "0, 1 no such run",
    "clean": "0, 1 active run, or not a run directory",
    "list": "0",
    "show": "0, 2 invalid site config",
    "check": "0 ok, 2 problems found",
    "plan": "0, 2 invalid",
    "tick": "0 (also when another tick holds the lock), 1 a changed plan, 2 invalid",
    "schedule": "0, 1 a second entry or a bad schedule",
}


class Group(click.Group):
    """Every command (and sub-group command) also takes --db and --site after its name,
    and lists its exit codes at the end of --help."""

    group_class = type  # sub-groups are of this class too

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Usage errors of a --json command also print one JSON document on stdout."""
        argv = list(kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("hpcflow: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as e:
            e.show()
            if "--json" in argv:
                click.echo(json.dumps({"error": e.format_message(), "exit_code": e.exit_code}))
            sys.exit(e.exit_code)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if "--db" not in names:
            cmd.params.append(
                click.Option(
                    ["--db"],
                    expose_value=False,
                    type=click.Path(dir_okay=False),
                    callback=_set_obj("db_path"),
                    help="Tracker database (as before the command).",
                )
            )
        if "--site" not in names:
            cmd.params.append(
                click.Option(
                    ["--site"],
                    expose_value=False,
                    callback=_set_obj("site_name"),
                    help="Site config name or path (as before the command).",
                )
            )
        if cmd.callback is not None and not getattr(cmd.callback, "_handles_errors", False):
            cmd.callback = handle_errors(cmd.callback)
        if not isinstance(cmd, click.Group) and not cmd.epilog:
            own = EXIT_CODES.get(cmd.name or "", "0")
            cmd.epilog = f"Exit codes: {own}; any command: {COMMON_EXITS}."


def _set_obj(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        obj = ctx.find_object(object)
        if value is not None and obj is not None and hasattr(obj, attr):
            setattr(obj, attr, value)

    return callback


def _json_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.params.get("as_json"))


def fail(message: str, code: int, problems: list[str] | None = None) -> None:
    """Print one error (stderr; with --json also one JSON document on stdout) and exit."""
    click.echo(message, err=True)
    if _json_wanted():
        doc: dict[str, Any] = {"error": message, "exit_code": code}
        if problems is not None:
            doc["problems"] = problems
        click.echo(json.dumps(doc, indent=2))
    sys.exit(code)


def handle_errors(f: F) -> F:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except InvalidInput as e:
            fail(str(e), e.exit_code, [str(p) for p in e.problems])  # FILE:LINE: message
        except HpcflowError as e:
            fail(f"hpcflow: error: {e}", e.exit_code)
        except KeyboardInterrupt:
            fail("hpcflow: interrupted", 130)
        except OSError as e:  # a path the user named cannot be written or read
            where = f" {e.filename}:" if e.filename else ""
            fail(f"hpcflow: error:{where} {e.strerror or e}", 1)
        except click.exceptions.Exit:
            raise
        except Exception as e:  # a bug: one line; the traceback only with -v
            from hpcflow.store.dbfile import db_error, is_db_error

            if is_db_error(e):
                fail(f"hpcflow: error: the tracker database: {db_error(e)}", 1)
            if log.isEnabledFor(logging.DEBUG) or _verbose():
                traceback.print_exc()
            fail(
                f"hpcflow: internal error: {type(e).__name__}: {e} (please report it; "
                "-v shows the traceback)",
                70,
            )

    wrapper._handles_errors = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(object) if ctx else None
    return bool(getattr(obj, "verbose", 0))


# -- shell completion -------------------------------------------------------------------
def _db_from(ctx: click.Context) -> Any:
    obj = ctx.find_object(object)  # while completing, the group's callback has not run
    path = getattr(obj, "db_path", None)
    c: click.Context | None = ctx
    while c is not None and not path:
        path = c.params.get("db")
        c = c.parent
    path = path or os.environ.get("HPCFLOW_DB")
    from hpcflow.store.db import default_db_path, open_db

    path = path or default_db_path()
    if not os.path.exists(path):
        return None
    return open_db(path, readonly=True)


def complete_run(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        engine = _db_from(ctx)
        if engine is None:
            return []
        from hpcflow.store.queries import runs_starting

        rows = runs_starting(engine, incomplete)
        return [CompletionItem(r.id, help=f"{r.workflow} {r.state}") for r in rows]
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_step(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        engine = _db_from(ctx)
        run_arg = ctx.params.get("run")
        if engine is None or not run_arg:
            return []
        from hpcflow.store.queries import get_run, run_steps

        run = get_run(engine, run_arg)
        return [CompletionItem(n) for n in run_steps(engine, run.id) if n.startswith(incomplete)]
    except Exception:
        return []


_set = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a workflow parameter (repeatable).",
)
_max_elements = click.option(
    "--max-elements",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Refuse workflows that expand to more than N elements "
    "(default: the site's limits.max_elements, 2,000,000).",
)

_overrides = click.option(
    "--overrides",
    "overrides_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Per-step resources over the workflow's (e.g. from `efficiency --write-overrides`).",
)


def set_option(f: F) -> F:
    """--set, --max-elements and --overrides: the options of every command that loads a
    workflow."""
    return _set(_max_elements(_overrides(f)))  # type: ignore[return-value]
