"""SlurmClient: the only place Slurm commands are built and run (over a Runner, local or SSH).

Builders and parsers are pure (``commands.py``); this class adds the I/O and the policy around
it: sbatch that never leaves a duplicate or an unknown (temporary refusals retried with
backoff and jitter, timeouts reconciled by job name against a responsive slurmctld), sacct and
squeue that say "not answering" with an exception instead of an empty answer.
"""

from __future__ import annotations

import logging
import random
import shlex
import time
from dataclasses import dataclass
from datetime import datetime

from hpcflow.errors import (
    RunnerError,
    RunnerTimeout,
    SlurmError,
    SlurmRefused,
    SlurmUnavailable,
)
from hpcflow.runners.base import Result, Runner
from hpcflow.slurm.commands import (
    SHOW_CONFIG_ARGV,
    SINFO_ARGV,
    SacctRow,
    SqueueRow,
    dependency_string,
    is_temporary_error,
    max_array_size,
    parse_ids_by_name,
    parse_sacct,
    parse_sbatch,
    parse_show_config,
    parse_sinfo,
    parse_squeue,
    sacct_argv,
    sacct_by_name_argv,
    sbatch_argv,
    scancel_argv,
    squeue_argv,
    squeue_by_name_argv,
    user_tasks_argv,
)
from hpcflow.slurm.nodes import exclude_argv, excluded_pending
from hpcflow.slurm.usage import Usage, parse_usage, usage_argv
from hpcflow.spec.site import Site

log = logging.getLogger("hpcflow.slurm")

TEMPORARY_TRIES = 5
SACCT_TIMEOUT_S = 120  # slurmdbd answers large queries slowly; longer than this is "unavailable"
SLURM_TIME = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True)
class JobSpec:
    """What one sbatch call submits: a script with its tasks file, name, log and links."""

    script: str
    tasks: str
    name: str
    output: str
    array: str | None = None
    dependencies: tuple[tuple[str, str], ...] = ()  # (kind, slurm job id)
    extra: tuple[str, ...] = ()

    @property
    def dependency(self) -> str | None:
        return dependency_string(list(self.dependencies))

    def argv(self) -> list[str]:
        return sbatch_argv(
            self.script,
            [self.tasks],
            job_name=self.name,
            output=self.output,
            array=self.array,
            dependency=self.dependency,
            extra=list(self.extra),
        )


def _why(res: Result) -> str:
    return (res.stderr or res.stdout).strip()


