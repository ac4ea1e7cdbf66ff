"""Parameters and foreach axes: from the workflow's text to concrete values."""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.workflow import AxisSource, Workflow
from hpcflow.util.safeio import inside
from hpcflow.util.templating import _to_text, namespace, render_native
from hpcflow.util.yamlsafe import Located, load_scalar, read_text_bounded

DEFAULT_MAX_ELEMENTS = 2_000_000  # per workflow; site limits.max_elements, --max-elements
MAX_CSV_BYTES = 256 * 1024 * 1024
_INT = re.compile(r"^[-+]?[0-9]+$")
_BOOL = {"true": True, "yes": True, "on": True, "1": True}
_BOOL |= {"false": False, "no": False, "off": False, "0": False}
BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class AxisProblem(ValueError):
    """A problem in a foreach source, located in its own file (a CSV) or in the workflow."""

    def __init__(self, message: str, problem: Problem | None = None, path: tuple = ()):
        super().__init__(message)
        self.problem = problem
        self.path = path


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


def did_you_mean(word: str, known: Any) -> str:
    hint = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


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


# control characters (C0, DEL, C1 with U+0085), line and paragraph separators and bidi
# controls: a script, a tasks file line or a terminal would not show them as written
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c"
                     "\u202a-\u202e\u2066-\u2069]")  # fmt: skip


def _check_value(v: Any) -> Any:
    if isinstance(v, (dict, list)) or v is None:
        raise ValueError(f"foreach values must be scalars, got {v!r}")
    if isinstance(v, str) and (m := _UNSAFE.search(v)):
        what = "a bidi control" if m.group() in BIDI else "a control character"
        raise ValueError(f"foreach value {v!r} contains {what} (U+{ord(m.group()):04X})")
    if isinstance(v, str) and "\t" in v:
        raise ValueError(f"foreach value {v!r} contains a tab")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"foreach value {v!r} is not a finite number")
    return v


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


def read_values(
    path: Path, column: str | None, what: str, max_values: int = DEFAULT_MAX_ELEMENTS
) -> list[str]:
    """A CSV column (or, without a column, one value per line) as text as written (``007``
    stays ``007``); a BOM (Excel) is dropped; empty cells are skipped. A duplicate is an
    AxisProblem at the line of its second occurrence."""
    text = read_text_bounded(path, MAX_CSV_BYTES, what)
    return values_from_text(text, column, str(path), max_values)


class LineFeed:
    """The lines of ``text`` split at ``\\n`` only (without ``keepends``, a ``\\r`` before
    it dropped), one at a time. Not ``str.splitlines``, which also splits at ``\\x0b``,
    ``\\x85`` and U+2028 and would turn one value into two. Split a megabyte at a time (in C):
    a file of ten million lines is never held as ten million strings. ``hit`` turns true when
    a window read holds a character no value may have (one scan per window, in C)."""

    def __init__(self, text: str, keepends: bool = False):
        self.text, self.keepends, self.hit = text, keepends, False

    def __iter__(self) -> Iterator[str]:
        text, start, end = self.text, 0, len(self.text)
        crlf = "\r" in text
        while start < end:
            stop = text.find("\n", min(start + 1_000_000, end - 1))
            stop = end if stop < 0 else stop + 1
            window = text[start:stop]
            start = stop
            if _UNSAFE_IN_TEXT.search(window) or (crlf and _BARE_CR.search(window)):
                self.hit = True
            parts = window.split("\n")
            last = parts.pop()  # "" when the window ends with a newline
            if self.keepends:
                yield from [p + "\n" for p in parts]
            elif crlf:
                yield from [p[:-1] if p.endswith("\r") else p for p in parts]
            else:
                yield from parts
            if last:
                yield last if self.keepends or not last.endswith("\r") else last[:-1]


def lines_of(text: str, keepends: bool = False) -> Iterator[str]:
    return iter(LineFeed(text, keepends))


