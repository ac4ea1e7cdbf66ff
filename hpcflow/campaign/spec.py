"""Campaign files (shared/spec/campaign.md): the schema, loading, and the batch plan.

A campaign feeds one workflow batch after batch. The plan (which events go in which batch) is
computed once, stored in the tracker at the first tick, and never recomputed: later ticks
submit from the stored plan, so an edited file can never make an event run twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hpcflow.compile.plan import array_tasks, images_to_pull
from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.notify import NotifyEntry
from hpcflow.spec.overrides import Overrides
from hpcflow.spec.site import Site, load_site
from hpcflow.spec.units import Seconds
from hpcflow.spec.userconfig import notify_problems
from hpcflow.spec.validate import Loaded, load_workflow
from hpcflow.spec.valuefiles import AxisProblem, DuplicateValue, check_distinct, read_values
from hpcflow.spec.workflow import WORKFLOW_NAME, Strict
from hpcflow.util.pydantic_errors import load_model
from hpcflow.util.safeio import inside
from hpcflow.util.yamlsafe import Located


class EventSet(Strict):
    range: list[int] | None = Field(None, description="[first, last] inclusive integers")
    file: str | None = Field(None, description="CSV file (relative to the campaign file)")
    column: str | None = Field(None, description="the CSV column that identifies an event")
    values: list[int | str] | None = Field(None, description="an explicit list of events")

    @model_validator(mode="after")
    def _one(self) -> EventSet:
        given = [k for k in ("range", "file", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of range, file, values")
        if self.range is not None and (len(self.range) != 2 or self.range[0] > self.range[1]):
            raise ValueError("range is [first, last] with first <= last")
        if self.file is not None and not self.column:
            raise ValueError("file needs column: the CSV column that identifies an event")
        return self


PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


class RightSize(Strict):
    """Later batches' per-step memory and time from the finished batches' measurements
    (docs/campaigns.md#right-sizing)."""

    mem: Literal["p50", "p90", "p95", "p99", "max"] | None = Field(
        "p95", description="the percentile of measured peaks memory is sized from (null: off)"
    )
    time: Literal["p50", "p90", "p95", "p99", "max"] | None = Field(
        "p95", description="the percentile of elapsed times the time limit is sized from"
    )
    margin: str = Field("20%", description="headroom over the percentile, e.g. 20%")
    min_samples: int = Field(
        50, ge=1, le=1_000_000, description="completed elements of a step needed before sizing"
    )

    @field_validator("margin")
    @classmethod
    def _margin(cls, v: str) -> str:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", str(v))
        if not m or float(m.group(1)) > 1000:
            raise ValueError("margin is a percentage, e.g. 20%")
        return v

    @property
    def fraction(self) -> float:
        return float(self.margin.strip().rstrip("%")) / 100


class Campaign(Strict):
    name: str = Field(..., pattern=WORKFLOW_NAME, description="campaign name")
    description: str | None = Field(None, description="free text")
    workflow: str = Field(..., description="workflow file, relative to this file")
    site: str | None = Field(None, description="site name or path (default: --site)")
    events: EventSet = Field(..., description="the whole event set")
    batch_size: int = Field(..., ge=1, description="events per batch (one run per batch)")
    max_in_flight: int = Field(1, ge=1, description="batches pending or running at once")
    params: dict[str, Any] = Field(default_factory=dict, description="params for every batch")
    batch_param: str = Field(..., description="workflow param that receives the batch")
    batch_format: Literal["list", "range"] = Field(
        "list", description="the batch as a list of events, or {first, last} (ranges only)"
    )
    event_axis: str = Field(
        "event", description="the foreach axis whose value is the event (for per-event status)"
    )
    retry_failed: int = Field(0, ge=0, le=20, description="retry rounds for a failed batch")
    refusal_backoff: Seconds = Field(
        "5m",
        validate_default=True,
        description="wait after Slurm refuses a batch (doubles per refusal, max 1h)",
    )
    notify: list[NotifyEntry] = Field(
        default_factory=list,
        max_length=16,
        description="where tick digests and run ends go",
    )
    right_size: RightSize | None = Field(
        None, description="size later batches' memory and time from finished batches"
    )

    @model_validator(mode="after")
    def _format(self) -> Campaign:
        if self.batch_format == "range" and self.events.range is None:
            raise ValueError("batch_format: range needs events: {range: [first, last]}")
        return self


@dataclass
class LoadedCampaign:
    campaign: Campaign
    path: Path
    events: list[Any]
    site: Site
    workflow_path: Path
    batch_size: int  # effective: may be smaller than asked, to fit the site's max_submit_jobs
    jobs_per_batch: int
    note: str | None

    @property
    def name(self) -> str:
        return self.campaign.name

    def batches(self) -> list[list[Any]]:
        n = self.batch_size
        return [self.events[i : i + n] for i in range(0, len(self.events), n)]

    def plan_hash(self) -> str:
        doc = {"events": self.events, "batch_size": self.batch_size}
        return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()[:16]

    def batch_value(self, events: list[Any]) -> Any:
        if self.campaign.batch_format == "range":
            return {"first": events[0], "last": events[-1]}
        return list(events)

    def load_batch(self, events: list[Any], resources: Overrides | None = None) -> Loaded:
        return load_workflow(
            self.workflow_path,
            site=self.site,
            overrides={**self.campaign.params, self.campaign.batch_param: self.batch_value(events)},
            resources=resources,
        )


_CANONICAL_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
MAX_EVENTS = 2_000_000  # a campaign's events (docs/campaigns.md); the tracker keeps each


def _events(c: Campaign, base: Path, doc: Located) -> list[Any]:
    """The event set, each event once. CSV events stay text as written (``007``) unless
    every one is a plain decimal integer; a duplicate is reported at its own line."""
    ev = c.events
    if ev.range is not None:
        n = ev.range[1] - ev.range[0] + 1
        if n > MAX_EVENTS:  # before a list of them is made
            why = f"events: {n:,} events, over the bound of {MAX_EVENTS:,}; split the campaign"
            raise InvalidInput([doc.problem(("events", "range"), why)])
        return list(range(ev.range[0], ev.range[1] + 1))
    if ev.values is not None:
        try:
            check_distinct(ev.values)
        except DuplicateValue as e:
            where = ("events", "values", e.position)
            raise InvalidInput([doc.problem(where, f"events: {e}")]) from e
        return list(ev.values)
    assert ev.file is not None and ev.column is not None
    if not inside(base / ev.file, base):
        why = f"events: file {ev.file!r} is outside the campaign's folder {base}; copy it there"
        raise InvalidInput([doc.problem(("events", "file"), why)])
    try:
        raw = read_values(base / ev.file, ev.column, "events file", MAX_EVENTS)
    except AxisProblem as e:
        assert e.problem is not None
        raise InvalidInput([e.problem]) from e
    if all(_CANONICAL_INT.match(v) for v in raw):
        return [int(v) for v in raw]
    return raw


def load_campaign(path: str | Path, site_override: str | None = None) -> LoadedCampaign:
    p = Path(path)
    c, doc = load_model(p, Campaign, "a campaign file")
    base = p.resolve().parent
    try:
        events = _events(c, base, doc)
    except (OSError, ValueError, csv.Error) as e:
        raise InvalidInput([doc.problem(("events",), f"events: {e}")]) from e
    if not events:
        raise InvalidInput([doc.problem(("events",), "events: the event set is empty")])
    site_ref = c.site or site_override
    if not site_ref:
        raise InvalidInput([doc.problem(("name",), "no site: set site: or use --site")])
    if c.site and not ("/" in c.site or c.site.endswith((".yaml", ".yml"))):
        site = load_site(c.site)
    else:
        site = load_site(str(base / site_ref) if c.site else site_ref)
    if problems := notify_problems(c.notify, site.notify, doc):
        raise InvalidInput(problems)
    wf_path = base / c.workflow
    if not wf_path.is_file():
        raise InvalidInput([doc.problem(("workflow",), f"workflow file {wf_path} not found")])
    lc = LoadedCampaign(c, p, events, site, wf_path, c.batch_size, 0, None)
    first = lc.load_batch(events[: c.batch_size])  # checks the workflow with a real batch
    if c.event_axis not in {a for axes in first.axes.values() for a in axes}:
        raise InvalidInput(
            [doc.problem(("event_axis",), f"the workflow has no foreach axis {c.event_axis!r}")]
        )
    fit_batch_size(lc, first)
    return lc


def _jobs(loaded: Loaded, site: Site) -> int:
    """Slurm jobs a batch puts in the queue: every array task counts (MaxSubmitJobs); a
    packed step's tasks, not its elements."""
    n = sum(array_tasks(loaded, site).values())
    extra = (loaded.workflow.cleanup != "never") + bool(images_to_pull(loaded, site))
    return n + int(extra)


def fit_batch_size(lc: LoadedCampaign, first: Loaded) -> None:
    """Shrink the batch so that one batch stays under the site's max_submit_jobs."""
    limit = lc.site.limits.max_submit_jobs
    lc.jobs_per_batch = _jobs(first, lc.site)
    if not limit or lc.jobs_per_batch <= limit:
        return
    lo, hi = 0, lc.batch_size  # largest n with jobs(n) <= limit, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _jobs(lc.load_batch(lc.events[:mid]), lc.site) <= limit:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        one = _jobs(lc.load_batch(lc.events[:1]), lc.site)
        raise InvalidInput(
            [
                Problem(
                    str(lc.path),
                    1,
                    f"even one event makes {one} Slurm jobs, "
                    f"over the site's max_submit_jobs ({limit})",
                )
            ]
        )
    lc.note = (
        f"batch_size {lc.batch_size} would put {lc.jobs_per_batch} jobs in the queue, over "
        f"the site's max_submit_jobs ({limit}): batches of {lo} events instead"
    )
    lc.batch_size = lo
    lc.jobs_per_batch = _jobs(lc.load_batch(lc.events[:lo]), lc.site)
