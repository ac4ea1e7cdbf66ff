"""Jinja rendering where every interpolated value is shell-quoted unless marked ``| raw``.

A template renders to *segments*: literal template text, compile-time values, raw values and
run-time references (``item.*``, ``task_dir``... known only when the array element starts). The
segments are then assembled for a shell-code context (``run``) or a double-quoted shell word
(``env`` values), so quoting is decided in one place.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.nativetypes import NativeEnvironment

_MARK = "\x00"


class Raw(str):
    """A value the author asked to insert unquoted (``| raw``)."""


@dataclass(frozen=True)
class RuntimeRef:
    """A value known only in the running element, held in a shell variable."""

    var: str
    label: str
    raw: bool = False

    def _refuse(self, *_: Any) -> Any:
        raise jinja2.TemplateError(
            f"{self.label} is only known when the element runs: use it as "
            f"{{{{ {self.label} }}}} in the command, not inside a Jinja expression"
        )

    __str__ = __bool__ = __eq__ = __lt__ = __gt__ = __add__ = __radd__ = _refuse  # type: ignore
    __hash__ = object.__hash__


class _Namespace(Mapping[str, Any]):
    """``item``/``upstream.X`` proxies: attribute access yields RuntimeRefs."""

    def __init__(self, label: str, entries: dict[str, Any]):
        self._label = label
        self._entries = entries

    def __getitem__(self, key: str) -> Any:
        return self._entries[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._entries[key]
        except KeyError:
            raise jinja2.UndefinedError(
                f"{self._label}.{key} is undefined (known: {', '.join(self._entries) or 'none'})"
            ) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def namespace(label: str, entries: dict[str, Any]) -> _Namespace:
    return _Namespace(label, entries)


def _raw(value: Any) -> Any:
    if isinstance(value, RuntimeRef):
        return RuntimeRef(value.var, value.label, raw=True)
    return Raw(_to_text(value))


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(_to_text(v) for v in value)
    return str(value)


class _Collector:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def finalize(self, value: Any) -> str:
        self.values.append(value)
        return f"{_MARK}{len(self.values) - 1}{_MARK}"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["raw"] = _raw
    return env


_ENV = _env()
_NATIVE = NativeEnvironment(undefined=jinja2.StrictUndefined)


def render_segments(
    source: str, context: dict[str, Any], base: jinja2.Environment | None = None
) -> list[tuple[str, Any]]:
    """Render ``source``; returns [(kind, value)] with kind lit|val|raw|ref."""
    if _MARK in source:
        raise jinja2.TemplateError("template contains a NUL character")
    col = _Collector()
    env = (base or _ENV).overlay(finalize=col.finalize)
    env.filters["raw"] = _raw
    text = env.from_string(source).render(context)
    parts = text.split(_MARK)
    out: list[tuple[str, Any]] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                out.append(("lit", part))
            continue
        value = col.values[int(part)]
        if isinstance(value, RuntimeRef):
            out.append(("ref", value))
        elif isinstance(value, Raw):
            out.append(("raw", str(value)))
        else:
            out.append(("val", value))
    return out


def quote_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(_to_text(v)) for v in value)
    return shlex.quote(_to_text(value))


def as_shell_code(segments: list[tuple[str, Any]]) -> str:
    """Template text is shell code; values become single shell words."""
    out = []
    for kind, v in segments:
        if kind in ("lit", "raw"):
            out.append(v)
        elif kind == "ref":
            out.append(f"${{{v.var}}}" if v.raw else f'"${{{v.var}}}"')
        else:
            out.append(quote_value(v))
    return "".join(out)


def _dq(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")


def as_shell_word(segments: list[tuple[str, Any]]) -> str:
    """The whole template is one value: a double-quoted shell word."""
    out = []
    for kind, v in segments:
        if kind == "ref":
            out.append(f"${{{v.var}}}")
        elif kind == "val":
            out.append(_dq(_to_text(v)))
        else:
            out.append(_dq(v))
    return '"' + "".join(out) + '"'


def render_native(source: Any, context: dict[str, Any]) -> Any:
    """Evaluate ``"{{ params.n }}"`` to a native value (int, list, ...); non-strings pass."""
    if not isinstance(source, str) or "{" not in source:
        return source
    return _NATIVE.from_string(source).render(context)
