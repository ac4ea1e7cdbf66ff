"""Which workflow fields are templates, and the ones rendered at load time (images).

Templates live in ``run``, ``env`` values, ``foreach`` sources, ``ffrd.event`` and container
``image`` references; every other string is used as written, so ``{{`` in one of them is a
mistake that would otherwise reach Slurm or the container runtime literally.
"""

from __future__ import annotations

from typing import Any

import jinja2

from hpcflow.errors import Problem
from hpcflow.spec.workflow import Container, Workflow
from hpcflow.util.templating import namespace, render_native
from hpcflow.util.yamlsafe import Located

# Where the workflow file holds templates; every other string is taken as written.
TEMPLATE_FIELDS = (
    ("steps", "*", "run"),
    ("steps", "*", "env", "*"),
    ("defaults", "env", "*"),
    ("steps", "*", "foreach", "*", "range", "*"),
    ("steps", "*", "foreach", "*", "values"),
    ("steps", "*", "foreach", "*", "values", "*"),
    ("steps", "*", "ffrd", "event"),
    ("containers", "*", "image"),
    ("steps", "*", "container", "image"),
)
FREE_TEXT = (("description",), ("params",))  # prose, and values (never rendered)


def _matches(path: tuple[Any, ...], patterns: tuple[tuple[Any, ...], ...], prefix: bool) -> bool:
    for pat in patterns:
        fits = len(path) == len(pat) or (prefix and len(path) > len(pat))
        if fits and all(q == "*" or q == x for q, x in zip(pat, path)):
            return True
    return False


def check_not_templates(doc: Located) -> list[Problem]:
    """A field that is not a template but holds ``{{``/``{%`` would reach Slurm or the
    container runtime literally: refuse it where it is written."""
    problems: list[Problem] = []

    def walk(v: Any, path: tuple[Any, ...]) -> None:
        if _matches(path, FREE_TEXT, prefix=True):
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + (i,))
        elif (
            isinstance(v, str)
            and ("{{" in v or "{%" in v)
            and not _matches(path, TEMPLATE_FIELDS, prefix=False)
        ):
            where = ".".join(str(x) for x in path)
            problems.append(
                doc.problem(
                    path,
                    f"{where} is not a template, so {v!r} would be used as written; "
                    "templates work in run, env, foreach, ffrd.event and container image",
                )
            )

    walk(doc.data, ())
    return problems


def render_images(
    wf: Workflow, doc: Located, params: dict[str, Any]
) -> tuple[Workflow, list[Problem]]:
    """Container images may use params (``hms:{{ params.hms_version }}``): rendered once
    here, so every later stage sees the real reference."""
    problems: list[Problem] = []

    def one(image: str, where: tuple[Any, ...]) -> str:
        try:
            ref = render_native(image, {"params": namespace("params", params)})
        except jinja2.TemplateError as e:
            problems.append(doc.problem(where, f"image: {e}"))
            return image
        if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
            problems.append(doc.problem(where, f"image {ref!r} is not one image reference"))
            return image
        return ref

    named = {
        n: c.model_copy(update={"image": one(c.image, ("containers", n, "image"))})
        for n, c in wf.containers.items()
    }
    steps = [
        s.model_copy(
            update={
                "container": s.container.model_copy(
                    update={"image": one(s.container.image, ("steps", i, "container", "image"))}
                )
            }
        )
        if isinstance(s.container, Container)
        else s
        for i, s in enumerate(wf.steps)
    ]
    return wf.model_copy(update={"containers": named, "steps": steps}), problems
