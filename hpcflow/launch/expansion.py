"""The expansion of a dynamic foreach (docs/dynamic.md): the producers' files -> the deferred
steps' plan, scripts and tasks files. Pure but for reading through the Runner, so the
hpcflow-expand job and the login node compute the same thing from the same files: job names,
array specs and dependencies come out identical, which is what lets either one adopt by name
what the other already submitted."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcflow.compile.plan import compile_plan
from hpcflow.errors import InvalidInput, Problem
from hpcflow.render.deferred import SPEC, SPEC_VERSION
from hpcflow.render.planfiles import plan_json, plan_text
from hpcflow.render.rendered import RenderedJob, RenderedRun
from hpcflow.render.scripts import render_run
from hpcflow.runners.base import FILE_LIMIT, Runner
from hpcflow.spec.dynamic import NONE
from hpcflow.spec.site import Site
from hpcflow.spec.validate import Loaded, check_each
from hpcflow.spec.valuefiles import MAX_CSV_BYTES, AxisProblem, values_from_text
from hpcflow.spec.workflow import Workflow
from hpcflow.states import DynamicState
from hpcflow.util.safeio import TooLarge
from hpcflow.util.yamlsafe import load_text

SUBMITTED = "dynamic/submitted.json"  # job name -> Slurm id, written by the expand job
EXPANDED = DynamicState.EXPANDED
SKIPPED = DynamicState.SKIPPED
FAILED = DynamicState.FAILED


@dataclass
class Expansion:
    outcome: DynamicState  # EXPANDED, SKIPPED (no values, or a producer skipped) or FAILED
    reason: str
    deferred: frozenset[str] = frozenset()
    rendered: RenderedRun | None = None
    values: dict[str, int] = field(default_factory=dict)  # "step.axis" -> values read

    def jobs(self) -> list[RenderedJob]:
        """The deferred steps' jobs, upstream first (the order sbatch needs)."""
        rr = self.rendered
        return [j for j in rr.jobs if j.step in self.deferred] if rr else []

    def steps(self) -> list[str]:
        return [n for n in self.rendered.plan.order if n in self.deferred] if self.rendered else []

    def files(self) -> dict[str, str]:
        """Only the deferred steps' files, and this expansion's plan: nothing of the steps
        submitted at first is written again."""
        rr = self.rendered
        if rr is None:
            return {}
        mine = tuple(f"scripts/{n}." for n in self.deferred)
        out = {k: v for k, v in rr.files.items() if k.startswith(mine)}
        jobs = self.jobs()
        out["dynamic/plan.json"] = json.dumps(plan_json(rr.plan, jobs), indent=2) + "\n"
        out["dynamic/plan.txt"] = plan_text(rr.plan, jobs)
        return out


SPEC_KEYS = {"version": int, "deferred": list, "workflow": dict, "axes": dict, "producers": dict,
             "max_elements": int, "run_dir": str, "workflow_path": str, "params": dict,
             "order": list, "max_array_size": int, "run_id": str}  # fmt: skip


def read_spec(runner: Runner, run_dir: str) -> dict[str, Any]:
    """The run's dynamic/spec.json; anything but hpcflow's own, whole file (missing,
    truncated, edited, a FIFO, a symlink out of the run) is InvalidInput with its line."""
    path = f"{run_dir}/{SPEC}"
    try:
        raw = runner.read_file(path, FILE_LIMIT, within=run_dir)
    except FileNotFoundError as e:
        raise InvalidInput([Problem(path, 1, "missing: the run directory is gone?")]) from e
    except OSError as e:
        raise InvalidInput([Problem(path, 1, str(e).removeprefix(f"{path}: "))]) from e
    try:
        spec = json.loads(raw)
    except (ValueError, RecursionError) as e:
        line = getattr(e, "lineno", 1)
        raise InvalidInput([Problem(path, line, f"not hpcflow's JSON (truncated?): {e}")]) from e
    if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION:
        got = spec.get("version") if isinstance(spec, dict) else type(spec).__name__
        raise InvalidInput([Problem(path, 1, f"written by another hpcflow ({got})")])
    bad = [k for k, t in SPEC_KEYS.items() if not isinstance(spec.get(k), t)]
    if bad:
        raise InvalidInput([Problem(path, 1, f"missing or malformed: {', '.join(bad)}")])
    return spec


