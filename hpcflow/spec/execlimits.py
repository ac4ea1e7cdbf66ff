"""What the kernel's exec limits allow a step's values (docs/workflow-format.md#values).

An element's values reach its programs as environment strings (``HPCFLOW_ITEM_<axis>=v``):
Linux refuses an exec whose one argument or environment string is over MAX_ARG_STRLEN
(32 pages: 131,072 bytes with its NUL), so a value near that size makes *every* command the
element runs fail with "Argument list too long". A packed element's whole line is also one
argument (of the `bash -c` that runs it). Both would only fail at run time; `validate`
refuses them with the value's step and axis."""

from __future__ import annotations

import shlex
from typing import Any

from hpcflow.errors import Problem
from hpcflow.spec.workflow import Workflow
from hpcflow.util.templating import _to_text
from hpcflow.util.yamlsafe import Located

MAX_ARG_STRLEN = 32 * 4096  # Linux: one argv or environment string, with its NUL
LINE_OVERHEAD = 200  # a tasks-file line beyond its values: task id, index, names, spaces
ITEM_OVERHEAD = len(" HPCFLOW_ITEM_=")  # per axis, beside its name and value


def _size(v: Any) -> int:
    return len(_to_text(v).encode("utf-8", "surrogatepass"))


def _quoted_size(v: Any) -> int:
    return len(shlex.quote(_to_text(v)).encode("utf-8", "surrogatepass"))


def check_exec(wf: Workflow, doc: Located, axes: dict[str, dict[str, list[Any]]]) -> list[Problem]:
    """A problem per step axis holding a value too long to be in an environment, and per
    packed step whose element lines can be too long to be an argument."""
    problems: list[Problem] = []
    for i, s in enumerate(wf.steps):
        biggest: dict[str, tuple[int, list[Any]]] = {}
        before = len(problems)
        for axis, values in axes.get(s.name, {}).items():
            if not values:
                continue
            env_name = f"HPCFLOW_ITEM_{axis}="
            size = max(map(_size, values))
            biggest[axis] = (size, values)
            if len(env_name) + size + 1 > MAX_ARG_STRLEN:
                problems.append(
                    doc.problem(
                        ("steps", i, "foreach", axis),
                        f"step {s.name!r}: a value of axis {axis!r} is {size:,} bytes; as "
                        f"{env_name}... it is over the kernel's {MAX_ARG_STRLEN:,}-byte limit "
                        "for one environment string, so every command of its element would "
                        "fail (Argument list too long). Pass a path to a file that holds it",
                    )
                )
        packed = s.pack is not None and (s.pack.size == "auto" or int(s.pack.size) > 1)
        if not packed or len(problems) > before or not biggest:
            continue
        # quoting makes a value at most 5x longer (' -> '"'"'): quote only when that matters
        bound = LINE_OVERHEAD + sum(
            len(a) + ITEM_OVERHEAD + 5 * n + 2 for a, (n, _) in biggest.items()
        )
        if bound <= MAX_ARG_STRLEN:
            continue
        line = LINE_OVERHEAD + sum(
            len(a) + ITEM_OVERHEAD + max(map(_quoted_size, vals))
            for a, (_, vals) in biggest.items()
        )
        if line > MAX_ARG_STRLEN:
            problems.append(
                doc.problem(
                    ("steps", i, "pack"),
                    f"step {s.name!r}: a packed element's line can reach {line:,} bytes (its "
                    f"values, quoted), over the kernel's {MAX_ARG_STRLEN:,}-byte limit for "
                    "one argument; drop pack: for this step, or pass paths instead of values",
                )
            )
    return problems
