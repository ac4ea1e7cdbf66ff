"""Jinja rendering where every interpolated value is shell-quoted unless marked ``| raw``.

A template renders to *segments*: literal template text, compile-time values, raw values and
run-time references (``item.*``, ``task_dir``... known only when the array element starts). The
segments are then assembled for a shell-code context (``run``) or a double-quoted shell word
(``env`` values), so quoting is decided in one place.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shlex
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.filters
import jinja2.nodes
import jinja2.runtime
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range

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


class _Timeout(jinja2.TemplateError):
    pass


MAX_SECONDS = 5.0  # wall time of one template render
MAX_TEXT = 1_000_000  # characters of one string or list built by a template
MAX_RANGE_TOTAL = 100_000  # elements of all range() calls in one render
MAX_INT_ARG = 100_000  # an integer argument to a filter (width, count...)
_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{5,})|\{[^{}]*:[^{}]*\d{5,}[^{}]*\}")


class _Budget:
    def __init__(self) -> None:
        self.range_left = MAX_RANGE_TOTAL
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Timeout(f"template work is over the {MAX_SECONDS:.0f} s bound")


_BUDGET = threading.local()


def _budget() -> _Budget:
    """The running render's budget (outside `bounded()`, a fresh one that is not kept)."""
    b = getattr(_BUDGET, "current", None)
    return b if b is not None else _Budget()


def _too_big(what: str) -> jinja2.TemplateError:
    return SecurityError(f"{what} is over the template bound ({MAX_TEXT:,} characters/items)")


def _size(v: Any) -> int:
    return len(v) if isinstance(v, (str, list, tuple, bytes)) else 0


def _check_result(v: Any) -> Any:
    if _size(v) > MAX_TEXT:
        raise _too_big("a value")
    return v


def _bounded_range(*args: int) -> range:
    r = safe_range(*args)
    b = _budget()
    b.range_left -= len(r)
    if b.range_left < 0:
        raise SecurityError(f"range() calls make over {MAX_RANGE_TOTAL:,} elements in total")
    b.tick()
    return r


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _WIDTH.search(fmt):
        raise SecurityError("format widths over 4 digits are not allowed in templates")


def _guard_filter(f: Any) -> Any:
    @functools.wraps(f)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_INT_ARG:
                raise SecurityError(f"filter argument {a} is over {MAX_INT_ARG:,}")
        if f is _FILTERS.get("format") and args:
            _check_format(args[0] if not _is_ctx(args[0]) else args[1])
        return _check_result(f(*args, **kwargs))

    return guarded


def _is_ctx(v: Any) -> bool:
    return isinstance(v, (jinja2.runtime.Context, jinja2.nodes.EvalContext, jinja2.Environment))


