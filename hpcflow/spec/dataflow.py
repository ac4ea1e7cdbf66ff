"""Compile-time side of data flow between steps: `when:` conditions, SKIPPED propagation,
fan-in manifests, declared outputs and FFRD plugin files. Checks what the user wrote and builds
the small JSON specs that scripts/hpcflow_job.py (hpcflow/jobtool.py) reads at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcflow.errors import Problem
from hpcflow.node import jobtool
from hpcflow.spec.expand import n_elements
from hpcflow.spec.workflow import Step, Workflow
from hpcflow.states import StepKind
from hpcflow.util.safeio import read_bounded
from hpcflow.util.yamlsafe import MAX_BYTES, Located

CLEANUP_STEP = "hpcflow-cleanup"
PULL_STEP = "hpcflow-pull"
RESERVED_STEPS = (CLEANUP_STEP, PULL_STEP)
ALWAYS = "always"
UPSTREAM_FIELDS = ("state", "exit_code", "outputs")


def single_match_upstreams(step: Step, axes: dict[str, dict[str, list[Any]]]) -> list[str]:
    """Upstreams with exactly one element matching each element of ``step``: `each`
    upstreams whose axes the step has, and upstreams without foreach."""
    mine = axes.get(step.name, {})
    out = []
    for up, kind in step.after.items():
        up_axes = axes.get(up, {})
        if (kind == "each" and all(a in mine for a in up_axes)) or not up_axes:
            out.append(up)
    return out


def fan_in_upstreams(step: Step, axes: dict[str, dict[str, list[Any]]]) -> list[str]:
    """Upstreams whose every element this step waits for (ok/any/notok on a foreach step)."""
    return [u for u, k in step.after.items() if k != "each" and axes.get(u)]


def check_when(
    wf: Workflow, doc: Located, axes: dict[str, dict[str, list[Any]]], params: dict[str, Any]
) -> list[Problem]:
    problems = []
    for i, s in enumerate(wf.steps):
        if s.when is None or s.when.strip() == ALWAYS:
            continue
        where = ("steps", i, "when")
        try:
            ast = jobtool.parse(s.when)
        except jobtool.ExprError as e:
            problems.append(doc.problem(where, f"step {s.name!r}: when: {e}"))
            continue
        ups = single_match_upstreams(s, axes)
        bad = False
        for name in jobtool.names(ast):
            msg = _name_problem(name, s, axes.get(s.name, {}), params, ups)
            if msg:
                bad = True
                problems.append(doc.problem(where, f"step {s.name!r}: when: {msg}"))
        if not bad:
            kinds = _kinds(s, axes.get(s.name, {}), params)
            problems += [
                doc.problem(where, f"step {s.name!r}: when: {m}") for m in _mixed(ast, kinds)
            ]
    return problems


def _kinds(s: Step, my_axes: dict[str, list[Any]], params: dict[str, Any]) -> dict[str, str]:
    """The kind ("num", "str", "bool") every element sees for a name, where it is known
    before the run: an axis's values, a param's value, index, an upstream's state/exit code."""
    dynamic = s.dynamic_axes
    out = {"index": "num"}
    for a, vals in my_axes.items():
        k = "str" if a in dynamic else (axis_type(vals) if vals else "")  # files give text
        out[f"item.{a}"] = {"int": "num", "float": "num"}.get(k, k)
    for k, v in params.items():
        out[f"params.{k}"] = _kind(v)
    return out


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    return "str" if isinstance(v, str) else ""


def _mixed(node: Any, kinds: dict[str, str]) -> list[str]:
    """Comparisons of text with a number: `item.e > 5` where every e is text fails at run
    time (`<`), and `item.e == 5` is false for every element (`==`)."""
    if node[0] in ("and", "or"):
        return _mixed(node[1], kinds) + _mixed(node[2], kinds)
    if node[0] == "not":
        return _mixed(node[1], kinds)
    if node[0] != "cmp" or node[1] in ("in", "not in"):
        return []
    sides = []
    for x in node[2:4]:
        if x[0] == "lit":
            sides.append(_kind(x[1]))
        elif x[0] == "name":
            up = x[1].split(".")
            upk = {"exit_code": "num", "state": "str"}.get(up[2]) if up[0] == "upstream" else None
            sides.append(upk or kinds.get(x[1], ""))
        else:
            sides.append("")
    if set(sides) != {"str", "num"}:
        return []
    text = next(x for x, k in zip(node[2:4], sides) if k == "str")
    what = text[1] if text[0] == "name" else repr(text[1])
    fate = (
        "fails at run time"
        if node[1] not in ("==", "!=")
        else ("is false for every element" if node[1] == "==" else "is true for every element")
    )
    fix = (
        f"the values of {what} are text (quoted, or read by file: or from:): compare with a "
        "string ('10'), or give numbers (range:, or values: unquoted)"
        if text[0] == "name" and what.startswith("item.")
        else "compare like with like"
    )
    return [f"{what} is text and is compared with a number ({node[1]}): this {fate}; {fix}"]


