"""Safe YAML loading that remembers the line of every key and list item.

Only the standard YAML tags are accepted, duplicate keys are errors, files and alias expansion
are bounded, so a "billion laughs" document or /dev/zero fails fast instead of eating the login
node. Plain scalars follow YAML 1.2's core schema, stricter still (docs/workflow-format.md):
``007``, ``08``, ``1:30``, ``yes``/``no``/``on``/``off`` and dates stay strings as written;
``true``/``false``, ``null``/``~``, decimal integers without leading zeros and decimal floats
are typed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hpcflow.errors import InvalidInput, Problem
from hpcflow.util.safeio import TooLarge, UnsafeFile, read_bounded

Path_ = tuple[Any, ...]
MAX_NODES = 1_000_000  # YAML nodes after alias expansion
MAX_BYTES = 16 * 1024 * 1024  # a workflow, site or campaign file
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader with the strict core-schema resolvers below (no YAML 1.1 surprises)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


_RESOLVERS = [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
]
for _tag, _rx, _first in _RESOLVERS:
    Loader.add_implicit_resolver("tag:yaml.org,2002:" + _tag, re.compile(_rx), list(_first))
# "1" and "+1" match float too; int wins because it is listed first (checked in order)


def load_scalar(text: str) -> Any:
    """One plain scalar or flow collection, typed by the same rules as files."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a safe loader


class Located:
    """Parsed YAML data plus the line (1-based) where each path starts."""

    def __init__(self, data: Any, lines: dict[Path_, int], file: str):
        self.data = data
        self.lines = lines
        self.file = file

    def line_of(self, path: Path_) -> int:
        """Line of the deepest known prefix of ``path`` (1 if none)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Path_, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), message)


def load_text(text: str, file: str) -> Located:
    """Parse YAML text; raise InvalidInput naming the file and line on any problem."""
    text = text.removeprefix("\ufeff")
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise InvalidInput([Problem(file, line, "NUL byte in the file: is it a text file?")])
    loader = Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise InvalidInput([Problem(file, line, f"YAML syntax: {e.problem or e}")]) from e
    except yaml.YAMLError as e:
        raise InvalidInput([Problem(file, 1, f"YAML syntax: {e}")]) from e
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is None:
        return Located({}, {(): 1}, file)
    budget = [MAX_NODES]
    data = _build(loader, node, (), lines, file, budget)
    return Located(data, lines, file)


def read_text_bounded(path: str | Path, limit: int = MAX_BYTES, what: str = "file") -> str:
    """A UTF-8 text file of at most ``limit`` bytes (a BOM is dropped); problems name the
    line (not the byte offset) of a bad byte."""
    p = Path(path)
    try:
        data = read_bounded(p, limit)  # a FIFO or a device is refused, not read
    except FileNotFoundError as e:
        raise InvalidInput([Problem(str(p), 1, f"{what} not found")]) from e
    except IsADirectoryError as e:
        raise InvalidInput([Problem(str(p), 1, f"{what} is a directory")]) from e
    except TooLarge as e:
        raise InvalidInput(
            [
                Problem(
                    str(p),
                    1,
                    f"{what} is over {limit // (1024 * 1024)} MB; put long value lists in "
                    "a CSV and use foreach `file:` (or events `file:`)",
                )
            ]
        ) from e
    except UnsafeFile as e:
        why = f"{what} is a directory" if "a directory," in str(e) else str(e).split(": ", 1)[-1]
        raise InvalidInput([Problem(str(p), 1, why)]) from e
    except OSError as e:
        raise InvalidInput([Problem(str(p), 1, f"cannot read: {e.strerror or e}")]) from e
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InvalidInput(
            [Problem(str(p), line, "not UTF-8 text (save the file as UTF-8)")]
        ) from e


def load_file(path: str | Path) -> Located:
    return load_text(read_text_bounded(path), str(path))


_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {
    _STD + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "timestamp", "merge")
}


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    file: str,
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidInput(
            [
                Problem(
                    file,
                    node.start_mark.line + 1,
                    f"document too large: over {MAX_NODES:,} YAML values (counting every "
                    "alias expansion); put long value lists in a CSV and use foreach `file:`",
                )
            ]
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in _ALLOWED_TAGS:
        raise InvalidInput(
            [Problem(file, node.start_mark.line + 1, f"YAML tag {node.tag!r} is not allowed")]
        )
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise InvalidInput([Problem(file, node.start_mark.line + 1, f"YAML: {e}")]) from e
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, n, path + (i,), lines, file, budget) for i, n in enumerate(node.value)
        ]
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == _STD + "merge":
                raise InvalidInput(
                    [
                        Problem(
                            file,
                            knode.start_mark.line + 1,
                            "YAML merge keys (<<) are not supported",
                        )
                    ]
                )
            key = _build(loader, knode, path + ("<key>",), lines, file, budget)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise InvalidInput(
                    [Problem(file, knode.start_mark.line + 1, "mapping keys must be plain scalars")]
                )
            if key in out:
                raise InvalidInput(
                    [Problem(file, knode.start_mark.line + 1, f"duplicate key {key!r}")]
                )
            lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _build(loader, vnode, path + (key,), lines, file, budget)
        lines.pop(path + ("<key>",), None)
        return out
    raise InvalidInput([Problem(file, node.start_mark.line + 1, "unsupported YAML node")])
