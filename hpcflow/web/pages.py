"""The dashboard's pages, rendered on the server (Jinja2, autoescaped: everything a user
wrote is escaped); one small script follows a log. The SVG comes from the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from hpcflow import __version__
from hpcflow.report import svg
from hpcflow.report.data import failure_groups
from hpcflow.states import RunState, TaskState
from hpcflow.store.lite import dynamic_label
from hpcflow.web import data
from hpcflow.web.data import MAX_INDEX, MAX_PAGE

IndexParam = Annotated[int, PathParam(ge=0, le=MAX_INDEX)]

HERE = Path(__file__).resolve().parent
ORDER = [s.value for s in TaskState]


def bar(states: dict[str, int]) -> Markup:
    """A bar of a step's (or run's) elements by state, widths in percent."""
    total = sum(states.values()) or 1
    parts = "".join(
        f'<span style="width:{100 * n / total:.2f}%;background:{svg.color(s)}" '
        f'title="{svg.esc(s)} {n}"></span>'
        for s, n in sorted(
            states.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99
        )  # fmt: skip
        if n
    )
    return Markup(f'<div class="bar">{parts}</div>')  # noqa: S704 - built from escaped parts


def add_pages(app: FastAPI, cfg: Any, cache: data.RunCache, with_db: Any) -> None:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))  # fmt: skip
    env.globals.update(version=__version__, bar=bar, dynamic_label=dynamic_label)

    def page(name: str, **kw: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**kw))

    @app.get("/static/follow.js")
    def follow_js() -> FileResponse:
        return FileResponse(HERE / "static" / "follow.js", media_type="text/javascript")

    @app.get("/", response_class=HTMLResponse)
    def runs_page(state: str | None = None, workflow: str | None = None,
                  namespace: str | None = None, since: str | None = None) -> Any:  # fmt: skip
        doc = with_db(data.runs, state or None, workflow or None, namespace or None,
                      since or None)  # fmt: skip
        f = {"state": state, "workflow": workflow, "namespace": namespace, "since": since}
        return page("runs.html", runs=doc["runs"], f=f, run_states=[s.value for s in RunState])

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str) -> Any:
        def make(db: data.Db) -> HTMLResponse:
            d = data.run_doc(db, run_id)
            tl = cache.get(db, run_id, "timeline", data.timeline)
            metrics = cache.get(db, run_id, "metrics", data.metrics)
            from hpcflow.report.data import Lane, step_edges

            lanes = [Lane(ln["step"], [tuple(b) for b in ln["bars"]], ln["bins"],
                          ln["elements"]) for ln in tl["lanes"]]  # fmt: skip
            present = sorted({k for st in d["steps"].values() for k in st["states"]},
                             key=lambda s: ORDER.index(s) if s in ORDER else 99)  # fmt: skip
            return page("run.html", d=d, states=present, metrics=metrics,
                        dag=Markup(svg.dag(d["steps"], step_edges(db, d["run_id"]))),  # noqa: S704
                        timeline=Markup(svg.timeline(lanes, tl["t0"], tl["t1"])),  # noqa: S704
                        stacked=Markup(svg.stacked(tl["states_over_time"], tl["t0"], tl["t1"])),  # noqa: S704,E501
                        failures=failure_groups(db, d["run_id"])[:50],
                        actions=cfg.allow_actions, csrf=cfg.csrf())  # fmt: skip

        return with_db(make)

    @app.get("/runs/{run_id}/tasks", response_class=HTMLResponse)
    def tasks_page(run_id: str, step: str | None = None, state: str | None = None,
                   page_: int = Query(1, ge=1, le=MAX_PAGE, alias="page")) -> Any:  # fmt: skip
        def make(db: data.Db) -> HTMLResponse:
            p = data.tasks(db, run_id, step or None, state or None, page_)
            steps = list(data.run_doc(db, run_id)["steps"])

            def q(n: int) -> str:
                return urlencode({k: v for k, v in (("step", step), ("state", state),
                                                    ("page", n)) if v})  # fmt: skip

            return page("tasks.html", p=p, steps=steps, task_states=ORDER, q=q)

        return with_db(make)

    @app.get("/runs/{run_id}/logs/{step}/{index}", response_class=HTMLResponse)
    def logs_page(run_id: str, step: str, index: IndexParam, stream: str = "stdout",
                  tail: int = Query(200, ge=1, le=data.MAX_TAIL_LINES), follow: int = 0,
                  request: Request = None) -> Any:  # type: ignore[assignment]  # fmt: skip
        def make(db: data.Db) -> HTMLResponse:
            lg = data.log_tail(db, data.runner_of(db, run_id), run_id, step, index, stream, tail)
            return page("logs.html", l=lg, tail=tail, follow=bool(follow))

        return with_db(make)

    @app.get("/runs/{run_id}/history", response_class=HTMLResponse)
    def history_page(run_id: str, page_: int = Query(1, ge=1, le=MAX_PAGE, alias="page")) -> Any:
        return page("history.html", h=with_db(data.history, run_id, page_, 500))

    @app.get("/campaigns", response_class=HTMLResponse)
    def campaigns_page() -> Any:
        return page("campaigns.html", campaigns=with_db(data.campaigns)["campaigns"])
