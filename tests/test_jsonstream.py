"""Documents with lazily read arrays (util/jsonstream.py) print exactly what json.dumps(indent=2)
prints for the same document built whole."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from hpcflow.util import jsonstream
from hpcflow.util.jsonstream import LazyList, dump


def lazy(items: list[Any]) -> LazyList:
    return LazyList(lambda: iter(items))


def whole(doc: Any) -> Any:
    if isinstance(doc, LazyList):
        return [whole(x) for x in doc]
    if isinstance(doc, dict):
        return {k: whole(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [whole(v) for v in doc]
    return doc


TASK = {"index": 3, "item": {"event": 7, "unit": "A"}, "state": "FAILED", "reason": 'a "q"\n',
        "result": {"nested": [1, {"x": None}]}, "outputs": None}  # fmt: skip


@pytest.mark.parametrize(
    "doc",
    [
        {"run_id": "r", "steps": {"a": {"total": 2, "tasks": lazy([TASK, TASK | {"index": 4}])}}},
        {"runs": [{"steps": {"a": {"tasks": lazy([])}, "b": {"tasks": lazy([TASK])}}}]},
        lazy([1, "two", [3], {}]),
        # a value that looks like a placeholder is data, printed as written
        {"label": "lazy-0", "tasks": lazy(["lazy-1"]), "x": [lazy([]), lazy([{}])]},
        {"empty": {}, "none": None, "steps": {}},
    ],
)
def test_same_text_as_json_dumps(doc: Any) -> None:
    out = io.StringIO()
    dump(doc, out.write)
    assert out.getvalue() == json.dumps(whole(doc), indent=2) + "\n"


def test_many_items_are_written_in_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonstream, "BUFFER_ITEMS", 3)
    items = [{"index": i} for i in range(10)]
    writes: list[str] = []
    dump({"tasks": lazy(items)}, writes.append)
    assert "".join(writes) == json.dumps({"tasks": items}, indent=2) + "\n"
    assert len(writes) >= 10 // 3  # not one string of everything


def test_items_are_read_only_while_written() -> None:
    seen: list[int] = []

    def gen():  # type: ignore[no-untyped-def]
        for i in range(3):
            seen.append(i)
            yield i

    doc = {"tasks": LazyList(gen)}
    assert seen == []  # building the document reads nothing
    dump(doc, lambda _s: None)
    assert seen == [0, 1, 2]
