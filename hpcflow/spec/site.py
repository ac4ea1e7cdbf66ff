"""Site configs: one YAML per cluster (see docs/site-configs.md)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from hpcflow import resources_dir
from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.notify import NotifyTarget
from hpcflow.spec.units import MB, JobTime, Seconds, SecondsOrZero
from hpcflow.spec.workflow import STEP_NAME, Resources, Strict
from hpcflow.util.names import check_env_name, check_sbatch_extra, sbatch_word
from hpcflow.util.pydantic_errors import load_model


def _user() -> str:
    return os.environ.get("USER") or getpass.getuser()


class Login(Strict):
    host: str | None = Field(None, description="login host; null = run Slurm commands locally")
    user: str | None = Field(None, description="SSH user (default: local user)")
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    key: str | None = Field(None, description="private key file; default agent / ~/.ssh")
    known_hosts: str = Field("~/.ssh/known_hosts", description="verified host keys")


class Partition(Strict):
    default: bool = Field(False, description="used when a step names no partition")
    max_time: JobTime | None = Field(None, description="partition time limit, seconds")
    gpus: int = Field(0, ge=0, le=65535, description="GPUs per node (0 = no GPUs)")
    cpus: int | None = Field(None, ge=1, le=65535, description="CPUs per node, if known")
    mem: MB | None = Field(None, description="memory per node in MB (the file says 256G), if known")

    gpu_type: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$", description="GPU model, if any"
    )


class Limits(Strict):
    max_array_size: int | None = Field(None, ge=2, description="null = ask scontrol")
    max_submit_jobs: int | None = Field(
        None, ge=1, description="array tasks you may have queued at once (MaxSubmitJobs)"
    )
    min_task_time: Seconds = Field(
        "5m",
        validate_default=True,
        description="pack: auto packs short elements into array tasks at least this long",
    )
    cache_ttl: Seconds = Field(
        "1h",
        validate_default=True,
        description="how long the limits read from Slurm (scontrol, sacctmgr) are reused",
    )
    max_elements: int = Field(
        2_000_000, ge=1, description="refuse workflows that expand to more elements than this"
    )
    max_sbatch_calls: int = Field(
        1000,
        ge=1,
        description="sbatch calls one run may need (one per step and chunk of MaxArraySize "
        "tasks); over it, validate says it does not fit and suggests pack:",
    )


class Paths(Strict):
    scratch: str = Field("/tmp/hpcflow-scratch/{user}", description="shared scratch root")
    results: str | None = Field(None, description="persistent results directory")

    @field_validator("scratch", "results")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        # a relative path would be resolved against wherever each command and each job
        # happens to start: the login node and the compute nodes would see different places
        if v is not None and not v.startswith(("/", "~/")) and v != "~":
            raise ValueError(
                f"{v!r} is a relative path: give an absolute path on the shared filesystem "
                "(e.g. /lustre/scratch/{user}), the same on the login and compute nodes"
            )
        return v


class Lustre(Strict):
    stripe_count: int | None = Field(None, description="lfs setstripe -c N on run dirs")


class Containers(Strict):
    runtime: Literal["apptainer", "singularity", "charliecloud", "none"] = Field(
        "apptainer", description="container runtime"
    )
    image_cache: str = Field("{scratch}/images", description="where pulled images live")
    binds: list[str] = Field(default_factory=list, description="extra binds src[:dst[:opts]]")
    gpu_flag: str = Field("--nv", description="runtime flag for GPU steps")
    pull: Literal["job", "login"] = Field(
        "job", description="pull remote images in a job the steps depend on, or on the login node"
    )
    credentials: str | None = Field(
        None, description="registry credentials file (mode 0600): NAME=value lines"
    )

    @field_validator("binds")
    @classmethod
    def _binds(cls, v: list[str]) -> list[str]:
        from hpcflow.containers.runtimes import Bind

        for b in v:
            Bind.parse(b)
        return v


class TrackerCfg(Strict):
    poll_interval: SecondsOrZero = Field(
        "60s",
        validate_default=True,
        description="min time between sacct queries for this site's runs (all of them)",
    )
    lost_after: Seconds = Field(
        "5m", validate_default=True, description="grace before an unseen job is LOST"
    )
    submit_timeout: Seconds = Field(
        "60s", validate_default=True, description="how long one sbatch may take"
    )


class BlackHoleCfg(Strict):
    min_failures: int = Field(
        5, ge=1, le=100_000, description="fast failures on one node before it is suspected"
    )
    within: Seconds = Field(
        "60s", validate_default=True, description="a failure this soon after the start is fast"
    )
    min_share: float = Field(
        0.5, gt=0, le=1, description="share of the node's decided elements that failed fast"
    )
    others_max_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="the other nodes failed fast at most this share of their decided elements "
        "(more: the workflow fails, not a node)",
    )
    min_others: int = Field(
        5, ge=1, le=100_000, description="decided elements on the other nodes to compare with"
    )


class FaultsCfg(Strict):
    node_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="times one element is resubmitted for a node's fault (NODE_FAIL that "
        "Slurm did not requeue, or a fast failure on a black hole, which is excluded)",
    )
    black_hole: BlackHoleCfg | None = Field(
        default_factory=BlackHoleCfg,
        description="when a node counts as a black hole (docs/faults.md); null: never",
    )

    def policy(self) -> dict[str, Any]:
        """As the tracker stores it with each step (the decision reads it, docs/faults.md)."""
        bh = self.black_hole
        rule = None if bh is None else {
            "min_failures": bh.min_failures, "within_s": bh.within, "min_share": bh.min_share,
            "others_max_share": bh.others_max_share, "min_others": bh.min_others,
        }  # fmt: skip
        return {"retries": self.node_retries, "black_hole": rule}


class DynamicCfg(Strict):
    expand_in: Literal["login", "job"] = Field(
        "login",
        description="where a dynamic foreach is expanded: job = the hpcflow-expand job submits "
        "the arrays itself (the site allows sbatch from compute nodes); login = the next "
        "hpcflow sync on the login node does (docs/dynamic.md)",
    )
    hpcflow_python: str | None = Field(
        None,
        description="python with hpcflow installed as compute nodes see it (expand_in: job); "
        "default: the python that submits (required when submitting over SSH)",
    )

    @field_validator("hpcflow_python")
    @classmethod
    def _py(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or any(c in v for c in " \t\n'\"$`;&|")):
            raise ValueError("hpcflow_python must be an absolute path without spaces or quotes")
        return v


class Site(Strict):
    name: str = Field(..., pattern=STEP_NAME, description="site name")
    description: str | None = Field(None, description="free text")
    scheduler: Literal["slurm"] = Field("slurm", description="only slurm")
    account: str | None = Field(None, description="default --account")
    login: Login = Field(default_factory=Login, description="where Slurm commands run")
    partitions: dict[str, Partition] = Field(default_factory=dict, description="partitions")
    limits: Limits = Field(default_factory=Limits, description="cluster limits")
    paths: Paths = Field(default_factory=Paths, description="scratch and results")
    lustre: Lustre = Field(default_factory=Lustre, description="Lustre striping")
    containers: Containers = Field(default_factory=Containers, description="container runtime")
    modules: list[str] = Field(default_factory=list, description="module load lines")
    env: dict[str, str | int | float | bool] = Field(default_factory=dict, description="job env")
    sbatch_extra: list[str] = Field(default_factory=list, description="extra #SBATCH flags")
    tracker: TrackerCfg = Field(default_factory=TrackerCfg, description="tracker settings")
    faults: FaultsCfg = Field(
        default_factory=FaultsCfg, description="node faults: retries, black holes (docs/faults.md)"
    )
    job_templates: str | None = Field(None, description="directory of the site's own templates")
    defaults: Resources = Field(
        default_factory=Resources, description="resources every step gets unless it says"
    )
    notify: list[NotifyTarget] = Field(
        default_factory=list, max_length=16, description="notify targets for every run of this site"
    )
    dynamic: DynamicCfg = Field(
        default_factory=DynamicCfg, description="dynamic foreach expansion (docs/dynamic.md)"
    )
    python: str = Field(
        "python3",
        min_length=1,
        description="python (3.7+) on compute nodes, for when/outputs/manifests/FFRD configs",
    )

    @field_validator("sbatch_extra")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        return [check_sbatch_extra(flag) for flag in v]

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            check_env_name(k)
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        return None if v is None else sbatch_word(v, "account")

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, v: dict[str, Partition]) -> dict[str, Partition]:
        for name in v:
            sbatch_word(name, "partition name")
        return v

    # -- derived values ----------------------------------------------------------------
    @property
    def source(self) -> str:
        return getattr(self, "_source", self.name)

    def expand(self, template: str) -> str:
        s = template.replace("{user}", _user())
        s = s.replace("{scratch}", self.scratch_root())
        return os.path.expanduser(s)

    def templates_dir(self) -> Path | None:
        """The site's own job_templates directory (relative to the site file), or None."""
        if not self.job_templates:
            return None
        base = Path(self.source).parent if self.source.endswith((".yaml", ".yml")) else Path()
        return (base / self.expand(self.job_templates)).resolve()

    def scratch_root(self) -> str:
        return os.path.expanduser(self.paths.scratch.replace("{user}", _user()))

    def default_partition(self) -> str | None:
        for name, p in self.partitions.items():
            if p.default:
                return name
        return None

    def poll_seconds(self) -> int:
        return self.tracker.poll_interval


