"""A campaign tick's decisions (campaign/decide.py), without Slurm or a database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from hpcflow.campaign.decide import (
    Admission,
    BatchView,
    admit,
    backoff_seconds,
    in_flight,
    needs_queue_count,
    settled,
    to_retry,
)
from hpcflow.states import BatchState, TaskState

W, S, SUB = BatchState.WAITING, BatchState.SUBMITTING, BatchState.SUBMITTED
C, F, OOM, SK, R = (
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.OUT_OF_MEMORY,
    TaskState.SKIPPED,
    TaskState.RUNNING,
)
NOW = datetime(2026, 12, 2, 3, 0, 0)


@pytest.mark.parametrize(
    ("state", "run_exists", "expected"),
    [
        (S, True, SUB),  # died after the run was recorded: adopt it, never submit twice
        (S, False, W),  # died before: nothing reached Slurm, submit it again
        (SUB, False, SUB),
        (W, True, W),
    ],
)
def test_settle_a_tick_that_died_mid_submit(state, run_exists, expected) -> None:
    assert settled(state, run_exists) == expected


BATCHES = [
    BatchView(0, SUB, "COMPLETED"),
    BatchView(1, SUB, "FAILED", retries=0),
    BatchView(2, SUB, "FAILED", retries=1),
    BatchView(3, SUB, "RUNNING"),
    BatchView(4, SUB, "PENDING"),
    BatchView(5, W, None),
    BatchView(6, SUB, "CANCELLED"),
]


@pytest.mark.parametrize(("retry_failed", "expected"), [(0, []), (1, [1]), (2, [1, 2])])
def test_failed_batches_are_retried_while_retries_are_left(retry_failed, expected) -> None:
    assert to_retry(BATCHES, retry_failed) == expected


def test_in_flight_counts_pending_and_running_runs_only() -> None:
    assert in_flight(BATCHES) == 2
    assert in_flight([BatchView(0, SUB, "RUNNING"), BatchView(1, W, "RUNNING")]) == 1


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # nothing waiting
        ({"waiting": 0, "flying": 0}, Admission(0)),
        # max_in_flight 3 with 1 flying: two of five waiting
        ({"waiting": 5, "flying": 1}, Admission(2)),
        ({"waiting": 5, "flying": 3}, Admission(0)),
        ({"waiting": 5, "flying": 4}, Admission(0)),  # over (a retried run came back)
        ({"waiting": 1, "flying": 0}, Admission(1)),
        # max_submit_jobs 100, 40 queued, 30 array tasks a batch: two fit, the third would not
        (
            {"waiting": 5, "flying": 0, "limit": 100, "queued": 40, "max_in_flight": 9},
            Admission(
                2, "throttled: 100 jobs queued + 30 for the next batch > max_submit_jobs 100"
            ),
        ),
        (
            {"waiting": 5, "flying": 0, "limit": 100, "queued": 90},
            Admission(0, "throttled: 90 jobs queued + 30 for the next batch > max_submit_jobs 100"),
        ),
        # the limit leaves room for more than max_in_flight allows: no note
        ({"waiting": 5, "flying": 0, "limit": 1000, "queued": 0}, Admission(3)),
        # backing off after a refusal: nothing, with the time it ends
        (
            {"waiting": 5, "flying": 0, "backoff_until": NOW + timedelta(seconds=90), "now": NOW},
            Admission(0, "Slurm refused the last batch; not submitting before 03:01:30Z"),
        ),
        # a back-off that has passed does not hold anything
        (
            {"waiting": 5, "flying": 2, "backoff_until": NOW - timedelta(seconds=1), "now": NOW},
            Admission(1),
        ),
    ],
)
def test_admission(kw: dict, expected: Admission) -> None:
    args = {"max_in_flight": 3, "jobs_per_batch": 30} | kw
    assert admit(**args) == expected


@pytest.mark.parametrize(
    ("waiting", "flying", "limit", "expected"),
    [(3, 0, 100, True), (3, 0, None, False), (0, 0, 100, False), (3, 3, 100, False)],
)
def test_squeue_is_asked_only_when_the_limit_could_matter(waiting, flying, limit, expected):
    assert needs_queue_count(waiting, flying, 3, limit) is expected


@pytest.mark.parametrize(
    ("refusals", "expected"), [(0, 60), (1, 120), (2, 240), (5, 1920), (6, 3600), (30, 3600)]
)
def test_backoff_doubles_up_to_an_hour(refusals: int, expected: int) -> None:
    assert backoff_seconds(60, refusals) == expected
