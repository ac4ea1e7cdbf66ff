"""The cluster's limits on what a user may queue: MaxArraySize and MaxJobCount (`scontrol show
config`), the user's associations and QOS (`sacctmgr show assoc / qos -P`). Build and parse
are pure; ``cluster_limits`` asks Slurm at most once per site and time to live, caching the
answer in a 0600 file (docs/limits.md)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpcflow.errors import HpcflowError, SlurmUnavailable
from hpcflow.slurm.client import SlurmClient
from hpcflow.util.safeio import read_bounded

log = logging.getLogger(__name__)

ASSOC_FIELDS = ["Cluster", "Account", "User", "Partition", "MaxSubmit", "MaxJobs", "GrpSubmit",
                "GrpJobs", "QOS", "DefaultQOS"]  # fmt: skip
QOS_FIELDS = ["Name", "MaxSubmitPU", "MaxJobsPU", "GrpSubmit", "GrpJobs"]


def assoc_argv(user: str) -> list[str]:
    return ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}",
            "format=" + ",".join(ASSOC_FIELDS)]  # fmt: skip


def qos_argv() -> list[str]:
    return ["sacctmgr", "-n", "-P", "show", "qos", "format=" + ",".join(QOS_FIELDS)]


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None  # empty = no limit


@dataclass(frozen=True)
class Association:
    account: str
    partition: str = ""
    max_submit: int | None = None
    max_jobs: int | None = None
    grp_submit: int | None = None
    grp_jobs: int | None = None
    qos: tuple[str, ...] = ()
    default_qos: str = ""


@dataclass(frozen=True)
class Qos:
    name: str
    max_submit_pu: int | None = None
    max_jobs_pu: int | None = None
    grp_submit: int | None = None
    grp_jobs: int | None = None


def parse_assoc(text: str) -> list[Association]:
    out = []
    for line in text.splitlines():
        f = line.split("|")
        if len(f) < len(ASSOC_FIELDS):
            continue
        out.append(
            Association(
                account=f[1], partition=f[3], max_submit=_int(f[4]), max_jobs=_int(f[5]),
                grp_submit=_int(f[6]), grp_jobs=_int(f[7]),
                qos=tuple(q for q in f[8].split(",") if q), default_qos=f[9],
            )
        )  # fmt: skip
    return out


def parse_qos(text: str) -> dict[str, Qos]:
    out = {}
    for line in text.splitlines():
        f = line.split("|")
        if len(f) < len(QOS_FIELDS) or not f[0]:
            continue
        out[f[0]] = Qos(f[0], _int(f[1]), _int(f[2]), _int(f[3]), _int(f[4]))
    return out


@dataclass
class ClusterLimits:
    """What Slurm said, and when (epoch seconds)."""

    user: str
    max_array_size: int | None = None
    max_job_count: int | None = None
    cluster: str | None = None  # ClusterName
    assocs: list[Association] = field(default_factory=list)
    qos: dict[str, Qos] = field(default_factory=dict)
    fetched_at: float = 0.0
    errors: list[str] = field(default_factory=list)  # what could not be read, and why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClusterLimits:
        assocs = [Association(**{**a, "qos": tuple(a["qos"])}) for a in doc.get("assocs", [])]
        qos = {k: Qos(**v) for k, v in doc.get("qos", {}).items()}
        keep = {k: doc[k] for k in ("user", "max_array_size", "max_job_count", "fetched_at")}
        keep["cluster"] = doc.get("cluster")
        return cls(**keep, assocs=assocs, qos=qos, errors=list(doc.get("errors", [])))


@dataclass(frozen=True)
class SubmitLimit:
    """How many array tasks the user may have queued at once, and which limit says so."""

    limit: int | None
    source: str


def submit_limit(
    cl: ClusterLimits, account: str | None, qos: str | None, configured: int | None = None
) -> SubmitLimit:
    """The smallest of the association's MaxSubmit / GrpSubmit (the association of this
    account; a partition-less one), the QOS's MaxSubmitPU / GrpSubmit (the job's QOS, or the
    association's default), the site config's ``max_submit_jobs`` and MaxJobCount."""
    found: list[tuple[int, str]] = []
    assoc = next(
        (a for a in cl.assocs if a.account == account and not a.partition),
        next((a for a in cl.assocs if a.account == account), None),
    )
    if assoc is not None:
        for v, what in ((assoc.max_submit, "MaxSubmitJobs"), (assoc.grp_submit, "GrpSubmitJobs")):
            if v is not None:
                found.append((v, f"association {assoc.account} {what}"))
    name = qos or (assoc.default_qos if assoc else "") or "normal"
    q = cl.qos.get(name)
    if q is not None:
        for v, what in ((q.max_submit_pu, "MaxSubmitJobsPerUser"), (q.grp_submit, "GrpSubmitJobs")):
            if v is not None:
                found.append((v, f"QOS {name} {what}"))
    if configured:
        found.append((configured, "site limits.max_submit_jobs"))
    if cl.max_job_count:
        found.append((cl.max_job_count, "MaxJobCount (all users)"))
    if not found:
        return SubmitLimit(None, "no submit limit found")
    return SubmitLimit(*min(found))


# -- I/O: ask Slurm, cache the answer -----------------------------------------------------------


def cache_dir() -> Path:
    """Beside the tracker database when HPCFLOW_DB names one, else $XDG_CACHE_HOME/hpcflow."""
    if os.environ.get("HPCFLOW_CACHE"):
        return Path(os.environ["HPCFLOW_CACHE"]).expanduser()
    if os.environ.get("HPCFLOW_DB"):
        return Path(os.environ["HPCFLOW_DB"]).expanduser().parent / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "hpcflow"


def fetch(runner: Any, user: str) -> ClusterLimits:
    """Ask Slurm (three commands). What cannot be read is noted, not raised: a cluster without
    slurmdbd still has MaxArraySize."""
    cl = ClusterLimits(user=user, fetched_at=time.time())
    try:
        try:
            cfg = SlurmClient(runner).show_config()
            cl.max_array_size = _int(cfg.get("MaxArraySize", ""))
            cl.max_job_count = _int(cfg.get("MaxJobCount", ""))
            cl.cluster = cfg.get("ClusterName")
        except SlurmUnavailable as e:
            cl.errors.append(str(e)[:200])
        res = runner.run(assoc_argv(user), timeout=30)
        if res.ok:
            cl.assocs = parse_assoc(res.stdout)
        else:
            cl.errors.append(f"sacctmgr show assoc: {res.stderr.strip()[:200]}")
        res = runner.run(qos_argv(), timeout=30)
        if res.ok:
            cl.qos = parse_qos(res.stdout)
        else:
            cl.errors.append(f"sacctmgr show qos: {res.stderr.strip()[:200]}")
    except HpcflowError as e:
        cl.errors.append(str(e))
    return cl


def cluster_limits(runner: Any, site_name: str, user: str, ttl_s: float) -> ClusterLimits:
    """The cached limits for this site and user while younger than ``ttl_s``, else Slurm's
    (then cached, unless Slurm could not be asked at all)."""
    path = cache_dir() / f"limits-{site_name}-{user}.json"
    try:
        doc = json.loads(read_bounded(path, 1 << 20))
        cached = ClusterLimits.from_json(doc)
        if time.time() - cached.fetched_at < ttl_s:
            log.debug("limits: from %s (%.0f s old)", path, time.time() - cached.fetched_at)
            return cached
    except (OSError, ValueError, KeyError, TypeError):
        pass
    cl = fetch(runner, user)
    if cl.max_array_size is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cl.to_json(), f)
        os.replace(tmp, path)
    return cl