class SlurmClient:
    def __init__(self, runner: Runner, submit_timeout: float = 60.0):
        self.runner = runner
        self.submit_timeout = submit_timeout

    @classmethod
    def for_site(cls, runner: Runner, site: Site) -> SlurmClient:
        return cls(runner, site.tracker.submit_timeout)

    # -- configuration ---------------------------------------------------------------------
    def show_config(self) -> dict[str, str]:
        res = self.runner.run(SHOW_CONFIG_ARGV, timeout=30)
        if not res.ok:
            raise SlurmUnavailable(f"`scontrol show config` failed: {_why(res) or res.stdout}")
        return parse_show_config(res.stdout)

    def max_array_size(self) -> int:
        return max_array_size(self.show_config())

    def partitions(self) -> dict[str, tuple[int, int, int]]:
        """partition -> (GPUs, CPUs, memory MB) of its largest node."""
        res = self.runner.run(SINFO_ARGV, timeout=30)
        if not res.ok:
            raise SlurmUnavailable(f"sinfo failed: {_why(res)}")
        return parse_sinfo(res.stdout)

    # -- queries -----------------------------------------------------------------------------
    def sacct(self, job_ids: list[str], since: datetime, steps: bool = False) -> list[SacctRow]:
        """The allocation rows (with ``steps``, also MaxRSS from the step rows) of these jobs
        or array tasks (``A_i``) that were alive after ``since`` (cluster local time);
        SlurmUnavailable when sacct fails (slurmdbd down), which is not "no rows". Long id
        lists are split: one argument may hold at most 128 KiB on Linux."""
        rows: list[SacctRow] = []
        for part in _id_batches(job_ids):
            argv = sacct_argv(part, since.strftime(SLURM_TIME), steps=steps)
            res = self._sacct(argv)
            if not res.ok:
                lines = _why(res).splitlines()
                raise SlurmUnavailable(f"sacct failed ({lines[-1] if lines else 'no output'})")
            rows += parse_sacct(res.stdout)
        return rows

    def usage(self, job_ids: list[str], since: datetime) -> dict[tuple[str, int | None], Usage]:
        """What the elements of these finished jobs used (allocation and step rows, once per
        job: docs/efficiency.md); SlurmUnavailable when sacct fails."""
        out: dict[tuple[str, int | None], Usage] = {}
        for part in _id_batches(job_ids):
            res = self._sacct(usage_argv(part, since.strftime(SLURM_TIME)))
            if not res.ok:
                lines = _why(res).splitlines()
                raise SlurmUnavailable(f"sacct failed ({lines[-1] if lines else 'no output'})")
            out.update(parse_usage(res.stdout))
        return out

    def _sacct(self, argv: list[str]) -> Result:
        """A sacct that hangs (slurmdbd busy or unreachable) is an unavailable one, as one that
        fails: the refresh falls back to squeue instead of failing the command."""
        try:
            return self.runner.run(argv, timeout=SACCT_TIMEOUT_S)
        except RunnerTimeout as e:
            raise SlurmUnavailable(f"sacct gave no answer within {SACCT_TIMEOUT_S} s") from e

    def squeue(self, job_ids: list[str]) -> list[SqueueRow] | None:
        """Queued and running elements of these jobs; None when slurmctld does not answer."""
        res = self.runner.run(squeue_argv(job_ids), timeout=60)
        return parse_squeue(res.stdout) if res.ok else None

    def queued_tasks(self, user: str) -> int:
        """The user's jobs in the queue, every array element counted (as MaxSubmitJobs)."""
        res = self.runner.run(user_tasks_argv(user), timeout=60)
        if not res.ok:
            raise SlurmError(f"squeue failed: {_why(res)}")
        return len([ln for ln in res.stdout.splitlines() if ln.strip()])

    def ids_by_name(self, name: str, since: datetime) -> set[str] | None:
        """Job ids Slurm has under this exact name (squeue, then sacct); None when slurmctld
        does not answer, which is not the same as "no such job"."""
        try:
            q = self.runner.run(squeue_by_name_argv(name), timeout=30)
        except RunnerError:
            return None
        if not q.ok:
            return None
        ids = set(q.stdout.split())
        try:
            a: Result | None = self.runner.run(
                sacct_by_name_argv(name, since.strftime(SLURM_TIME)), timeout=30
            )
        except RunnerError:
            a = None
        if a is not None and a.ok:
            ids |= parse_ids_by_name(a.stdout, name)
        return ids

    # -- actions -----------------------------------------------------------------------------
    def scancel(self, job_ids: list[str], check: bool = False) -> None:
        if not job_ids:
            return
        res = self.runner.run(scancel_argv(sorted(set(job_ids), key=int)), timeout=60)
        if check and not res.ok:
            raise SlurmError(f"scancel failed: {_why(res)}")

    def exclude_nodes(self, job_ids: list[str], nodes: frozenset[str]) -> list[str]:
        """Keep these jobs' pending tasks off ``nodes``; the ids the update reached. A job
        that has nothing pending any more is no error."""
        done = []
        for jid in sorted(set(job_ids), key=int):
            res = self.runner.run(exclude_argv(jid, nodes), timeout=60)
            text = res.stdout + res.stderr
            if res.ok or excluded_pending(text):
                done.append(jid)
            else:
                log.info("slurm: job %s: ExcNodeList not set: %s", jid, text.strip()[:200])
        return done

    def sbatch(self, job: JobSpec, since: datetime, env: dict[str, str] | None = None) -> str:
        """Submit ``job`` once: its Slurm job id. Temporary refusals are retried with backoff
        and jitter. A timeout (slurmctld not answering) leaves it unknown whether the job
        exists: the client then asks Slurm by job name until slurmctld answers, adopts the job
        if it exists, submits again only when Slurm twice says there is none, and afterwards
        cancels any duplicate under that name. Errors carry the command line."""
        argv = job.argv()
        try:
            return self._sbatch(argv, job.name, since, env)
        except SlurmError as e:
            raise type(e)(f"{e}\n  command: {shlex.join(argv)}") from e

    def _sbatch(
        self, argv: list[str], name: str, since: datetime, env: dict[str, str] | None
    ) -> str:
        delay = 1.0
        uncertain = False
        for attempt in range(1, TEMPORARY_TRIES + 1):
            try:
                res = self.runner.run(argv, timeout=self.submit_timeout, env=env)
            except RunnerError as e:
                uncertain = True
                found = self.settle_by_name(name, since, self.submit_timeout)
                if found:
                    return found
                if attempt == TEMPORARY_TRIES:
                    raise SlurmUnavailable(f"sbatch for {name} did not answer: {e}") from e
                continue
            if res.ok:
                sid = parse_sbatch(res.stdout)
                if uncertain:
                    self.cancel_duplicates(name, since, sid)
                return sid
            msg = _why(res)
            if not is_temporary_error(msg) or attempt == TEMPORARY_TRIES:
                raise SlurmRefused(f"Slurm refused job {name}: {msg}")
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 30)
        raise SlurmRefused(f"Slurm refused job {name}")  # pragma: no cover - loop returns

    def settle_by_name(self, name: str, since: datetime, timeout: float) -> str | None:
        """After an sbatch timeout: the job id if Slurm has it; None once Slurm, answering,
        has said twice (a few seconds apart) that it has none. Waits while slurmctld is
        silent."""
        limit = max(10 * timeout, 300)
        deadline = time.monotonic() + limit
        absent = 0
        while time.monotonic() < deadline:
            ids = self.ids_by_name(name, since)
            if ids:
                return min(ids, key=int)
            if ids is not None:
                absent += 1
                if absent >= 2:
                    return None
            time.sleep(3)
        raise SlurmUnavailable(
            f"Slurm did not answer for {limit:.0f}s while hpcflow was checking whether job "
            f"{name} exists; run `hpcflow status` later to reconcile"
        )

    def cancel_duplicates(self, name: str, since: datetime, keep: str) -> None:
        time.sleep(2)  # let a late sbatch that did create a job show up under its name
        ids = self.ids_by_name(name, since) or set()
        self.scancel(sorted(ids - {keep}, key=int))


def _id_batches(ids: list[str], max_chars: int = 100_000) -> list[list[str]]:
    out: list[list[str]] = [[]]
    size = 0
    for i in ids:
        if out[-1] and size + len(i) + 1 > max_chars:
            out.append([])
            size = 0
        out[-1].append(i)
        size += len(i) + 1
    return out if out[-1] else []
