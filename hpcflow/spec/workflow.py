"""The workflow file's schema. Pydantic models are the contract (see docs/workflow-format.md)."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hpcflow.spec.notify import NotifyEntry
from hpcflow.spec.units import MB, JobTime, SecondsOrZero
from hpcflow.util.names import check_env_name, is_ident, sbatch_word

WORKFLOW_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
STEP_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
AfterKind = Literal["ok", "any", "notok", "each"]
Scalar = str | int | float | bool


def _takes(t: Any, kinds: tuple[Any, ...]) -> bool:
    return t in kinds or any(_takes(a, kinds) for a in get_args(t))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        """pydantic takes `cpus: true` as 1: a yes/no where a number goes is refused."""
        if isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v)):
            t = cls.model_fields[info.field_name].annotation if info.field_name else None
            if not _takes(t, (bool, Any)) and _takes(t, (int, float)):
                shown = json.dumps(v)  # as YAML writes it: true, [1, true]
                raise ValueError(f"{shown} is a yes/no value where a number goes; write a number")
        return v


class Resources(Strict):
    cpus: int | None = Field(None, ge=1, le=65535, description="CPUs per task (--cpus-per-task)")
    mem: MB | None = Field(None, description="memory per job in MB; the file says 512M, 6G (--mem)")
    gpus: int | None = Field(
        None, ge=0, le=65535, description="GPUs per node (--gres=gpu[:type]:N is per node)"
    )
    gpu_type: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$", description="GPU model"
    )
    time: JobTime | None = Field(
        None,
        description="wall time in seconds; the file says 90s, 20m, 1h30m, 2-00:00:00 "
        "(a bare number is refused)",
    )
    nodes: int | None = Field(None, ge=1, le=1_000_000, description="nodes per job (--nodes)")
    partition: str | None = Field(None, description="Slurm partition (--partition)")
    account: str | None = Field(None, description="Slurm account (--account)")
    qos: str | None = Field(None, description="Slurm QOS (--qos)")
    constraint: str | None = Field(None, description="node features (--constraint)")

    @field_validator("partition", "account", "qos")
    @classmethod
    def _word(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else sbatch_word(v, info.field_name)

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, v: str | None) -> str | None:
        return None if v is None else sbatch_word(v, "constraint", constraint=True)


class OnOom(Strict):
    mem_factor: float = Field(2.0, gt=1.0, description="multiply --mem by this on resubmission")


class OnTimeout(Strict):
    time_factor: float = Field(1.5, gt=1.0, description="multiply --time by this")


class Retry(Strict):
    attempts: int = Field(1, ge=1, le=100, description="total tries of the command in the job")
    backoff: SecondsOrZero = Field(0, description="wait before the 2nd try, seconds (a duration)")
    factor: float = Field(2.0, ge=1.0, description="backoff multiplier per further try")
    max_backoff: SecondsOrZero = Field(
        "10m", validate_default=True, description="cap on the wait between tries (0 = none)"
    )
    exit_codes: list[int] | None = Field(None, description="retry only these exit codes")
    never: list[int] = Field(default_factory=list, description="exit codes never retried")
    on_oom: OnOom | None = Field(None, description="resubmit OUT_OF_MEMORY elements, more mem")
    on_timeout: OnTimeout | None = Field(None, description="resubmit TIMEOUT elements, more time")


class PackSpec(Strict):
    size: int | Literal["auto"] = Field(
        "auto", description="elements per array task, or auto (site limits, min_task_time)"
    )
    parallel: int = Field(1, ge=1, le=1024, description="elements run at once inside a task")

    @field_validator("size")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if v != "auto" and (not isinstance(v, int) or v < 1 or v > 1_000_000):
            raise ValueError("pack size must be a whole number from 1 to 1000000, or auto")
        return v

    @model_validator(mode="after")
    def _fits(self) -> PackSpec:
        if self.size != "auto" and self.parallel > self.size:
            raise ValueError(
                f"pack parallel ({self.parallel}) is larger than size ({self.size}): "
                "a task cannot run more elements at once than it holds"
            )
        return self


class Container(Strict):
    image: str = Field(..., min_length=1, description="docker://, oras://, library://, .sif, dir")


class Ffrd(Strict):
    """Run a USACE Cloud Compute style plugin container (docs/ffrd.md)."""

    payload: str | None = Field(
        None,
        description="payload file (relative to the workflow), placed at "
        "$FSB_ROOT_PATH/$CC_PAYLOAD_ID/payload",
    )
    payload_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="default: the step name"
    )
    event: str | int | None = Field(
        None, description="CC_EVENT_IDENTIFIER/NUMBER (template); default item.event, else index+1"
    )
    config: str | None = Field(
        None, description="JSON config file (relative to the workflow); {ENV::X} substituted"
    )
    config_via: Literal["argv", "stdin", "file"] = Field(
        "argv", description="give the config as the first argument, on stdin, or as a file only"
    )
    writable: list[str] = Field(
        default_factory=list, description="paths inside the image that must be writable"
    )

    @field_validator("writable")
    @classmethod
    def _writable(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.startswith("/") or ".." in p.split("/") or any(c in p for c in ":,\n\0 "):
                raise ValueError(f"writable path {p!r} must be absolute, without .. : , or spaces")
        return v


class FromOutput(Strict):
    """An axis whose values an upstream step writes at run time (docs/dynamic.md)."""

    step: str = Field(..., pattern=STEP_NAME, description="the producer: a step without foreach")
    file: str = Field(
        ..., min_length=1, description="file in the producer's element directory (relative)"
    )
    column: str | None = Field(None, description="CSV column (the file has a header)")

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        parts = v.split("/")
        if v.startswith("/") or ".." in parts or any(ord(c) < 32 for c in v) or "\\" in v:
            raise ValueError(f"file {v!r} must be relative to the producer's directory, without ..")
        return v


class AxisSource(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    range: list[Any] | None = Field(
        None, description="[start, stop, stride?] inclusive: whole numbers or templates"
    )
    values: list[Any] | str | None = Field(None, description="explicit values, or a template")
    file: str | None = Field(None, description="CSV or one-value-per-line file")
    column: str | None = Field(None, description="CSV column (file must have a header)")
    from_: FromOutput | None = Field(
        None, alias="from", description="values written by an upstream step, read at run time"
    )

    @model_validator(mode="after")
    def _one_source(self) -> AxisSource:
        given = [k for k in ("range", "values", "file", "from_") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of range, values, file, from")
        if self.column is not None and self.file is None:
            raise ValueError("column goes with file")
        if self.range is not None and len(self.range) not in (2, 3):
            raise ValueError("range is [start, stop] or [start, stop, stride]")
        return self


def _after_as_mapping(v: Any) -> Any:
    if v is None:
        return {}
    if isinstance(v, str):
        return {v: "ok"}
    if isinstance(v, list):
        return {x: "ok" for x in v} if all(isinstance(x, str) for x in v) else v
    return v


def _env_names(v: dict[str, Scalar]) -> dict[str, Scalar]:
    for k in v:
        check_env_name(k)
    return v


class StepDefaults(Strict):
    resources: Resources = Field(default_factory=Resources, description="default resources")
    env: dict[str, Scalar] = Field(default_factory=dict, description="default environment")
    retry: Retry | None = Field(None, description="default retry policy")
    throttle: int | None = Field(None, ge=1, le=10_000_000, description="default array throttle")
    container: str | None = Field(None, description="default container name")

    _env = field_validator("env")(_env_names)


class Step(Strict):
    name: str = Field(..., pattern=STEP_NAME, description="unique step name")
    run: str = Field(..., min_length=1, description="shell command(s); a Jinja template")
    foreach: dict[str, AxisSource] | None = Field(None, description="axes -> cartesian product")
    after: dict[str, AfterKind] = Field(default_factory=dict, description="upstream steps")
    container: str | Container | None = Field(None, description="container name or inline")
    env: dict[str, Scalar] = Field(default_factory=dict, description="extra environment")
    resources: Resources = Field(default_factory=Resources, description="Slurm resources")
    throttle: int | None = Field(None, ge=1, le=10_000_000, description="max running elements (%N)")
    retry: Retry | None = Field(None, description="in-job retry policy")
    when: str | None = Field(
        None, description="condition evaluated when the element starts, or `always`"
    )
    outputs: list[str] = Field(
        default_factory=list, description="globs (relative to task_dir) copied to results"
    )
    ffrd: Ffrd | None = Field(None, description="FFRD / Cloud Compute plugin mode")
    pack: PackSpec | None = Field(
        None, description="elements per array task: N, auto, or {size: N|auto, parallel: k}"
    )

    _norm_after = field_validator("after", mode="before")(_after_as_mapping)

    @property
    def dynamic_axes(self) -> dict[str, FromOutput]:
        """Axes whose values an upstream step writes at run time."""
        return {a: src.from_ for a, src in (self.foreach or {}).items() if src.from_}

    @field_validator("foreach")
    @classmethod
    def _axes(cls, v: dict[str, AxisSource] | None) -> dict[str, AxisSource] | None:
        if v is not None:
            if not v:
                raise ValueError("foreach is empty: give at least one axis")
            for axis in v:
                if not is_ident(axis):
                    raise ValueError(
                        f"axis name {axis!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)"
                    )
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: list[str]) -> list[str]:
        for g in v:
            parts = g.split("/")
            if not g or g.startswith("/") or ".." in parts or any(ord(c) < 32 for c in g):
                raise ValueError(
                    f"output glob {g!r} must be relative to the element's directory, without .."
                )
        return v

    _env = field_validator("env")(_env_names)

    @field_validator("pack", mode="before")
    @classmethod
    def _pack(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("pack must be a whole number, auto, or {size: N, parallel: k}")
        if isinstance(v, int):
            return {"size": v}
        if v == "auto":
            return {"size": "auto"}
        return v


class Workflow(Strict):
    name: str = Field(..., pattern=WORKFLOW_NAME, description="workflow name")
    version: str | None = Field(None, description="workflow version, recorded with every run")
    namespace: str | None = Field(None, pattern=WORKFLOW_NAME, description="grouping for runs")
    description: str | None = Field(None, description="free text")
    params: dict[str, Any] = Field(default_factory=dict, description="parameters (--set)")
    containers: dict[str, Container] = Field(default_factory=dict, description="named images")
    defaults: StepDefaults = Field(default_factory=StepDefaults, description="step defaults")
    notify: list[NotifyEntry] = Field(
        default_factory=list,
        max_length=16,
        description="where run ends go (with the site's)",
    )
    steps: list[Step] = Field(..., min_length=1, description="the steps, a DAG via after")
    cleanup: Literal["on_success", "always", "never"] = Field(
        "never", description="remove the run's scratch when the run ends (a final job)"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if not is_ident(k):
                raise ValueError(f"parameter name {k!r} must be an identifier")
        return v
