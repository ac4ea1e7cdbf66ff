"""Slurm commands: pure functions that build argv lists and parse output. No I/O here."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from datetime import datetime

# JobName is the only free-text field; it stays third so a '|' in it can be rejoined.
SACCT_FIELDS = [
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "Start",
    "End",
    "NodeList",
    "Reason",
    "MaxRSS",
    "ReqMem",
]
SQUEUE_FORMAT = "%i|%T|%r"
# the commands hpcflow runs (a cron line puts their directories on its PATH)
SLURM_TOOLS = ("sbatch", "sacct", "squeue", "scancel", "scontrol", "sacctmgr")


def sbatch_argv(
    script: str,
    args: list[str],
    *,
    job_name: str,
    output: str,
    array: str | None = None,
    dependency: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name}",
        f"--output={output}",
        "--open-mode=append",
        "--kill-on-invalid-dep=yes",
    ]
    if array:
        argv.append(f"--array={array}")
    if dependency:
        argv.append(f"--dependency={dependency}")
    argv += extra or []
    return argv + [script, *args]


def parse_sbatch(stdout: str) -> str:
    """``--parsable`` prints 'jobid' or 'jobid;cluster'."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"unexpected sbatch output: {stdout.strip()!r}")
    return job_id


def dependency_string(deps: list[tuple[str, str]]) -> str | None:
    """[(kind, jobid)] -> 'afterok:1:2,aftercorr:3' (comma = all must hold)."""
    by_kind: dict[str, list[str]] = {}
    for kind, job_id in deps:
        by_kind.setdefault(kind, []).append(job_id)
    return ",".join(f"{k}:{':'.join(ids)}" for k, ids in by_kind.items()) or None


def sacct_argv(job_ids: list[str], starttime: str, steps: bool = False) -> list[str]:
    """One call for these jobs (or single array tasks, ``A_i``). Allocation rows only (-X)
    unless ``steps``: each task otherwise brings its .batch and .extern rows, which are only
    needed for MaxRSS. ``--starttime`` also filters: even with -j, sacct leaves out jobs that
    ended before it, so a refresh asks only about what may have changed since the last one."""
    return [
        "sacct",
        *([] if steps else ["-X"]),
        "-P",
        "-n",
        f"--format={','.join(SACCT_FIELDS)}",
        f"--starttime={starttime}",
        "-j",
        ",".join(job_ids),
    ]


def squeue_argv(job_ids: list[str]) -> list[str]:
    # no -r: the pending part of an array is one line, 'A_[5-99%4]' (parse_squeue expands it)
    return ["squeue", "-h", "-o", SQUEUE_FORMAT, "-j", ",".join(job_ids)]


def scancel_argv(job_ids: list[str]) -> list[str]:
    return ["scancel", *job_ids]


SHOW_CONFIG_ARGV = ["scontrol", "show", "config"]


def squeue_by_name_argv(name: str) -> list[str]:
    # -t all: a job that already finished is still in slurmctld for MinJobAge, while sacct
    # (fed by slurmdbd) may not have it yet
    return ["squeue", "-h", "-t", "all", "-o", "%F", "--name", name]


def sacct_by_name_argv(name: str, starttime: str) -> list[str]:
    return [
        "sacct",
        "-X",
        "-n",
        "-P",
        "--format=JobID,JobName",
        "--name",
        name,
        f"--starttime={starttime}",
    ]


def parse_ids_by_name(stdout: str, name: str) -> set[str]:
    """Job ids of ``sacct_by_name_argv`` rows whose name is exactly ``name`` (array tasks
    count as their array job)."""
    return {
        line.split("|")[0].split("_")[0]
        for line in stdout.splitlines()
        if line.split("|")[-1] == name and line.split("|")[0]
    }


def user_tasks_argv(user: str) -> list[str]:
    """One line per queued job of the user, every array element its own line (-r), as
    MaxSubmitJobs counts them."""
    return ["squeue", "-h", "-r", "-u", user, "-o", "%i"]


SINFO_ARGV = ["sinfo", "-h", "-o", "%P|%G|%l|%c|%m"]


def parse_sinfo(text: str) -> dict[str, tuple[int, int, int]]:
    """partition -> (GPUs, CPUs, memory MB) of its largest node. ``%c``/``%m`` may end in
    ``+`` when nodes differ (sinfo groups them); the number before it is the smallest."""
    live: dict[str, tuple[int, int, int]] = {}

    def num(x: str) -> int:
        m = re.match(r"\d+", x.strip())
        return int(m.group()) if m else 0

    for line in text.splitlines():
        if not line.strip():
            continue
        name, gres, _limit, cpus, mem = (line.split("|") + ["", "", "", ""])[:5]
        m = re.search(r"gpu(?::[^:(,]+)?:(\d+)", gres)
        gpus = int(m.group(1)) if m else 0
        key = name.rstrip("*")
        old = live.get(key, (0, 0, 0))
        live[key] = (max(old[0], gpus), max(old[1], num(cpus)), max(old[2], num(mem)))
    return live