def _name_problem(
    name: str, s: Step, my_axes: dict[str, Any], params: dict[str, Any], ups: list[str]
) -> str | None:
    parts = name.split(".")
    head = parts[0]
    if head == "params":
        if len(parts) < 2 or parts[1] not in params:
            return f"{name}: no such parameter (params: {', '.join(params) or 'none'})"
        return None
    if head == "item":
        if len(parts) != 2 or parts[1] not in my_axes:
            return f"{name}: the step has no such axis (axes: {', '.join(my_axes) or 'none'})"
        return None
    if head == "index":
        return None if len(parts) == 1 else f"{name}: index has no fields"
    if head == "upstream":
        if len(parts) < 3 or parts[1] not in ups:
            return (
                f"{name}: upstream.<step>.state|exit_code|outputs.<key> needs a step this one "
                f"depends on with one matching element (here: {', '.join(ups) or 'none'})"
            )
        if parts[2] not in UPSTREAM_FIELDS or (parts[2] == "outputs") != (len(parts) > 3):
            return f"{name}: use upstream.{parts[1]}.state, .exit_code or .outputs.<key>"
        return None
    return f"unknown name {name!r} (use params.*, item.*, index, upstream.*)"


def may_skip(wf: Workflow, order: list[str], axes: dict[str, dict[str, list[Any]]]) -> set[str]:
    """Steps whose elements can end SKIPPED: a condition, or an `each` upstream that can."""
    by = {s.name: s for s in wf.steps}
    out: set[str] = set()
    for name in order:
        s = by[name]
        if s.when is not None and s.when.strip() == ALWAYS:
            continue
        if s.when is not None or any(
            u in out for u in single_match_upstreams(s, axes) if s.after[u] == "each"
        ):
            out.add(name)
    return out


def when_spec(
    s: Step,
    params: dict[str, Any],
    axes: dict[str, list[Any]],
    upstream_vars: dict[str, str],
) -> dict[str, Any]:
    assert s.when is not None
    return {
        "text": s.when.strip(),
        "ast": jobtool.parse(s.when),
        "params": params,
        "axes": {a: axis_type(v) for a, v in axes.items()},
        "upstreams": upstream_vars,
    }


def axis_type(values: list[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "str"


def manifest_spec(
    run_dir: str, shard: int, ups: list[str], axes: dict[str, dict[str, list[Any]]]
) -> dict[str, Any]:
    return {
        "run_dir": run_dir,
        "shard": shard,
        "upstreams": [{"step": u, "axes": axes[u], "n": n_elements(axes[u])} for u in ups],
    }


def results_dir(results_root: str, workflow: str, run_id: str, step: str) -> str:
    return f"{results_root.rstrip('/')}/{workflow}/{run_id}/{step}"


def read_workflow_file(wf_dir: Path, rel: str) -> str:
    """A file named in the workflow (payload, config): a regular file inside the workflow's
    folder (its real path: a workflow cannot name ~/.ssh/id_rsa or /proc/self/environ),
    at most 16 MB."""
    p = Path(rel)
    path = p if p.is_absolute() else wf_dir / p
    return read_bounded(path, MAX_BYTES, within=wf_dir).decode("utf-8")


def jobtool_source() -> str:
    return read_bounded(jobtool.__file__, MAX_BYTES).decode("utf-8")  # hpcflow's own file


def is_compensation(step: Step, kind: StepKind) -> bool:
    """A compensation step runs only when its upstream failed: every dependency afternotok."""
    return kind is StepKind.USER and set(step.after.values()) == {"notok"}


def step_role(step: Step, kind: StepKind) -> str | None:
    """How status shows a step (display only: nothing decides by it)."""
    if kind is StepKind.CLEANUP:
        return "cleanup"
    if kind is StepKind.PULL:
        return "image pull"
    if kind is StepKind.EXPAND:
        return "expands the dynamic foreach after " + ", ".join(step.after)
    if is_compensation(step, kind):
        return "compensation for " + ", ".join(step.after)
    return None
