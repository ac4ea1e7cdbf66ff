"""`hpcflow serve`: a read-only JSON API (and pages, pages.py) over the tracker database
(docs/web.md). Security: loopback by default; a token (bearer header, or a cookie set by
/login) whenever one is configured, which is always off loopback and with --allow-actions;
actions (cancel, retry) only with --allow-actions and the token, forms with a CSRF field."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse, Response

from hpcflow import __version__
from hpcflow.errors import BadUsage, HpcflowError, NotFound
from hpcflow.util.safeio import read_bounded
from hpcflow.util.urls import is_loopback_host
from hpcflow.web import data
from hpcflow.web.data import MAX_INDEX, MAX_PAGE

COOKIE = "hpcflow_token"
IndexParam = Annotated[int, PathParam(ge=0, le=MAX_INDEX)]


MIN_TOKEN_CHARS = 22  # 22 base64url characters: 132 bits, over the 128 asked for
_TOKEN = re.compile(r"[A-Za-z0-9_~.+/=-]+")


@dataclass
class Config:
    db_path: Path
    token: str | None = None  # required on every request when set
    allow_actions: bool = False
    hosts: frozenset[str] | None = None  # Host headers answered (None: any; a wildcard bind)
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # per server

    def csrf(self) -> str:
        """The field an action form carries: keyed by this server's own random key (and the
        token), so a page of another origin, or an earlier server, cannot know it."""
        return hmac.new(self.csrf_key, (self.token or "").encode(), hashlib.sha256).hexdigest()


def bound_hosts(host: str) -> frozenset[str] | None:
    """The names a request's Host header may carry for a server bound to ``host``: those of
    loopback for a loopback address (a DNS-rebound name is refused), the address itself
    otherwise; None for a wildcard bind, where the token is required anyway."""
    if host in ("0.0.0.0", "::", ""):
        return None
    names = {host.lower(), f"[{host.lower()}]"}
    if is_loopback_host(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    return frozenset(names)


def token_file(db_path: Path) -> Path:
    return db_path.parent / "web-token"


def ensure_token(path: Path) -> str:
    """The token in ``path``, made the first time (0600, 256 random bits). An existing file
    must be a regular file of yours that only you can read, holding at least 128 bits: an
    empty, short or world-readable token is refused, never served with."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tok = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(tok + "\n")
        return tok
    st = path.stat()
    if st.st_uid != os.getuid():
        raise BadUsage(f"token file {path} is not yours (uid {st.st_uid}); refusing to serve")
    if st.st_mode & 0o077:
        raise BadUsage(f"token file {path} is readable by others: run `chmod 600 {path}`")
    try:
        tok = read_bounded(path, 4096).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise BadUsage(f"token file {path}: {e}") from e
    if len(tok) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(tok):
        raise BadUsage(
            f"token file {path} holds no usable token (at least {MIN_TOKEN_CHARS} characters "
            "of base64url, 128 bits): remove it and hpcflow makes one"
        )
    return tok