def values_from_text(
    text: str, column: str | None, path: str, max_values: int = DEFAULT_MAX_ELEMENTS
) -> list[str]:
    """``read_values`` on a file's text already read (``path`` names it in problems). Every
    problem is an AxisProblem with the file's line: a missing column (line 1), a value no
    script may see (control or bidi characters), a duplicate, a line the CSV reader cannot
    parse, more than ``max_values`` values (checked while reading, not after)."""
    text = text.removeprefix("\ufeff")
    vals: list[str] = []
    if not text.strip():
        return vals  # not even a header: no values
    bound = f"over the bound of {max_values:,} values (--max-elements, site limits)"
    feed = LineFeed(text, keepends=column is not None)
    if column is None:
        for n, line in enumerate(feed, 1):
            if v := line.strip(" \t"):
                if len(vals) >= max_values:
                    raise AxisProblem(bound, Problem(path, n, bound))
                if feed.hit:  # only where a window held something: most files are clean
                    _refuse_value(v, path, n)
                vals.append(v)
    else:
        reader = csv.reader(feed)  # quoted newlines stay in a field
        try:
            header = next(reader, None)
            if header is None or column not in header:
                hint = did_you_mean(column, header or [])
                msg = f"no column {column!r}{hint} (columns: {header})"
                raise AxisProblem(msg, Problem(path, 1, msg))
            at = header.index(column)
            for row in reader:
                if len(row) > at and (v := row[at].strip(" \t")):
                    if len(vals) >= max_values:
                        raise AxisProblem(bound, Problem(path, reader.line_num, bound))
                    if feed.hit:
                        _refuse_value(v, path, reader.line_num)
                    vals.append(v)
        except csv.Error as e:
            raise AxisProblem(str(e), Problem(path, reader.line_num, f"not CSV: {e}")) from e
    try:
        check_distinct(vals)
    except DuplicateValue as e:  # its line: found again, only now
        raise AxisProblem(str(e), Problem(path, _line_of(text, column, e.position), str(e))) from e
    return vals


# _UNSAFE but for the newlines that separate values (a \r only before a \n), or a tab
_UNSAFE_IN_TEXT = re.compile("[\x00-\x09\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u200e"
                             "\u200f\u061c\u202a-\u202e\u2066-\u2069]")  # fmt: skip
_BARE_CR = re.compile("\r(?!\n)")


def _line_of(text: str, column: str | None, position: int) -> int:
    """The line of the ``position``-th value (0-based) of ``text``."""
    seen = -1
    if column is None:
        for n, line in enumerate(lines_of(text), 1):
            seen += bool(line.strip(" \t"))
            if seen == position:
                return n
        return 1
    reader = csv.reader(lines_of(text, keepends=True))
    at = (next(reader, None) or []).index(column)
    for row in reader:
        seen += bool(len(row) > at and row[at].strip(" \t"))
        if seen == position:
            return reader.line_num
    return 1


def _refuse_value(v: str, path: str, n: int) -> None:
    try:
        _check_value(v)
    except ValueError as e:
        raise AxisProblem(str(e), Problem(path, n, str(e))) from e


class DuplicateValue(ValueError):
    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


def check_distinct(values: Sequence[Any]) -> None:
    """Every value once. Two values are the same when Python equates them (1, 1.0, true)
    or when a script would see the same text (1, '1'): either would collide."""
    if isinstance(values, range):
        return
    by_value: dict[Any, int] = {}
    by_text: dict[str, int] = {}
    for i, v in enumerate(values):
        first = by_value.get(v) if _hashable(v) else None
        if first is None:
            first = by_text.get(_to_text(v))
        if first is not None:
            raise DuplicateValue(
                f"value {v!r} (#{i + 1}) repeats {values[first]!r} (#{first + 1}): each value "
                "must appear once (1, '1', 1.0 and true count as the same)",
                i,
            )
        if _hashable(v):
            by_value[v] = i
        by_text[_to_text(v)] = i


def _hashable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


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
                values = [_check_value(v) for v in seq]
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
