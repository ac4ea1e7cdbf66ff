"""Values read from text: a CSV column or one value per line (foreach ``file:``, a dynamic
foreach's producer file, a campaign's events). Split at ``\n`` only, checked while read
(control and bidi characters, the bound on their number, duplicates), every problem at the
file's line."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hpcflow.errors import Problem
from hpcflow.util.names import did_you_mean
from hpcflow.util.templating import _to_text
from hpcflow.util.yamlsafe import read_text_bounded

DEFAULT_MAX_ELEMENTS = 2_000_000  # per workflow; site limits.max_elements, --max-elements
MAX_CSV_BYTES = 256 * 1024 * 1024
BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class AxisProblem(ValueError):
    """A problem in a foreach source, located in its own file (a CSV) or in the workflow."""

    def __init__(self, message: str, problem: Problem | None = None, path: tuple = ()):
        super().__init__(message)
        self.problem = problem
        self.path = path


# control characters (C0, DEL, C1 with U+0085), line and paragraph separators and bidi
# controls: a script, a tasks file line or a terminal would not show them as written
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c"
                     "\u202a-\u202e\u2066-\u2069]")  # fmt: skip


def check_value(v: Any) -> Any:
    """``v`` if it may be a foreach value (a finite scalar a script shows as written)."""
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
        check_value(v)
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
