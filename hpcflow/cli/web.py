"""`hpcflow serve`: the dashboard and its API (docs/web.md), from the optional web extra."""

from __future__ import annotations

from pathlib import Path

import click

from hpcflow.cli._common import Ctx
from hpcflow.errors import BadUsage
from hpcflow.util.urls import is_loopback_host


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--allow-actions", is_flag=True, help="Allow cancel and retry (token required).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Where the access token is kept (0600; made if missing). Default: web-token next "
    "to the database. Required off loopback and with --allow-actions.",
)
@click.option("--require-token", is_flag=True, help="Ask for the token on loopback too.")
@click.option("--no-sync", is_flag=True, help="Do not refresh active runs in the background.")
@click.pass_obj
def serve(
    obj: Ctx,
    host: str,
    port: int,
    allow_actions: bool,
    token_file: str | None,
    require_token: bool,
    no_sync: bool,
) -> None:
    """Serve the dashboard and a read-only JSON API over the tracker, on 127.0.0.1 unless
    told otherwise; reach it from a workstation with `ssh -L 8765:127.0.0.1:8765 login`."""
    try:
        import uvicorn
    except ImportError as e:
        raise BadUsage("hpcflow serve needs the web extra: pip install 'hpcflow-slurm[web]'") from e
    import threading

    from hpcflow.store.lite import default_db_path
    from hpcflow.web.app import Config, bound_hosts, create_app, ensure_token
    from hpcflow.web.app import token_file as default_token
    from hpcflow.web.background import start

    db = Path(obj.db_path).expanduser() if obj.db_path else default_db_path()
    obj.engine  # noqa: B018 - migrate the database (after a copy) before serving it
    path = Path(token_file).expanduser() if token_file else default_token(db)
    token = None
    if require_token or allow_actions or not is_loopback_host(host):
        token = ensure_token(path)
    app = create_app(Config(db, token, allow_actions, bound_hosts(host)))
    stop = threading.Event()
    if not no_sync:
        start(db, stop)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    click.echo(f"hpcflow serve: {where} (database {db})", err=True)
    if token:
        click.echo(f"token: in {path} (send 'Authorization: Bearer TOKEN', or open "
                   f"{where}login?token=TOKEN once)", err=True)  # fmt: skip
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        stop.set()


COMMANDS = [serve]