_FILTERS = dict(jinja2.filters.FILTERS)
SAFE_FILTERS = frozenset(
    {"abs", "batch", "capitalize", "center", "default", "d", "dictsort", "first", "float"}
    | {"format", "indent", "int", "items", "join", "last", "length", "count", "list", "lower"}
    | {"map", "max", "min", "replace", "reject", "rejectattr", "reverse", "round", "select"}
    | {"selectattr", "slice", "sort", "string", "sum", "title", "tojson", "trim", "truncate"}
    | {"unique", "upper", "wordcount", "wordwrap"}
)


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with bounds on what one render may build or take."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def getattr(self, obj: Any, attribute: str) -> Any:
        # params.items / item.values are the user's names, never dict methods
        if isinstance(obj, Mapping) and isinstance(attribute, str) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().tick()
        nums = isinstance(left, (int, float)) and isinstance(right, (int, float))
        if operator == "**" and nums and abs(right) > 64 and abs(left) > 1:
            raise SecurityError(f"{left} ** {right} is over the template bound")
        if operator == "*":
            n = right if isinstance(left, (str, list, tuple)) else left
            seq = left if isinstance(left, (str, list, tuple)) else right
            if isinstance(n, int) and _size(seq) * max(n, 0) > MAX_TEXT:
                raise _too_big("a repeated value")
        if operator == "+" and _size(left) + _size(right) > MAX_TEXT:
            raise _too_big("a joined value")
        if operator == "%":
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        if getattr(value, "__name__", "") in ("format", "format_map"):
            _check_format(getattr(value, "__self__", None))
        return super().wrap_str_format(value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().tick()
        for a in list(args) + list(kwargs.values()):
            _check_result(a)
        return _check_result(super().call(__context, __obj, *args, **kwargs))


def _env() -> Sandbox:
    env = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    configure(env)
    return env


def configure(env: jinja2.Environment) -> None:
    """Limit a template environment to bounded globals and filters."""
    env.globals.clear()
    env.globals["range"] = _bounded_range
    env.filters.clear()
    for name in SAFE_FILTERS:
        env.filters[name] = _guard_filter(_FILTERS[name])
    env.filters["raw"] = _raw


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """One render's budget: range elements and wall time (SIGALRM in the main thread, so a
    loop that calls nothing is stopped too). Any error from the template becomes a
    TemplateError with a one-line message."""
    outer = getattr(_BUDGET, "current", None)
    if outer is not None:  # nested: the outer render's budget applies
        yield
        return
    _BUDGET.current = _Budget()
    use_alarm = threading.current_thread() is threading.main_thread()
    old: Any = None
    if use_alarm:

        def _alarm(*_: Any) -> None:
            raise _Timeout(f"template work is over the {MAX_SECONDS:.0f} s bound")

        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS)
    try:
        yield
    except jinja2.TemplateError:
        raise
    except RecursionError as e:
        raise jinja2.TemplateError("template recursion is too deep") from e
    except MemoryError as e:
        raise _too_big("template output") from e
    except Exception as e:
        raise jinja2.TemplateError(f"{type(e).__name__}: {e}") from e
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        _BUDGET.current = None


_ENV = _env()
_LOADING: tuple[type[jinja2.nodes.Node], ...] = (jinja2.nodes.Include, jinja2.nodes.Import)
_LOADING += (jinja2.nodes.FromImport, jinja2.nodes.Extends)


def _refuse_loading(env: jinja2.Environment, source: str) -> None:
    """Workflow templates (no loader) cannot include or import other templates."""
    if env.loader is None and any(True for _ in env.parse(source).find_all(_LOADING)):
        raise jinja2.TemplateError(
            "{% include %}, {% import %} and {% extends %} are not allowed in workflow "
            "templates; job templates in a site's job_templates directory may use them"
        )


def render_segments(
    source: str, context: dict[str, Any], base: jinja2.Environment | None = None
) -> list[tuple[str, Any]]:
    """Render ``source`` once, sandboxed and bounded; returns [(kind, value)] with kind
    lit|val|raw|ref. Values are data: they are collected, never rendered again."""
    if _MARK in source:
        raise jinja2.TemplateError("template contains a NUL character")
    col = _Collector()
    env = (base or _ENV).overlay(finalize=col.finalize)
    with bounded():
        _refuse_loading(env, source)
        text = env.from_string(source).render(context)
        if len(text) > MAX_TEXT:
            raise _too_big("template output")
    parts = text.split(_MARK)
    out: list[tuple[str, Any]] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                out.append(("lit", part))
            continue
        if not part.isdigit() or int(part) >= len(col.values):
            raise jinja2.TemplateError("template output was altered by a filter block")
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
    """A string that is exactly one ``{{ expression }}`` takes the expression's value (int,
    list, ...); any other string with template syntax renders to text; other values pass.
    Nothing is ever read back from text (no literal_eval): data keeps its type."""
    if not isinstance(source, str) or "{" not in source:
        return source
    if _MARK in source:
        raise jinja2.TemplateError("template contains a NUL character")
    with bounded():
        _refuse_loading(_ENV, source)
        body = _ENV.parse(source).body
        single = (
            len(body) == 1
            and isinstance(body[0], jinja2.nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], jinja2.nodes.TemplateData)
        )
        if not single:
            return _check_result(_ENV.from_string(source).render(context))
        expr = source.strip()[2:-2].strip("-")
        value = _ENV.compile_expression(expr, undefined_to_none=False)(**context)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return _check_result(value)
