"""Safe YAML loading that remembers the line of every key and list item.

Only the standard YAML tags are accepted, duplicate keys are errors, and alias expansion is
bounded, so a "billion laughs" document fails fast instead of eating the login node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidInput, Problem

Path_ = tuple[Any, ...]
MAX_NODES = 200_000


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
    loader = yaml.SafeLoader(text)
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


def load_file(path: str | Path) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InvalidInput([Problem(str(p), 1, "file not found")]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput([Problem(str(p), 1, f"cannot read: {e}")]) from e
    return load_text(text, str(p))


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
                    f"document too large (aliases expand to over {MAX_NODES} nodes)",
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