def ended_within(end: str | None, now: datetime, seconds: float) -> bool:
    """A sacct End time (cluster local time) less than ``seconds`` before ``now``; False when
    there is no parseable end."""
    if not end or len(end) != 19:  # None, "Unknown": a pending meta record has no end
        return False
    try:
        ended = datetime.fromisoformat(end)  # ~10x strptime; 'YYYY-MM-DDTHH:MM:SS' only
    except ValueError:
        return False
    return (now - ended).total_seconds() < seconds


# slots, not frozen: a frozen dataclass's __init__ costs ~9x (object.__setattr__ per field),
# and a refresh makes one of these per unfinished element. Treated as immutable all the same.
@dataclass(slots=True)
class SacctRow:
    job_id: str  # the array job id (before _), or the job id
    task_id: int | None  # None for a non-array job
    raw_id: str
    name: str
    state: str
    exit_code: int | None
    signal: int | None
    start: str | None
    end: str | None
    node: str | None
    reason: str
    max_rss_mb: int | None = None  # largest MaxRSS of the job's steps
    req_mem_mb: int | None = None
    has_steps: bool = False  # sacct already lists a step (.batch) of this job
    meta: bool = False  # from an 'A_[0-5]' meta record, not a row of its own

    def meta_end_unsettled(self, now: datetime, grace_s: int = 120) -> bool:
        """An ended meta record 'A_[...]' may stand for tasks whose own rows slurmdbd has
        not written yet (they ran and completed): not trusted until a while after its end."""
        return self.meta and ended_within(self.end, now, grace_s)

    @property
    def sigkilled(self) -> bool:
        """Ended by SIGKILL: Slurm saw the signal (ExitCode '0:9'), or the job script itself
        exited 137 because its child was killed. sacct (22.05) prints an exit status of 128
        or more less 128 (exit 137 as '9:0', 130 as '2:0'; scontrol has it right), so '9:0'
        is read as 137 too. A script exits 137 when a cgroup OOM kill takes only the largest
        process, or when the batch shell runs between the kill of its child and its own (a
        kill of the whole tree on a loaded node: seen as FAILED '9:0' on the lab)."""
        return self.signal == 9 or (not self.signal and self.exit_code in (9, 137))

    def killed_without_step_data(self, now: datetime, grace_s: int = 120) -> bool:
        """SIGKILLed, but slurmdbd has not yet sent the step whose MaxRSS says whether it was
        memory: not confirmed for a while after the end. A step row without MaxRSS counts as
        not sent yet (slurmdbd records a step's start before its end and its usage), and so
        does an allocation row whose ReqMem is not known yet (a job that ended within a
        second of its start can show JobName 'allocation' and ReqMem '16?' at first)."""
        return (
            self.sigkilled
            and (not self.has_steps or self.max_rss_mb is None or self.req_mem_mb is None)
            and ended_within(self.end, now, grace_s)
        )

    def record_incomplete(self, now: datetime, grace_s: int = 120) -> bool:
        """slurmdbd's placeholder for a job it has not got the record of yet: JobName
        'allocation', ReqMem unknown ('16?'); its State and ExitCode are not final either
        (captured: FAILED with ExitCode '9:0', a script that exited 137). Not trusted
        until a while after its end; hpcflow's jobs are never named 'allocation'."""
        return (
            self.name == "allocation"
            and self.req_mem_mb is None
            and ended_within(self.end, now, grace_s)
        )

    @property
    def oom_evidence(self) -> bool:
        """Killed by SIGKILL after a step's RSS reached the requested memory: what
        JobAcctGatherParams=OverMemoryKill does where no cgroup reports OUT_OF_MEMORY."""
        return (
            self.sigkilled
            and self.max_rss_mb is not None
            and self.req_mem_mb is not None
            and self.max_rss_mb >= 0.95 * self.req_mem_mb
        )


_ARRAY_PENDING = re.compile(r"^(\d+)_\[(.+)\]$")


def expand_array_ids(spec: str) -> list[int]:
    """'0-99%4' or '1-3,7' or '0-10:2' -> task ids."""
    spec = spec.split("%", 1)[0]
    out: list[int] = []
    for part in spec.split(","):
        if not part:
            continue
        step = 1
        if ":" in part:
            part, s = part.split(":", 1)
            step = int(s)
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1, step))
        else:
            out.append(int(part))
    return out


@functools.lru_cache(maxsize=256)  # a run's rows repeat a handful of ReqMem values
def _mb(v: str) -> int | None:
    v = v.strip().rstrip("cn")
    if not v or v in ("0", "Unknown"):
        return None
    from hpcflow.util.units import parse_mem_mb

    try:
        return parse_mem_mb(v)
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _exit(text: str) -> tuple[int | None, int | None]:
    """'0:0' -> (exit code, signal)."""
    if ":" not in text:
        return None, None
    c, s_ = text.split(":", 1)
    return (int(c) if c.isdigit() else None), (int(s_) if s_.isdigit() else None)