def create_app(cfg: Config) -> FastAPI:
    app = FastAPI(title="hpcflow", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")  # fmt: skip
    cache = data.RunCache()

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Response:
        if cfg.hosts is not None and _host_of(request) not in cfg.hosts:
            return Response("this server does not answer to that Host (DNS rebinding?)", 421)
        if cfg.token and request.url.path != "/login" and not _authorized(request, cfg):
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": "a token is required (Authorization: Bearer "
                                     "TOKEN, from the server's token file)"}, 401)  # fmt: skip
            return Response("a token is required: open /login?token=TOKEN once", 401)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
            "img-src data:; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(HpcflowError)
    async def errors(request: Request, e: HpcflowError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, 404 if isinstance(e, NotFound) else 400)

    @app.get("/login")
    def login(token: str = "") -> Response:
        if not cfg.token or not hmac.compare_digest(token, cfg.token):
            return Response("wrong or missing token", 401)
        r = RedirectResponse("/", 303)
        r.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return r

    def with_db(fn: Any, *args: Any) -> Any:
        db = data.Db(cfg.db_path)
        try:
            return fn(db, *args)
        finally:
            db.close()

    @app.get("/api/runs")
    def api_runs(state: str | None = None, workflow: str | None = None,
                 namespace: str | None = None, since: str | None = None) -> Any:  # fmt: skip
        return with_db(data.runs, state, workflow, namespace, since)

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        return with_db(data.run_doc, run_id)

    @app.get("/api/runs/{run_id}/tasks")
    def api_tasks(
        run_id: str,
        step: str | None = None,
        state: str | None = None,
        page: int = Query(1, ge=1, le=MAX_PAGE),
        per_page: int = Query(data.PER_PAGE, ge=1, le=data.MAX_PER_PAGE),
    ) -> Any:
        return with_db(data.tasks, run_id, step, state, page, per_page)

    @app.get("/api/runs/{run_id}/logs/{step}/{index}")
    def api_logs(run_id: str, step: str, index: IndexParam, stream: str = "stdout",
                 tail: int = Query(100, ge=1, le=data.MAX_TAIL_LINES)) -> Any:  # fmt: skip
        return with_db(lambda db: data.log_tail(db, data.runner_of(db, run_id), run_id, step, index,
                                                stream, tail))  # fmt: skip

    @app.get("/api/runs/{run_id}/timeline")
    def api_timeline(run_id: str) -> Any:
        return with_db(lambda db: cache.get(db, run_id, "timeline", data.timeline))

    @app.get("/api/runs/{run_id}/metrics")
    def api_metrics(run_id: str) -> Any:
        return with_db(lambda db: cache.get(db, run_id, "metrics", data.metrics))

    @app.get("/api/runs/{run_id}/graph")
    def api_graph(run_id: str) -> Any:
        return with_db(data.graph, run_id)

    @app.get("/api/runs/{run_id}/history")
    def api_history(run_id: str, page: int = Query(1, ge=1, le=MAX_PAGE),
                    per_page: int = Query(500, ge=1, le=5000)) -> Any:  # fmt: skip
        return with_db(data.history, run_id, page, per_page)

    @app.get("/api/campaigns")
    def api_campaigns() -> Any:
        return with_db(data.campaigns)

    @app.get("/api/campaigns/{name}")
    def api_campaign(name: str) -> Any:
        return with_db(data.campaign, name)

    @app.post("/api/runs/{run_id}/cancel")
    async def api_cancel(run_id: str, request: Request) -> Any:
        return await _action(request, cfg, "cancel", run_id)

    @app.post("/api/runs/{run_id}/retry")
    async def api_retry(run_id: str, request: Request) -> Any:
        return await _action(request, cfg, "retry", run_id)

    from hpcflow.web.pages import add_pages

    add_pages(app, cfg, cache, with_db)
    return app


def _host_of(request: Request) -> str:
    host = request.headers.get("host", "").lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _authorized(request: Request, cfg: Config) -> bool:
    assert cfg.token
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    return bool(given) and hmac.compare_digest(given or "", cfg.token)


async def _action(request: Request, cfg: Config, what: str, run_id: str) -> Response:
    """cancel / retry: only with --allow-actions, only with the token (a bearer header, which
    no other site's page can send; or the cookie plus the form's CSRF field)."""
    if not cfg.allow_actions:
        return JSONResponse({"error": "actions are off: start `hpcflow serve --allow-actions`"},
                            403)  # fmt: skip
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        from urllib.parse import parse_qs  # a form of one field: no multipart library

        form = parse_qs((await request.body()).decode(errors="replace")[:4096])
        if not hmac.compare_digest((form.get("csrf") or [""])[0], cfg.csrf()):
            return JSONResponse({"error": "missing or wrong CSRF field"}, 403)
    from hpcflow.web.actions import run_action

    doc = run_action(cfg.db_path, what, run_id)
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(f"/runs/{doc['run_id']}", 303)
    return JSONResponse(doc)
