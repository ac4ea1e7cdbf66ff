"""Parameters and foreach axes: from the workflow's text to concrete values."""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.valuefiles import (
    DEFAULT_MAX_ELEMENTS,
    AxisProblem,
    DuplicateValue,
    check_distinct,
    check_value,
    read_values,
)
from hpcflow.spec.workflow import AxisSource, Workflow
from hpcflow.util.names import did_you_mean
from hpcflow.util.safeio import inside
from hpcflow.util.templating import namespace, render_native
from hpcflow.util.yamlsafe import Located, load_scalar

_INT = re.compile(r"^[-+]?[0-9]+$")
_BOOL = {"true": True, "yes": True, "on": True, "1": True}
_BOOL |= {"false": False, "no": False, "off": False, "0": False}


def parse_set(pairs: list[str], workflow: Workflow, doc: Located) -> dict[str, Any]:
    """``--set k=v`` over the workflow's params. A param keeps its default's type
    (docs/workflow-format.md): a string param takes the text as typed, an int param a whole
    number, a bool param true/false/yes/no, a list param a [flow, list]; a param whose default
    is null reads the value as a YAML scalar or [list]."""
    params = dict(workflow.params)
    problems = []
    for pair in pairs:
        if "=" not in pair:
            problems.append(Problem("--set", 0, f"{pair!r}: expected key=value"))
            continue
        key, raw = pair.split("=", 1)
        key = key.strip()
        if key not in params:
            known = ", ".join(params) or "none"
            hint = did_you_mean(key, params)
            problems.append(
                Problem("--set", 0, f"unknown parameter {key!r}{hint} (known: {known})")
            )
            continue
        try:
            params[key] = typed_value(raw, params[key])
        except ValueError as e:
            problems.append(Problem("--set", 0, f"{key}={raw}: {e}"))
    if problems:
        raise InvalidInput(problems)
    return params


def typed_value(raw: str, default: Any) -> Any:
    """``raw`` read as the type of ``default`` (see parse_set)."""
    if isinstance(default, bool):
        v = _BOOL.get(raw.strip().lower())
        if v is None:
            raise ValueError("a true/false parameter: give true or false")
        return v
    if isinstance(default, int):
        if not _INT.match(raw.strip()):
            raise ValueError(f"an integer parameter (default {default}): give a whole number")
        return int(raw)
    if isinstance(default, float):
        try:
            f = float(raw)
        except ValueError:
            raise ValueError(f"a number parameter (default {default}): give a number") from None
        if not math.isfinite(f):
            raise ValueError("give a finite number")
        return f
    if isinstance(default, str):
        return raw
    if isinstance(default, list):
        v = _yaml_value(raw) if raw.lstrip().startswith("[") else None
        if not isinstance(v, list):
            raise ValueError("a list parameter: give a [flow, list], e.g. [A, B]")
        return v
    if isinstance(default, dict):
        v = _yaml_value(raw) if raw.lstrip().startswith("{") else None
        if not isinstance(v, dict):
            raise ValueError("a mapping parameter: give a {key: value} mapping")
        return v
    return _set_value(raw)


def _yaml_value(raw: str) -> Any:
    try:
        return load_scalar(raw)
    except yaml.YAMLError:
        return None


def _set_value(raw: str) -> Any:
    """Untyped params: numbers, booleans and [lists] are read as YAML (strict core schema,
    so 007 and no stay text); anything else stays literal text."""
    if not raw.strip():
        return ""
    value = _yaml_value(raw)
    if isinstance(value, (bool, int, float)) or (
        isinstance(value, list) and raw.lstrip().startswith("[")
    ):
        return value
    return raw


def _int_bound(x: Any, v: Any) -> int:
    if isinstance(v, str) and _INT.match(v.strip()):
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ValueError(f"range bound {x!r} is not a whole number (got {v!r})")


