"""JSON documents with arrays too large to hold: written as they are read.

`status --json --tasks` of a 100,000-element run is one document with an array of 100,000
objects. Built whole, it took 313 MB; here each element is read from the database cursor,
encoded and written, and the text is byte for byte what ``json.dumps(doc, indent=2)`` of the
whole document would print (tests/test_jsonstream.py).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

BUFFER_ITEMS = 1000  # elements encoded before one write


class LazyList:
    """A JSON array whose items are produced when it is written or iterated (each time
    anew, e.g. from a database cursor)."""

    def __init__(self, make: Callable[[], Iterator[Any]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[Any]:
        return self._make()

    def __eq__(self, other: object) -> bool:
        try:
            return list(self) == list(other)  # type: ignore[call-overload]
        except TypeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _placeholders(doc: Any, token: str, lazies: dict[str, LazyList]) -> Any:
    if isinstance(doc, LazyList):
        key = f"{token}-{len(lazies)}"
        lazies[key] = doc
        return key
    if isinstance(doc, dict):
        return {k: _placeholders(v, token, lazies) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_placeholders(v, token, lazies) for v in doc]
    return doc


def dump(doc: Any, write: Callable[[str], Any]) -> None:
    """Write ``doc`` as ``json.dumps(doc, indent=2, default=str)`` plus a newline would, its
    LazyLists item by item."""
    lazies: dict[str, LazyList] = {}
    # a fresh random token: no value in the document can spell it by chance or on purpose
    token = "lazy-" + secrets.token_hex(16)
    text = json.dumps(_placeholders(doc, token, lazies), indent=2, default=str)
    pos = 0
    for m in re.finditer(f'"({token}-[0-9]+)"', text):
        write(text[pos : m.start()])
        line_start = text.rfind("\n", 0, m.start()) + 1
        indent = len(text[line_start:]) - len(text[line_start:].lstrip(" "))
        _array(lazies[m.group(1)], indent, write)
        pos = m.end()
    write(text[pos:] + "\n")


def _array(items: LazyList, indent: int, write: Callable[[str], Any]) -> None:
    pad = "\n" + " " * (indent + 2)
    buf: list[str] = []
    n = 0
    for item in items:
        buf.append(pad + json.dumps(item, indent=2, default=str).replace("\n", pad))
        n += 1
        if len(buf) >= BUFFER_ITEMS:
            write(("[" if n == len(buf) else ",") + ",".join(buf))
            buf.clear()
    if n == 0:
        write("[]")
        return
    if buf:
        write(("[" if n == len(buf) else ",") + ",".join(buf))
    write("\n" + " " * indent + "]")
