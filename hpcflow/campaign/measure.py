"""What right-sizing reads (I/O; the decision is rightsize.py): the elements of the
campaign's finished batches, the out-of-memory and timeout floors of all its batches, and
what the workflow itself asks for each step."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.campaign.rightsize import Request, right_sized
from hpcflow.campaign.spec import LoadedCampaign
from hpcflow.errors import HpcflowError
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.spec.overrides import Overrides
from hpcflow.spec.sitefit import effective_resources
from hpcflow.spec.validate import Loaded
from hpcflow.store.db import session
from hpcflow.tracker.efficiency import Floors, StepEfficiency
from hpcflow.tracker.usage import collect_usage, element_uses, ran_out


def requests(loaded: Loaded, lc: LoadedCampaign) -> dict[str, Request]:
    site = lc.site
    out = {}
    for s in loaded.workflow.steps:
        r = effective_resources(loaded.workflow, s, site)  # step, workflow and site defaults
        part = site.partitions.get(r.partition or site.default_partition() or "")
        out[s.name] = Request(
            r.mem,
            r.time,
            part.mem if part else None,
            part.max_time if part else None,
        )
    return out


def next_sizes(
    engine: Engine, runner: Runner, lc: LoadedCampaign, finished: list[str], every: list[str],
    base: Loaded,
) -> tuple[Overrides | None, dict[str, dict[str, str]], list[str]]:  # fmt: skip
    """The overrides for the next batch, what they set per step, and the notes for its
    history. Usage sacct has not given yet for finished batches is collected first."""
    spec = lc.campaign.right_size
    if spec is None or not every:
        return None, {}, []
    if finished:
        try:
            with session(engine) as s:
                collect_usage(s.connection(), SlurmClient(runner), finished)
                s.commit()
        except HpcflowError:
            pass  # size from what is stored
    measured: dict[str, StepEfficiency] = {}
    floors: dict[str, Floors] = {}
    with session(engine) as s:
        db = s.connection()
        for rid in finished:
            for name, st in element_uses(db, rid).items():
                measured.setdefault(name, StepEfficiency()).elements.extend(st.elements)
        for rid in every:
            for name, f in ran_out(db, rid).items():
                _merge(floors.setdefault(name, Floors()), f)
    ov, sized, notes = right_sized(spec, measured, floors, requests(base, lc))
    return (ov if sized else None), sized, notes


def _merge(into: Floors, f: Floors) -> Any:
    into.oom += f.oom
    into.timeouts += f.timeouts
    into.mem_mb = max(into.mem_mb, f.mem_mb)
    into.time_s = max(into.time_s, f.time_s)
