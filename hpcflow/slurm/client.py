"""sbatch that never leaves a duplicate or an unknown: temporary refusals retried with backoff
and jitter, timeouts reconciled by job name against a responsive slurmctld."""

from __future__ import annotations

import random
import time
from datetime import datetime

from hpcflow.errors import RunnerError, SlurmRefused, SlurmUnavailable
from hpcflow.runners.base import Runner
from hpcflow.slurm.commands import is_temporary_error, parse_sbatch, scancel_argv
from hpcflow.spec.site import Site
from hpcflow.util.units import parse_duration_s

TEMPORARY_TRIES = 5


def sbatch_one(
    runner: Runner,
    argv: list[str],
    name: str,
    site: Site,
    since: datetime,
    env: dict[str, str] | None = None,
) -> str:
    """Run sbatch. Temporary refusals are retried with backoff and jitter. A timeout (slurmctld
    not answering) leaves it unknown whether the job exists: hpcflow then asks Slurm by job
    name until slurmctld answers, adopts the job if it exists, submits again only when Slurm
    twice says there is none, and afterwards cancels any duplicate under that name."""
    timeout = parse_duration_s(site.tracker.submit_timeout)
    delay = 1.0
    uncertain = False
    for attempt in range(1, TEMPORARY_TRIES + 1):
        try:
            res = runner.run(argv, timeout=timeout, env=env)
        except RunnerError as e:
            uncertain = True
            found = settle_by_name(runner, name, since, timeout)
            if found:
                return found
            if attempt == TEMPORARY_TRIES:
                raise SlurmUnavailable(f"sbatch for {name} did not answer: {e}") from e
            continue
        if res.ok:
            sid = parse_sbatch(res.stdout)
            if uncertain:
                cancel_duplicates(runner, name, since, sid)
            return sid
        msg = (res.stderr or res.stdout).strip()
        if not is_temporary_error(msg) or attempt == TEMPORARY_TRIES:
            raise SlurmRefused(f"Slurm refused job {name}: {msg}")
        time.sleep(delay + random.uniform(0, delay))
        delay = min(delay * 2, 30)
    raise SlurmRefused(f"Slurm refused job {name}")  # pragma: no cover - loop always returns


def ids_by_name(runner: Runner, name: str, since: datetime) -> set[str] | None:
    """Job ids Slurm has under this exact name (squeue, then sacct); None when slurmctld does
    not answer, which is not the same as "no such job"."""
    try:
        # -t all: a job that already finished is still in slurmctld for MinJobAge, while
        # sacct (fed by slurmdbd) may not have it yet
        q = runner.run(["squeue", "-h", "-t", "all", "-o", "%F", "--name", name], timeout=30)
    except RunnerError:
        return None
    if not q.ok:
        return None
    ids = set(q.stdout.split())
    try:
        a = runner.run(
            [
                "sacct",
                "-X",
                "-n",
                "-P",
                "--format=JobID,JobName",
                "--name",
                name,
                f"--starttime={since.strftime('%Y-%m-%dT%H:%M:%S')}",
            ],
            timeout=30,
        )
    except RunnerError:
        a = None
    if a is not None and a.ok:
        ids |= {
            line.split("|")[0].split("_")[0]
            for line in a.stdout.splitlines()
            if line.split("|")[-1] == name
        }
    return ids


def settle_by_name(runner: Runner, name: str, since: datetime, timeout: float) -> str | None:
    """After an sbatch timeout: the job id if Slurm has it; None once Slurm, answering, has
    said twice (a few seconds apart) that it has none. Waits while slurmctld is silent."""
    deadline = time.monotonic() + max(10 * timeout, 300)
    absent = 0
    while time.monotonic() < deadline:
        ids = ids_by_name(runner, name, since)
        if ids:
            return min(ids, key=int)
        if ids is not None:
            absent += 1
            if absent >= 2:
                return None
        time.sleep(3)
    raise SlurmUnavailable(
        f"Slurm did not answer for {max(10 * timeout, 300):.0f}s while hpcflow "
        f"was checking whether job {name} exists; run `hpcflow status` later to "
        "reconcile"
    )


def cancel_duplicates(runner: Runner, name: str, since: datetime, keep: str) -> None:
    time.sleep(2)
    ids = ids_by_name(runner, name, since) or set()
    extra = sorted(ids - {keep}, key=int)
    if extra:
        runner.run(scancel_argv(extra), timeout=60)