def _keys(job: str) -> tuple[list[tuple[str, int | None]], bool]:
    """'5' / '5_3' / '5_[0-9%2]' -> ([(job, task)...], is_meta_record)."""
    head, sep, tail = job.partition("_")
    if not sep:
        return ([(job, None)], False) if job.isdecimal() else ([], False)
    if head.isdecimal() and tail.isdecimal():
        return [(head, int(tail))], False
    if m := _ARRAY_PENDING.match(job):
        return [(m.group(1), t) for t in expand_array_ids(m.group(2))], True
    return [], False


def parse_sacct(stdout: str, fields: list[str] | None = None) -> list[SacctRow]:
    """Parse ``sacct -P -n --format=<fields>`` output (default SACCT_FIELDS), one row per
    job or array task. A '|' inside JobName is rejoined. Step rows (.batch, .extern) only
    contribute MaxRSS; het-job components (+N) are skipped. A refresh parses up to one row per
    unfinished element: column positions are looked up once, not per row."""
    fields = fields or SACCT_FIELDS
    n, name_at = len(fields), fields.index("JobName")
    at = {f: i for i, f in enumerate(fields)}
    i_id, i_raw, i_state, i_exit = at["JobID"], at["JobIDRaw"], at["State"], at["ExitCode"]
    i_start, i_end, i_node, i_reason = at["Start"], at["End"], at["NodeList"], at["Reason"]
    i_rss, i_req = at.get("MaxRSS"), at.get("ReqMem")
    rows: list[SacctRow] = []
    leftovers: list[SacctRow] = []  # from 'A_[...]' meta records
    rss: dict[tuple[str, int | None], int] = {}
    stepped: set[tuple[str, int | None]] = set()
    shared: dict[str, str] = {}
    same = shared.setdefault  # one string object for the values rows share (names, states, nodes)
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) != n:
            if len(parts) < n:
                continue  # blank or cut short
            extra = len(parts) - n
            parts = (
                parts[:name_at]
                + ["|".join(parts[name_at : name_at + 1 + extra])]
                + parts[name_at + 1 + extra :]
            )
        job = parts[i_id]
        if "+" in job:
            continue
        if "." in job:
            keys, _ = _keys(job.split(".", 1)[0])
            mb = _mb(parts[i_rss]) if i_rss is not None else None
            stepped.update(keys)
            for k in keys:
                if mb is not None:
                    rss[k] = max(rss.get(k, 0), mb)
            continue
        keys, meta = _keys(job)
        code, sig = _exit(parts[i_exit])
        node = parts[i_node]
        node_v = None if node in _NO_NODE else same(node, node)
        start, end = parts[i_start], parts[i_end]
        start_v = None if start in _NO_TIME else start
        end_v = None if end in _NO_TIME else end
        req = _mb(parts[i_req]) if i_req is not None else None
        name, state, reason = parts[name_at], parts[i_state], parts[i_reason]
        name, state, reason = same(name, name), same(state, state), same(reason, reason)
        target = leftovers if meta else rows
        for j, t in keys:
            target.append(
                SacctRow(j, t, parts[i_raw], name, state, code, sig, start_v, end_v, node_v,
                         reason, None, req, False, meta)
            )  # fmt: skip
    if leftovers:
        explicit = {(r.job_id, r.task_id) for r in rows}
        rows.extend(r for r in leftovers if (r.job_id, r.task_id) not in explicit)
    if stepped:
        rows = [
            replace(
                r,
                max_rss_mb=rss.get((r.job_id, r.task_id)),
                has_steps=(r.job_id, r.task_id) in stepped,
            )
            for r in rows
        ]
    return rows


_NO_NODE = frozenset({"", "None assigned", "(null)"})
_NO_TIME = frozenset({"", "Unknown", "None", "N/A"})


@dataclass(frozen=True)
class SqueueRow:
    job_id: str
    task_id: int | None
    state: str
    reason: str


def parse_squeue(stdout: str) -> list[SqueueRow]:
    rows: list[SqueueRow] = []
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        job, state, reason = parts
        rows.extend(SqueueRow(j, t, state, reason) for j, t in _keys(job)[0])
    return rows


def parse_show_config(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def max_array_size(config: dict[str, str]) -> int:
    v = config.get("MaxArraySize", "1001")
    return int(v) if v.isdigit() else 1001


_TEMPORARY = (
    "Socket timed out",
    "Unable to contact slurm controller",
    "Resource temporarily",
    "try again",
    "Slurm temporarily unable",
    "Connection refused",
)


def is_temporary_error(stderr: str) -> bool:
    return any(t.lower() in stderr.lower() for t in _TEMPORARY)
