"""What elements used, from sacct, collected once per chunk (docs/efficiency.md).

When every element of a submitted job (a chunk: one array) has ended, one sacct with its step
rows asks what each task used (AllocCPUS, ElapsedRaw, TimelimitRaw, TotalCPU, MaxRSS, ReqMem,
AllocTRES); the answer is stored on the elements and the job is marked, so it is never asked
again and survives slurmdbd purges. A refresh does this only when it saw elements end; the
rest (the chunk that ended with the run, step rows slurmdbd had not yet written) is collected
by the next refresh that sees an end, or by `hpcflow efficiency` / `report`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hpcflow import facts
from hpcflow.errors import SlurmUnavailable
from hpcflow.slurm.client import SlurmClient
from hpcflow.slurm.usage import Usage
from hpcflow.store import usage as stored
from hpcflow.store.handles import Handle
from hpcflow.tracker.efficiency import ElementUse, Floors, StepEfficiency

log = logging.getLogger(__name__)

# slurmdbd may write a task's step rows (MaxRSS) a moment after its allocation row
STEP_ROWS_GRACE = timedelta(seconds=120)
MAX_JOBS_PER_CALL = 200  # whole jobs per sacct call; each brings ~3 rows per element


finished_jobs = stored.finished_jobs


def settled(usage: dict[tuple[str, int | None], Usage], slurm_id: str, task_ids: list[int | None],
            last_end: str | None, local_now: datetime) -> bool:  # fmt: skip
    """Whether a job's answer is final: every task that ran has its step rows, or its last
    element ended long enough ago that missing step rows will not come."""
    ran = [usage[(slurm_id, t)] for t in task_ids if (slurm_id, t) in usage]
    if all(u.steps > 0 or not u.elapsed_s for u in ran):
        return True
    try:
        ended = datetime.fromisoformat(last_end or "")
    except ValueError:
        return True
    return local_now - ended > STEP_ROWS_GRACE


def collect_usage(db: Handle, client: SlurmClient, run_ids: Sequence[str]) -> int:
    """Ask sacct once for the finished, uncollected jobs of these runs and store what their
    elements used; returns the number of jobs collected. A failed sacct leaves them for
    later: usage is never worth failing a refresh over."""
    jobs = finished_jobs(db, run_ids)
    done = 0
    local_now = datetime.now()  # sacct prints the cluster's local time
    for i in range(0, len(jobs), MAX_JOBS_PER_CALL):
        part = jobs[i : i + MAX_JOBS_PER_CALL]
        since = min(_stamp(sub) for *_, sub in part) - timedelta(days=1)
        try:
            usage = client.usage([sid for _, sid, _, _ in part], _local(since))
        except SlurmUnavailable as e:
            log.info("usage: not collected this time: %s", e)
            return done
        for job_id, sid, last_end, _ in part:
            rows = stored.job_tasks(db, job_id)
            tids = list(dict.fromkeys(t for _, t in rows))
            if not settled(usage, sid, tids, last_end, local_now):
                continue
            params = [(json.dumps(usage[(sid, t)].as_json()), i) for i, t in rows
                      if (sid, t) in usage]  # fmt: skip
            stored.store_usage(db, job_id, params)
            done += 1
    log.debug("usage: collected for %d of %d finished jobs", done, len(jobs))
    return done


def _stamp(text: Any) -> datetime:
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(str(text))


def _local(utc_naive: datetime) -> datetime:
    """A UTC time from the database -> the local time sacct's --starttime reads."""
    from datetime import timezone

    aware = utc_naive if utc_naive.tzinfo else utc_naive.replace(tzinfo=timezone.utc)
    return aware.astimezone().replace(tzinfo=None)


def element_uses(db: Handle, run_id: str, step: str | None = None) -> dict[str, StepEfficiency]:
    """What each finished element of a run asked for and used, by step: from its record
    (the wrapper's wall and CPU time) and its usage (sacct, once its chunk ended). A packed
    task's MaxRSS is shared by the elements it ran at once (docs/efficiency.md)."""
    rows = stored.element_use_rows(db, run_id, step)
    out: dict[str, StepEfficiency] = {}
    for name, state, result, usage, cpus, mem, secs, gpus, pack, parallel in rows:
        res, use = _obj(result), _obj(usage)
        packed = (pack or 1) > 1
        wall = res.get("wall_ms")
        cpu = res.get("cpu_ms")
        elapsed = (wall / 1000 if wall is not None else None) if packed else use.get(
            "elapsed_s", wall / 1000 if wall is not None else None)  # fmt: skip
        rss = use.get("max_rss_mb")
        # a packed task asks for parallel x an element's CPUs, memory and GPUs, and
        # ceil(size / parallel) x its time (spec/packing.py): per element, divided back
        k, rounds = (parallel or 1), -(-(pack or 1) // (parallel or 1))
        cpus, mem = cpus or use.get("alloc_cpus"), mem or use.get("req_mem_mb")
        e = ElementUse(
            state=state,
            cpus=max(1, cpus // k) if cpus else None,
            mem_req_mb=mem // k if mem else None,
            time_limit_s=secs // rounds if secs else None,
            gpus=(gpus or 0) // k,
            elapsed_s=elapsed if state in MEASURED else None,
            cpu_s=(use.get("total_cpu_s") if not packed else None)
            or (cpu / 1000 if cpu is not None else None),  # fmt: skip
            peak_mb=_peak(res, rss, k, packed),
        )
        out.setdefault(name, StepEfficiency()).elements.append(e)
    for name, f in ran_out(db, run_id).items():
        if name in out:
            out[name].floors = f
    return out


def ran_out(db: Handle, run_id: str) -> dict[str, Floors]:
    """Per step: how many elements ran out of memory / time (every attempt, from the
    history) and the largest request they ran out of."""
    out: dict[str, Floors] = {}
    for name, new_state, mem_mb, time_s in stored.ran_out_rows(db, run_id):
        f = out.setdefault(name, Floors())
        if new_state == "OUT_OF_MEMORY":
            f.oom += 1
            f.mem_mb = max(f.mem_mb, mem_mb or 0)
        else:
            f.timeouts += 1
            f.time_s = max(f.time_s, time_s or 0)
    return out


def _peak(res: dict[str, Any], rss: Any, k: int, packed: bool) -> float | None:
    """A packed element's own peak (the job tool's wait4, in its record), else the packed
    task's MaxRSS shared by the elements it ran at once; an unpacked one's MaxRSS."""
    own = res.get("max_rss_kb")
    if packed and isinstance(own, (int, float)):
        return own / 1024
    return rss / k if rss is not None else None


MEASURED = frozenset(st.value for st in facts.MEASURED)  # their time says what the work needs


def _obj(v: Any) -> dict[str, Any]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    return v if isinstance(v, dict) else {}
