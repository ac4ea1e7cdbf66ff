"""Parameters and foreach axes: from the workflow's text to concrete values."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .errors import InvalidInput, Problem
from .model import AxisSource, Workflow
from .templating import render_native
from .yamlsafe import Located


def parse_set(pairs: list[str], workflow: Workflow, doc: Located) -> dict[str, Any]:
    """``--set k=v`` (v read as a YAML scalar or flow list) over the workflow's params."""
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
            problems.append(Problem("--set", 0, f"unknown parameter {key!r} (known: {known})"))
            continue
        params[key] = _set_value(raw)
    if problems:
        raise InvalidInput(problems)
    return params


def _set_value(raw: str) -> Any:
    """Numbers, booleans and [lists] are read as YAML; anything else stays literal text
    (so '#', quotes and ': ' in a value arrive as typed)."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, (bool, int, float)) or (
        isinstance(value, list) and raw.lstrip().startswith("[")
    ):
        return value
    return raw


def _check_value(v: Any) -> Any:
    if isinstance(v, (dict, list)) or v is None:
        raise ValueError(f"foreach values must be scalars, got {v!r}")
    if isinstance(v, str) and any(ord(c) < 32 and c != "\t" or c == "\x7f" for c in v):
        raise ValueError(f"foreach value {v!r} contains a control character")
    if isinstance(v, str) and "\t" in v:
        raise ValueError(f"foreach value {v!r} contains a tab")
    return v


def axis_values(src: AxisSource, params: dict[str, Any], base_dir: Path) -> list[Any]:
    ctx = {"params": params}
    if src.range is not None:
        nums = []
        for x in src.range:
            v = render_native(x, ctx)
            try:
                nums.append(int(v))
            except (TypeError, ValueError):
                raise ValueError(f"range bound {x!r} is not an integer (got {v!r})") from None
        start, stop = nums[0], nums[1]
        stride = nums[2] if len(nums) == 3 else 1
        if stride == 0:
            raise ValueError("range stride must not be 0")
        values: list[Any] = list(range(start, stop + (1 if stride > 0 else -1), stride))
    elif src.values is not None:
        vals = render_native(src.values, ctx) if isinstance(src.values, str) else src.values
        if isinstance(vals, (str, int, float)):
            vals = [vals]
        if not isinstance(vals, (list, tuple)):
            raise ValueError(f"values must be a list, got {vals!r}")
        values = [render_native(v, ctx) for v in vals]
    else:
        assert src.file is not None
        path = base_dir / src.file
        if not path.is_file():
            raise ValueError(f"foreach file {str(path)!r} not found")
        values = _read_file(path, src.column)
    if not values:
        raise ValueError("foreach axis is empty")
    return [_check_value(v) for v in values]


def _read_file(path: Path, column: str | None) -> list[Any]:
    with path.open(newline="", encoding="utf-8") as f:
        if column is None:
            return [line.strip() for line in f if line.strip()]
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
        return [row[column].strip() for row in reader if row.get(column, "").strip()]


def resolve_axes(
    workflow: Workflow, params: dict[str, Any], doc: Located, base_dir: Path
) -> dict[str, dict[str, list[Any]]]:
    """step -> axis -> values; every problem reported with its line."""
    out: dict[str, dict[str, list[Any]]] = {}
    problems = []
    for i, step in enumerate(workflow.steps):
        axes: dict[str, list[Any]] = {}
        for axis, src in (step.foreach or {}).items():
            try:
                axes[axis] = axis_values(src, params, base_dir)
            except (ValueError, jinja2.TemplateError, OSError, csv.Error) as e:
                problems.append(
                    doc.problem(
                        ("steps", i, "foreach", axis), f"step {step.name!r}: axis {axis!r}: {e}"
                    )
                )
        out[step.name] = axes
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
