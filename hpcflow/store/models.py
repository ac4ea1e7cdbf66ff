"""The tracker's tables (sqlmodel): runs, steps, jobs, tasks, events, campaigns, batches,
notices. Only the definitions: opening and migrating the database is store/db.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

MAX_ATTEMPTS = 10  # a notice's deliveries; then it is parked (docs/notify.md)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True, description="run id: <workflow>-YYYYMMDD-HHMM-xxxx")
    workflow: str = Field(index=True, description="workflow name")
    version: str | None = Field(default=None, description="workflow version")
    namespace: str | None = Field(default=None, index=True, description="workflow namespace")
    label: str | None = Field(default=None, description="--name given at submit")
    site: str = Field(description="site config path used")
    state: str = Field(index=True, description="run state")
    run_dir: str = Field(description="run directory on scratch")
    workflow_path: str = Field(description="workflow file submitted")
    params: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False), description="after --set"
    )
    submitted_at: datetime = Field(default_factory=utcnow, description="UTC")
    refreshed_at: datetime | None = Field(default=None, description="last Slurm refresh, UTC")
    finished_at: datetime | None = Field(default=None, description="when it became terminal")
    cancelled: bool = Field(default=False, description="cancelled by the user")
    faults: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="the site's node-fault policy at submit (FaultsCfg.policy); None: none",
    )
    nodes_avoided: list[dict[str, Any]] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="[{node, why, at}]: black holes this run's jobs exclude (docs/faults.md)",
    )
    degraded: str | None = Field(default=None, description="note when Slurm was degraded")
    poll_seconds: int | None = Field(
        default=None, description="its site's poll interval at submit (status without a sync)"
    )
    notify: list[dict[str, Any]] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="where its end is notified: the site's and workflow's targets (no secrets)",
    )


class StepRow(SQLModel, table=True):
    __tablename__ = "step"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    name: str
    position: int
    total: int = Field(description="number of elements")
    kind: str = Field(
        default="step", description="a states.StepKind value: step, cleanup, pull, expand"
    )
    role: str | None = Field(default=None, description="shown by status, e.g. compensation")
    compensation: bool = Field(
        default=False,
        description="runs only when its upstream failed (every dependency afternotok)",
    )
    may_skip: bool = Field(default=False, description="its elements may skip themselves")
    pack: int = Field(default=1, description="elements per array task (pack:)")
    parallel: int = Field(default=1, description="elements at once inside a packed task")
    reads_result: bool = Field(
        default=False,
        description="an element's own result.json decides its state when its task ends "
        "(packed, or an `each` upstream packed differently)",
    )
    policy: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="retry escalation: attempts, on_oom, on_timeout",
    )
    dynamic: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="a step laid out at run time (docs/dynamic.md): state waiting, expanded, "
        "skipped or failed; its producers; the reason",
    )


class Job(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    step: str
    job_index: int
    chunk: int
    name: str = Field(description="Slurm job name (carries the run id)")
    slurm_job_id: str | None = Field(default=None, index=True, description="set once submitted")
    array: str | None = Field(default=None, description="--array spec")
    dependency: str | None = Field(default=None, description="--dependency given")
    status: str = Field(default="PLANNED", description="a states.JobStatus value")
    attempt: int = Field(default=0, description="0 = first submission, n = n-th retry")
    submitted_at: datetime | None = Field(default=None, description="when sbatch answered")
    extra: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="extra sbatch flags (retry overrides)",
    )
    script: str = Field(default="", description="the step's script in the run directory")
    tasks: str = Field(default="", description="this job's tasks file")
    output: str = Field(default="", description="Slurm --output pattern")
    deps: list[list[Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="[[kind, job row id], ...] upstream",
    )
    retry_of: int | None = Field(default=None, description="the first-attempt job it retries")
    cpus: int | None = Field(default=None, description="CPUs per task asked for")
    mem_mb: int | None = Field(default=None, description="--mem asked for (None: Slurm's default)")
    time_s: int | None = Field(default=None, description="--time asked for (None: the default)")
    gpus: int | None = Field(default=None, description="GPUs per node asked for")
    usage_done: bool = Field(
        default=False, description="its elements' usage was asked of sacct (once, at its end)"
    )


class Task(SQLModel, table=True):
    # a step's elements in order, a page at a time (the dashboard): an index, not a sort
    __table_args__ = (Index("ix_task_run_step_index", "run_id", "step", "index"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    step: str = Field(index=True)
    index: int = Field(description="element index within the step")
    job_id: int = Field(foreign_key="job.id", index=True)
    task_id: int | None = Field(default=None, description="array task id, None for a plain job")
    item: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False), description="axis values"
    )
    state: str = Field(default="PENDING", index=True)
    exit_code: int | None = None
    attempts: int = 0
    start: str | None = None
    end: str | None = None
    node: str | None = None
    reason: str | None = None
    result: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="its .hpcflow/result.json, read once when it ended",
    )
    outputs: Any = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="its outputs.json (at most 64 KiB), read once when it ended",
    )
    usage: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="what sacct accounted for it (usage.Usage.as_json), once its chunk ended",
    )
    node_retries: int = Field(
        default=0, description="times hpcflow resubmitted it for a node's fault"
    )
    absent_at: str | None = Field(
        default=None,
        description="when a refresh asked Slurm about it by task id and neither sacct nor "
        "squeue knew it (UTC); cleared when it shows. Missing twice: its job is asked whole",
    )


class Event(SQLModel, table=True):
    # history in time order, a page at a time (`history`, the dashboard): an index, not a sort
    __table_args__ = (Index("ix_event_run_time", "run_id", "time", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    time: datetime = Field(default_factory=utcnow)
    kind: str = Field(default="TASK", description="a states.EventKind value")
    step: str | None = None
    index: int | None = None
    old_state: str | None = None
    new_state: str | None = Field(default=None, description="the state moved to (moves only)")
    slurm_job_id: str | None = None
    exit_code: int | None = None
    reason: str | None = None


class CampaignRow(SQLModel, table=True):
    __tablename__ = "campaign"
    name: str = Field(primary_key=True, description="campaign name")
    file: str = Field(description="campaign file it was first ticked from")
    plan_hash: str = Field(description="hash of the event set and batch plan")
    created_at: datetime = Field(default_factory=utcnow)
    backoff_until: datetime | None = Field(default=None, description="no submission before")
    refusals: int = Field(default=0, description="consecutive refused submissions")
    note: str | None = Field(default=None, description="last tick's note")
    event_axis: str = Field(
        default="event", description="the campaign file's event_axis, as of the last tick"
    )
    retry_failed: int = Field(
        default=0, description="the campaign file's retry_failed, as of the last tick"
    )


class Notice(SQLModel, table=True):
    """A notification to deliver (docs/notify.md): queued once, retried on later syncs."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, description="what it is about, once: run_end:<run>:<n>, ...")
    target: dict[str, Any] = Field(
        sa_column=Column(JSON, nullable=False), description="NotifyTarget (names, no secrets)"
    )
    payload: dict[str, Any] = Field(
        sa_column=Column(JSON, nullable=False), description="the JSON document sent"
    )
    created_at: datetime = Field(default_factory=utcnow)
    attempts: int = Field(default=0, description="deliveries tried")
    delivered_at: datetime | None = Field(default=None, description="when it was accepted")
    error: str | None = Field(default=None, description="why the last delivery failed")


class BatchRow(SQLModel, table=True):
    __tablename__ = "batch"
    id: int | None = Field(default=None, primary_key=True)
    campaign: str = Field(index=True, foreign_key="campaign.name")
    index: int = Field(description="batch number, 0-based")
    key: str = Field(unique=True, description="idempotency key <campaign>#<index>")
    events: list[Any] = Field(sa_column=Column(JSON, nullable=False), description="its events")
    n_events: int
    state: str = Field(default="WAITING", description="a states.BatchState value")
    attempt: int = Field(default=0, description="submissions tried (label <key>#<attempt>)")
    run_id: str | None = Field(default=None, index=True, description="the batch's run")
    retries: int = Field(default=0, description="`retry_failed` rounds used")
    submitted_at: datetime | None = None
    note: str | None = None
    resources: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="step -> {mem, time} that right_size set for this batch",
    )