def axis_source(
    src: AxisSource, params: dict[str, Any], base_dir: Path, max_values: int = DEFAULT_MAX_ELEMENTS
) -> Sequence[Any]:
    """The axis's values, lazily for ranges (so the size is known before anything is
    expanded). Values that come from params are data: they are never rendered again."""
    ctx = {"params": namespace("params", params)}
    if src.range is not None:
        nums = [_int_bound(x, render_native(x, ctx)) for x in src.range]
        start, stop = nums[0], nums[1]
        stride = nums[2] if len(nums) == 3 else 1
        if stride == 0:
            raise ValueError("range stride must not be 0")
        return range(start, stop + (1 if stride > 0 else -1), stride)
    if src.values is not None:
        if isinstance(src.values, str):  # one template: its value is the list
            vals = render_native(src.values, ctx)
            if isinstance(vals, (str, int, float)):
                vals = [vals]
            if not isinstance(vals, (list, tuple)):
                raise ValueError(f"values must be a list, got {vals!r}")
            return list(vals)
        return [render_native(v, ctx) for v in src.values]  # written in the workflow file
    assert src.file is not None
    path = base_dir / src.file
    if not path.is_file():
        raise ValueError(f"foreach file {str(path)!r} not found")
    if not inside(path, base_dir):  # a colleague's workflow cannot read any file of yours
        raise ValueError(f"foreach file {str(path)!r} is outside the workflow's folder; copy it")
    return read_values(path, src.column, "foreach file", max_values)


def resolve_axes(
    workflow: Workflow,
    params: dict[str, Any],
    doc: Located,
    base_dir: Path,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> dict[str, dict[str, list[Any]]]:
    """step -> axis -> values; every problem reported with its line. The element count is
    checked against ``max_elements`` before any axis is expanded."""
    sources: dict[str, dict[str, Sequence[Any]]] = {}
    problems = []
    for i, step in enumerate(workflow.steps):
        axes: dict[str, Sequence[Any]] = {}
        for axis, src in (step.foreach or {}).items():
            where = ("steps", i, "foreach", axis)
            if src.from_ is not None:
                axes[axis] = []  # written by its producer at run time (spec/dynamic.py)
                continue
            try:
                axes[axis] = axis_source(src, params, base_dir, max_elements)
                if not axes[axis]:
                    raise ValueError("foreach axis is empty")
            except AxisProblem as e:
                problems.append(e.problem or doc.problem(where + e.path, str(e)))
            except (ValueError, jinja2.TemplateError, OSError, csv.Error) as e:
                problems.append(doc.problem(where, f"step {step.name!r}: axis {axis!r}: {e}"))
        sources[step.name] = axes
    if problems:
        raise InvalidInput(problems)
    total = sum(math.prod(len(v) for v in axes.values()) for axes in sources.values())
    if total > max_elements:
        raise InvalidInput(
            [
                doc.problem(
                    ("steps",),
                    f"the workflow expands to {total:,} elements, over the bound of "
                    f"{max_elements:,}; check the foreach ranges, or raise the bound with "
                    "--max-elements N (or the site's limits.max_elements)",
                )
            ]
        )
    out: dict[str, dict[str, list[Any]]] = {}
    for i, step in enumerate(workflow.steps):
        out[step.name] = {}
        for axis, seq in sources[step.name].items():
            where = ("steps", i, "foreach", axis)
            try:
                values = [check_value(v) for v in seq]
                if not isinstance(seq, range):
                    check_distinct(values)
            except DuplicateValue as e:
                src = (step.foreach or {})[axis]
                path = ("values", e.position) if isinstance(src.values, list) else ()
                problems.append(
                    doc.problem(where + path, f"step {step.name!r}: axis {axis!r}: {e}")
                )
                continue
            except ValueError as e:
                problems.append(doc.problem(where, f"step {step.name!r}: axis {axis!r}: {e}"))
                continue
            out[step.name][axis] = values
    if problems:
        raise InvalidInput(problems)
    return out


def elements(axes: dict[str, list[Any]]) -> Iterator[tuple[Any, ...]]:
    """Cartesian product in axis order: deterministic element order (index = position)."""
    return itertools.product(*axes.values())


def n_elements(axes: dict[str, list[Any]]) -> int:
    n = 1
    for v in axes.values():
        n *= len(v)
    return n
