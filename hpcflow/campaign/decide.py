"""What a campaign tick decides, as pure functions of what it has read (campaign/tick.py
gathers the rows and applies the answers): which failed batches to retry, how many waiting
batches to submit now and why not more, how long to back off after a refusal. What state each
event is in is a derived fact (hpcflow/facts.py), shared with the dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hpcflow.states import ACTIVE_RUN_STATES, BatchState, RunState

MAX_BACKOFF_S = 3600


@dataclass(frozen=True)
class BatchView:
    index: int
    state: BatchState
    run_state: str | None  # its run's state, None before it has a run
    retries: int = 0


def settled(state: BatchState, run_exists: bool) -> BatchState:
    """A batch a crashed tick left SUBMITTING: its run exists (recorded before any sbatch)
    and it is SUBMITTED, or nothing was submitted and it waits again."""
    if state != BatchState.SUBMITTING:
        return state
    return BatchState.SUBMITTED if run_exists else BatchState.WAITING


def to_retry(batches: Iterable[BatchView], retry_failed: int) -> list[int]:
    """Batches whose run FAILED and that have retries left (campaign ``retry_failed``)."""
    return [
        b.index
        for b in batches
        if b.run_state == RunState.FAILED.value and b.retries < retry_failed
    ]


def in_flight(batches: Iterable[BatchView]) -> int:
    """Submitted batches whose run is still pending or running (a retried run counts)."""
    return sum(
        1 for b in batches if b.state == BatchState.SUBMITTED and b.run_state in ACTIVE_RUN_STATES
    )


@dataclass(frozen=True)
class Admission:
    count: int  # how many of the waiting batches, in order, to submit now
    note: str | None = None  # why not more, when that is worth telling


def needs_queue_count(waiting: int, flying: int, max_in_flight: int, limit: int | None) -> bool:
    """Ask squeue for the user's queued tasks only when a submit limit could stop a batch."""
    return bool(limit) and waiting > 0 and flying < max_in_flight


def admit(
    waiting: int,
    flying: int,
    max_in_flight: int,
    jobs_per_batch: int,
    limit: int | None = None,
    queued: int | None = None,
    backoff_until: datetime | None = None,
    now: datetime | None = None,
) -> Admission:
    """How many waiting batches fit: not while Slurm's last refusal is being backed off,
    never more than ``max_in_flight`` at once, and with a site ``max_submit_jobs`` only while
    the user's queued array tasks plus each new batch's stay within it."""
    if waiting <= 0:
        return Admission(0)
    if backoff_until is not None and now is not None and backoff_until > now:
        return Admission(
            0, f"Slurm refused the last batch; not submitting before {backoff_until:%H:%M:%S}Z"
        )
    n = max(0, min(waiting, max_in_flight - flying))
    if limit and n:
        q = queued or 0
        fit = max(0, (limit - q) // jobs_per_batch) if jobs_per_batch > 0 else n
        if fit < n:
            after = q + fit * jobs_per_batch
            return Admission(
                fit,
                f"throttled: {after} jobs queued + {jobs_per_batch} for the next batch "
                f"> max_submit_jobs {limit}",
            )
    return Admission(n)


def backoff_seconds(base_s: int, refusals: int) -> int:
    """Wait after the (refusals+1)-th refusal in a row: the base, doubled each time, at most
    an hour."""
    return int(min(base_s * 2**refusals, MAX_BACKOFF_S))