def expand(runner: Runner, spec: dict[str, Any], site: Site | None) -> Expansion:
    """Read every producer's file and lay out the deferred steps; never raises for what the
    files hold: that is a FAILED expansion with ``FILE:LINE: message``."""
    try:
        return _expand(runner, spec, site)
    except (ValidationError, KeyError, TypeError, AttributeError) as e:  # an edited spec.json
        where = f"{spec.get('run_dir')}/{SPEC}:1"
        return Expansion(FAILED, f"{where}: malformed ({type(e).__name__}: {e})"[:2000])


def _expand(runner: Runner, spec: dict[str, Any], site: Site | None) -> Expansion:
    deferred = frozenset(spec["deferred"])
    wf = Workflow.model_validate(spec["workflow"])
    axes: dict[str, dict[str, list[Any]]] = {k: dict(v) for k, v in spec["axes"].items()}
    counts: dict[str, int] = {}
    for s in wf.steps:
        for axis, src in s.dynamic_axes.items():
            where = f"{spec['producers'][src.step]}/{src.file}"
            got = _read(runner, spec["run_dir"], spec["producers"][src.step], src.file,
                        src.column, spec["max_elements"])  # fmt: skip
            if isinstance(got, Expansion):
                return got
            if not got:
                return Expansion(SKIPPED, f"{where} holds no values: nothing to fan out over")
            axes[s.name][axis] = got
            counts[f"{s.name}.{axis}"] = len(got)
    total = sum(math.prod(len(v) for v in a.values()) if a else 1 for a in axes.values())
    if total > spec["max_elements"]:
        return Expansion(FAILED, (
            f"the expansion makes {total:,} elements, over the bound of "
            f"{spec['max_elements']:,} (site limits.max_elements or --max-elements at submit)"
        ), values=counts)  # fmt: skip
    doc = load_text(json.dumps(spec["workflow"], indent=1), f"{spec['run_dir']}/{SPEC}")
    path = Path(spec["workflow_path"])
    loaded = Loaded(wf, doc, path, spec["params"], axes, spec["order"], NONE, total)
    try:
        if problems := check_each(wf, doc, axes):
            raise InvalidInput(problems)
        plan = compile_plan(loaded, site, spec["max_array_size"], spec["run_id"], spec["run_dir"])
        rendered = render_run(plan, loaded, site)
    except InvalidInput as e:
        return Expansion(FAILED, "\n".join(str(p) for p in e.problems))
    except (ValidationError, ValueError) as e:
        return Expansion(FAILED, str(e))
    n = sum(plan.steps[d].n_elements for d in deferred)
    sizes = ", ".join(f"{k} {v}" for k, v in counts.items())
    return Expansion(EXPANDED, f"{n} elements ({sizes})", deferred, rendered, counts)


def _read(
    runner: Runner, run_dir: str, producer_dir: str, file: str, column: str | None, bound: int
) -> Any:
    path = f"{producer_dir}/{file}"
    marks = runner.read_files([f"{producer_dir}/.hpcflow/skipped"])
    if marks[f"{producer_dir}/.hpcflow/skipped"] is not None:
        return Expansion(SKIPPED, f"the producer was skipped ({producer_dir}): nothing to fan out")
    # a regular file under the run directory, its size checked before it is read
    try:
        raw = runner.read_file(path, MAX_CSV_BYTES, within=run_dir)
    except FileNotFoundError:
        return Expansion(FAILED, f"{path}:1: not found: the producer did not write {file}")
    except TooLarge:
        return Expansion(FAILED, f"{path}:1: over {MAX_CSV_BYTES // 2**20} MB; refused")
    except OSError as e:
        return Expansion(FAILED, f"{path}:1: {str(e).removeprefix(f'{path}: ')}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return Expansion(FAILED, f"{path}:{line}: not UTF-8 text")
    del raw  # the text alone is held while the values are read
    try:
        return values_from_text(text, column, path, max_values=bound)
    except AxisProblem as e:
        p = e.problem or Problem(path, 1, str(e))
        return Expansion(FAILED, str(p))