def site_search_dirs() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [Path(xdg) / "hpcflow" / "sites", resources_dir("site_configs")]


def find_site(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if p.is_file():
            return p
        raise InvalidInput([Problem(str(p), 1, "site config file not found")])
    for d in site_search_dirs():
        for ext in (".yaml", ".yml"):
            cand = d / f"{name_or_path}{ext}"
            if cand.is_file():
                return cand
    known = ", ".join(sorted(list_sites())) or "none"
    raise InvalidInput(
        [
            Problem(
                name_or_path,
                1,
                f"no site config named {name_or_path!r} "
                f"(known: {known}; or give a path; see `hpcflow sites list`)",
            )
        ]
    )


def list_sites() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(site_search_dirs()):
        if d.is_dir():
            for f in sorted(d.glob("*.y*ml")):
                found[f.stem] = f
    return found


def load_site(name_or_path: str) -> Site:
    path = find_site(name_or_path)
    site, doc = load_model(path, Site, "a site config")
    problems = []
    if site.partitions and sum(p.default for p in site.partitions.values()) > 1:
        problems.append(doc.problem(("partitions",), "more than one partition is default: true"))
    object.__setattr__(site, "_source", str(path))
    tdir = site.templates_dir()
    if tdir is not None and not tdir.is_dir():
        why = "does not exist" if not tdir.exists() else "is not a directory"
        problems.append(
            doc.problem(
                ("job_templates",),
                f"job_templates: {tdir} {why}; give the directory of the site's templates "
                "(relative to this file), or drop the key to use hpcflow's own",
            )
        )
    if problems:
        raise InvalidInput(problems)
    return site
