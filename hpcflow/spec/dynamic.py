"""Fan-out decided at run time: `foreach: {event: {from: {step, file, column}}}` (docs/dynamic.md).

A *dynamic* step has an axis whose values a *producer* step writes. The *deferred* steps are the
dynamic steps and everything downstream of them: none of them can be laid out before the
producers end. They are compiled, rendered and submitted by the expansion, which runs after the
producers (the hpcflow-expand job, or the next sync on the login node). Everything else in the
workflow is submitted at once, as always.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcflow.errors import Problem
from hpcflow.spec.workflow import FromOutput, Workflow
from hpcflow.util.yamlsafe import Located

EXPAND_STEP = "hpcflow-expand"


@dataclass(frozen=True)
class Deferral:
    """Which steps wait for an expansion, and which producers they wait for."""

    deferred: frozenset[str]  # dynamic steps and their descendants
    producers: tuple[str, ...]  # steps named by `from:`, in file order

    def __bool__(self) -> bool:
        return bool(self.deferred)


NONE = Deferral(frozenset(), ())


def deferral(wf: Workflow) -> Deferral:
    dynamic = {s.name for s in wf.steps if s.dynamic_axes}
    if not dynamic:
        return NONE
    deferred = set(dynamic)
    changed = True
    while changed:  # descendants (the graph is small; a cycle is reported elsewhere)
        changed = False
        for s in wf.steps:
            if s.name not in deferred and any(u in deferred for u in s.after):
                deferred.add(s.name)
                changed = True
    producers: list[str] = []
    for s in wf.steps:
        for src in s.dynamic_axes.values():
            if src.step not in producers:
                producers.append(src.step)
    return Deferral(frozenset(deferred), tuple(producers))


def ancestors(wf: Workflow, name: str) -> set[str]:
    by = {s.name: s for s in wf.steps}
    out: set[str] = set()
    todo = list(by[name].after) if name in by else []
    while todo:
        u = todo.pop()
        if u in out or u not in by:
            continue
        out.add(u)
        todo.extend(by[u].after)
    return out


def check_dynamic(wf: Workflow, doc: Located) -> list[Problem]:
    """What a dynamic foreach needs: a producer without foreach that is not deferred itself
    and comes before the step; deferred steps wait only for producers and deferred steps."""
    d = deferral(wf)
    if not d:
        return []
    by = {s.name: s for s in wf.steps}
    problems: list[Problem] = []
    for i, s in enumerate(wf.steps):
        for axis, src in s.dynamic_axes.items():
            where: tuple = ("steps", i, "foreach", axis, "from", "step")
            problems += _producer_problems(wf, doc, s.name, axis, src, by, d, where)
        if s.name not in d.deferred:
            continue
        for up, kind in s.after.items():
            where = ("steps", i, "after", up)
            if up in d.deferred:
                continue
            if up not in d.producers:
                problems.append(doc.problem(where, (
                    f"step {s.name!r} runs after a dynamic foreach is expanded, so it can wait "
                    f"only for producers ({', '.join(d.producers)}) and other expanded steps, not "
                    f"for {up!r}; make {d.producers[0]!r} wait for {up!r} instead"
                )))  # fmt: skip
            elif kind != "ok":
                problems.append(doc.problem(where, (
                    f"step {s.name!r}: the expansion runs only when producer {up!r} succeeded, "
                    f"so `{kind}` on it cannot be honoured; use ok"
                )))  # fmt: skip
    if wf.cleanup != "never":
        problems.append(doc.problem(("cleanup",), (
            "cleanup: is not supported with a dynamic foreach yet (the final job would have to "
            "wait for jobs that do not exist at submit time); use cleanup: never and "
            "`hpcflow clean RUN` when the run has ended"
        )))  # fmt: skip
    return problems


def _producer_problems(
    wf: Workflow,
    doc: Located,
    name: str,
    axis: str,
    src: FromOutput,
    by: dict,
    d: Deferral,
    where: tuple,
) -> list[Problem]:
    what = f"step {name!r}: axis {axis!r}: from step {src.step!r}"
    if src.step not in by:
        return [doc.problem(where, f"{what}: no such step")]
    if by[src.step].foreach:
        return [doc.problem(where, (
            f"{what}: the producer must have no foreach (its one directory holds "
            f"{src.file}); write one file from one step, e.g. a step that merges the others"
        ))]  # fmt: skip
    if src.step in d.deferred:
        return [doc.problem(where, (
            f"{what}: the producer is itself expanded at run time; one level of dynamic "
            "foreach is supported"
        ))]  # fmt: skip
    if src.step not in ancestors(wf, name):
        return [doc.problem(where, (
            f"{what}: {name!r} must run after {src.step!r}; add `after: {{{src.step}: ok}}`"
        ))]  # fmt: skip
    return []
