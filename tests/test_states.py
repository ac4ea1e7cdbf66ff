"""The task state machine: which moves Slurm may cause, which only hpcflow makes."""

from __future__ import annotations

import pytest

from hpcflow.states import (
    HPCFLOW_MOVES,
    SUCCESS,
    TERMINAL,
    TaskState,
    is_requeue,
    slurm_move_allowed,
)

T = TaskState


@pytest.mark.parametrize(
    "old,new,ok",
    [
        (T.PENDING, T.RUNNING, True),
        (T.RUNNING, T.COMPLETED, True),
        (T.PENDING, T.COMPLETED, True),  # a short job finished between two refreshes
        (T.RUNNING, T.PENDING, True),  # requeued
        (T.NODE_FAIL, T.PENDING, True),  # requeued after the node failed
        (T.COMPLETED, T.RUNNING, True),  # `scontrol requeue` of a finished job
        (T.RESOLVED, T.FAILED, False),  # a person's decision is not overwritten
        (T.LOST, T.COMPLETED, False),
        (T.PENDING, T.LOST, False),  # only hpcflow declares LOST
        (T.UNKNOWN, T.COMPLETED, True),
    ],
)
def test_slurm_moves(old: TaskState, new: TaskState, ok: bool) -> None:
    assert slurm_move_allowed(old, new) is ok


def test_hpcflow_moves() -> None:
    assert T.COMPLETED not in HPCFLOW_MOVES["resolve"]
    assert T.FAILED in HPCFLOW_MOVES["resolve"] and T.UPSTREAM_FAILED in HPCFLOW_MOVES["resolve"]
    assert HPCFLOW_MOVES["lost"] == {T.PENDING, T.RUNNING, T.UNKNOWN}
    assert T.RUNNING not in HPCFLOW_MOVES["retry"]
    assert T.UNKNOWN not in TERMINAL and T.UNKNOWN not in SUCCESS


def test_requeue_detection() -> None:
    assert is_requeue(T.RUNNING, T.PENDING) and is_requeue(T.NODE_FAIL, T.PENDING)
    assert is_requeue(T.COMPLETED, T.RUNNING)
    assert not is_requeue(T.PENDING, T.RUNNING) and not is_requeue(T.PENDING, T.PENDING)


def test_resolve_completes_a_failed_run_and_nothing_else() -> None:
    from hpcflow.states import RUN_MOVES, RunState, run_move_allowed

    assert run_move_allowed("resolve", RunState.FAILED, RunState.COMPLETED)
    allowed = {(a, b) for a, tos in RUN_MOVES["resolve"].items() for b in tos}
    assert allowed == {(RunState.FAILED, RunState.COMPLETED)}
