"""Resource overrides: a YAML file of per-step resources that `submit`, `validate` and
`render --overrides FILE` apply over the workflow's (docs/efficiency.md#overrides).
`hpcflow efficiency RUN --write-overrides FILE` writes one from its suggestions.

    # hpcflow efficiency hms-20261206-1012-ab12 --write-overrides
    steps:
      hms:
        resources: {mem: 1600M, time: 15m}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from hpcflow.errors import Problem
from hpcflow.spec.units import MB, JobTime
from hpcflow.spec.workflow import Strict, Workflow
from hpcflow.util.names import did_you_mean
from hpcflow.util.pydantic_errors import load_model
from hpcflow.util.yamlsafe import Located


class ResourceOverride(Strict):
    mem: MB | None = Field(None, description="memory per element in MB, e.g. 1600M (--mem)")
    time: JobTime | None = Field(None, description="wall time per element, e.g. 15m (--time)")
    cpus: int | None = Field(None, ge=1, le=65535, description="CPUs per element")
    gpus: int | None = Field(None, ge=0, le=65535, description="GPUs per element")


class StepOverride(Strict):
    resources: ResourceOverride = Field(description="replaces these fields of the step's")


class Overrides(Strict):
    steps: dict[str, StepOverride] = Field(
        default_factory=dict, description="step name -> what to override"
    )


def load_overrides(path: str | Path) -> tuple[Overrides, Located]:
    return load_model(path, Overrides, "an overrides file")


def apply_overrides(
    wf: Workflow, ov: Overrides, doc: Located | None = None
) -> tuple[Workflow, list[Problem]]:
    """The workflow with each named step's resources replaced field by field; a step the
    workflow does not have is a problem at its line in the overrides file."""
    names = [s.name for s in wf.steps]
    problems = []
    for name in ov.steps:
        if name not in names:
            why = f"the workflow has no step {name!r}" + did_you_mean(name, set(names))
            problems.append(doc.problem(("steps", name), why) if doc else Problem("", 1, why))
    steps = []
    for s in wf.steps:
        o = ov.steps.get(s.name)
        if o is None:
            steps.append(s)
            continue
        # the typed values (MB, seconds), not a dump's text: model_copy does not validate
        r = o.resources
        update = {k: v for k in type(r).model_fields if (v := getattr(r, k)) is not None}
        steps.append(s.model_copy(update={"resources": s.resources.model_copy(update=update)}))
    return wf.model_copy(update={"steps": steps}), problems


def apply_file(
    wf: Workflow, path: str | Path | Overrides, problems: list[Problem]
) -> tuple[Workflow, list[Problem]]:
    """``wf`` with the overrides (a file, or already made: right-sizing) applied; their
    problems after ``problems``."""
    if isinstance(path, Overrides):
        wf, more = apply_overrides(wf, path)
    else:
        wf, more = apply_overrides(wf, *load_overrides(path))
    return wf, problems + more


def overrides_yaml(doc: dict[str, Any]) -> str:
    """An efficiency document's suggestions as an overrides file (mem and time per step)."""
    lines = [f"# hpcflow efficiency {doc['run_id']} --write-overrides", "steps:"]
    for name, st in doc["steps"].items():
        sug = {k: v for k, v in st.get("suggest", {}).items() if k in ("mem", "time")}
        if not sug:
            continue
        why = st["suggest"].get("why", {})
        note = "; ".join(f"{k}: {v}" for k, v in why.items())
        lines.append(f"  {name}:{'  # ' + note if note else ''}")
        fields = ", ".join(f"{k}: {v}" for k, v in sug.items())
        lines.append(f"    resources: {{{fields}}}")
    if len(lines) == 2:
        lines[1] = "steps: {}  # nothing measured yet"
    return "\n".join(lines) + "\n"
