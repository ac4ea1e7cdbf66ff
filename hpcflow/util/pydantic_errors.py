"""Turn pydantic's errors into ``FILE:LINE: message`` problems a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hpcflow.errors import InvalidInput, Problem
from hpcflow.util.names import did_you_mean
from hpcflow.util.yamlsafe import Located, load_file

M = TypeVar("M", bound=BaseModel)


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Keep only the parts of pydantic's loc that index into the data (drop union tags)."""
    path: list[Any] = []
    cur = data
    for part in loc:
        if (
            isinstance(cur, dict)
            and part in cur
            or isinstance(cur, list)
            and isinstance(part, int)
            and 0 <= part < len(cur)
        ):
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, (dict, list)):
            continue
        else:
            break
    return tuple(path)


def _where(path: tuple[Any, ...], data: Any) -> str:
    out: list[str] = []
    cur = data
    for part in path:
        if isinstance(part, int) and isinstance(cur, list):
            item = cur[part]
            name = item.get("name") if isinstance(item, dict) else None
            out.append(f"step {name!r}" if name and out == ["steps"] else f"[{part}]")
            if name and out[-2:] == ["steps", f"step {name!r}"]:
                out.pop(-2)
        else:
            out.append(str(part))
        cur = cur[part] if isinstance(cur, (list, dict)) else None
    return ".".join(out).replace(".[", "[")


def _known_fields(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    seen = seen or set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for f in model.model_fields.values():
        for t in getattr(f.annotation, "__args__", ()) + (f.annotation,):
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= _known_fields(t, seen)
            for a in getattr(t, "__args__", ()):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    names |= _known_fields(a, seen)
    return names


def problems_from(
    err: ValidationError, doc: Located, model: type[BaseModel] | None = None
) -> list[Problem]:
    known = sorted(_known_fields(model)) if model else []
    out: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _data_path(loc, doc.data)
        kind = e["type"]
        if kind == "extra_forbidden":
            key = loc[-1]
            path = _data_path(loc, doc.data)
            where = _where(path[:-1], doc.data)
            msg = f"unknown key {key!r}" + (f" in {where}" if where else "")
            msg += did_you_mean(str(key), known)
        elif kind == "missing":
            where = _where(path, doc.data)
            msg = f"missing required key {loc[-1]!r}" + (f" in {where}" if where else "")
        else:
            text = e["msg"].removeprefix("Value error, ")
            where = _where(path, doc.data) or "document"
            msg = f"{where}: {text}"
        if (path, kind) in seen and kind not in ("extra_forbidden", "missing"):
            continue
        seen.add((path, kind))
        out.append(doc.problem(path, msg))
    return out


def load_model(
    path: str | Path,
    model: type[M],
    what: str,
    more: Callable[[Located], list[Problem]] | None = None,
) -> tuple[M, Located]:
    """A YAML file as ``model`` (workflows, sites, campaigns, overrides): read bounded and
    safely, a mapping at the top, every problem ``FILE:LINE: message`` (``more`` adds the
    caller's own when the model refuses it). ``what`` names the file: "a site config"."""
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise InvalidInput([Problem(str(path), 1, f"{what} must be a YAML mapping")])
    try:
        return model.model_validate(doc.data), doc
    except ValidationError as e:
        raise InvalidInput(problems_from(e, doc, model) + (more(doc) if more else [])) from e
