"""The derived facts (hpcflow/facts.py) as table tests: what "failed" means, an event's
state, a campaign's progress and its projection. Every face asks these functions; the faces'
agreement over real databases is tests/test_faces_agree.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hpcflow.facts import (
    FAILED,
    UNFINISHED,
    BatchFacts,
    ElementFacts,
    EventState,
    campaign_progress,
    event_state,
    failed_count,
    projection,
    task_state,
)
from hpcflow.states import SUCCESS, TERMINAL, BatchState, RunState, TaskState, run_state

T = TaskState
C, F, OOM, SK, R, P = T.COMPLETED, T.FAILED, T.OUT_OF_MEMORY, T.SKIPPED, T.RUNNING, T.PENDING


def test_failed_is_every_end_but_success_and_never_unfinished() -> None:
    assert FAILED == TERMINAL - SUCCESS
    assert T.PREEMPTED in FAILED and T.CANCELLED in FAILED and T.UPSTREAM_FAILED in FAILED
    assert T.UNKNOWN not in FAILED and T.UNKNOWN in UNFINISHED  # not ended: never failed
    assert not FAILED & SUCCESS and not FAILED & UNFINISHED
    assert set(TaskState) == FAILED | SUCCESS | UNFINISHED


def test_unknown_stored_states_are_unknown() -> None:
    assert task_state("FROBNICATED") is T.UNKNOWN and task_state(None) is T.UNKNOWN
    assert failed_count({"COMPLETED": 3, "PREEMPTED": 1, "UNKNOWN": 2, "NEWSTATE": 4}) == 1


@pytest.mark.parametrize(
    ("states", "run", "gave_up", "expected"),
    [
        ([C, C], "COMPLETED", True, "done"),
        ([C, SK], "RUNNING", False, "done"),  # skipped counts as success
        ([C, F], "FAILED", False, "running"),  # a retry is still to come
        ([C, F], "FAILED", True, "failed"),
        ([OOM], "FAILED", True, "failed"),
        ([T.PREEMPTED], "FAILED", True, "failed"),
        ([T.UNKNOWN], "FAILED", True, "running"),  # not ended: not a failure
        ([C, R], "RUNNING", False, "running"),
        ([], "RUNNING", False, "running"),  # no element of the event recorded yet
        ([R], "CANCELLED", False, "failed"),  # a cancelled run's unfinished event
        ([C], "CANCELLED", False, "done"),  # it finished before the cancel
    ],
)
def test_event_state(states, run, gave_up, expected) -> None:
    assert event_state(states, run, gave_up) == EventState(expected)


def _batch(index, events, run_state, retries=0, state=BatchState.SUBMITTED):
    run = f"run{index}" if state is BatchState.SUBMITTED else None
    return BatchFacts(index, events, state, run, run_state, retries)


def test_a_100_event_batch_with_one_failed_event_is_99_done() -> None:
    """What disagreed between `campaign status` and the dashboard (issue 25)."""
    events = list(range(100))
    els = [ElementFacts("hms", C, {"event": e}) for e in events]
    els += [ElementFacts("ras", F if e == 7 else C, {"event": e, "unit": "A"}) for e in events]
    prog = campaign_progress([_batch(0, events, RunState.FAILED)], {"run0": els}, "event", 0)
    assert prog.counts == {"done": 99, "failed": 1, "running": 0, "pending": 0}
    assert prog.failed == [
        {"event": 7, "batch": 0, "run_id": "run0", "steps": ["ras"], "states": ["FAILED"]}
    ]
    assert prog.finished
    # with a retry left, the failed event is still running (a retry is to come)
    again = campaign_progress([_batch(0, events, RunState.FAILED)], {"run0": els}, "event", 1)
    assert again.counts == {"done": 99, "failed": 0, "running": 1, "pending": 0}
    assert not again.finished


def test_progress_of_waiting_cancelled_and_other_axes() -> None:
    batches = [
        _batch(0, [1, 2], RunState.CANCELLED),
        _batch(1, [3], None, state=BatchState.WAITING),
        _batch(2, [4], None),  # SUBMITTED but its run not recorded (yet): pending
    ]
    els = {"run0": [ElementFacts("a", C, {"storm": 1}), ElementFacts("a", R, {"storm": 2})]}
    prog = campaign_progress(batches, els, "storm", 3)
    assert {k: v.value for k, v in prog.state.items()} == {
        "1": "done",
        "2": "failed",
        "3": "pending",
        "4": "pending",
    }
    assert prog.failed == [
        {"event": 2, "batch": 0, "run_id": "run0", "steps": [], "states": ["CANCELLED"]}
    ]


def test_projection() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    counts = {"done": 10, "failed": 1, "running": 5, "pending": 15}
    rate, eta = projection(counts, now - timedelta(hours=2), now)
    assert rate == 5.0 and eta == now + timedelta(hours=4)
    assert projection(counts, None, now) == (0.0, None)
    assert projection({"done": 3}, now - timedelta(hours=1), now) == (3.0, None)


@pytest.mark.parametrize(
    ("counts", "cancelled", "expected"),
    [
        ({"COMPLETED": 3, "SKIPPED": 1}, False, RunState.COMPLETED),
        ({"COMPLETED": 3, "PREEMPTED": 1}, False, RunState.FAILED),
        ({"COMPLETED": 3, "CANCELLED": 1}, True, RunState.CANCELLED),
        ({"COMPLETED": 3, "UNKNOWN": 1}, False, RunState.RUNNING),
        ({"PENDING": 2, "COMPLETED": 0}, False, RunState.PENDING),
    ],
)
def test_run_state_of_counts(counts, cancelled, expected) -> None:
    assert run_state([task_state(s) for s, n in counts.items() if n], cancelled) is expected


@pytest.mark.parametrize(
    ("current", "states", "submitting", "escalating", "expanding", "expected"),
    [
        ("PENDING", [C, C], True, False, False, "PENDING"),  # the submitter decides
        ("RUNNING", [C, OOM], False, True, False, "RUNNING"),  # about to be resubmitted
        ("RUNNING", [C, OOM], False, False, False, "FAILED"),
        ("RUNNING", [C, C], False, False, True, "RUNNING"),  # the next sync expands
        ("RUNNING", [C, C], False, False, False, "COMPLETED"),
        ("RUNNING", [C, R], False, False, True, "RUNNING"),
        ("RUNNING", [P, P], False, False, False, "PENDING"),
    ],
)
def test_derive_run_state(current, states, submitting, escalating, expanding, expected) -> None:
    asked: list[str] = []

    def ask(name: str, answer: bool):
        return lambda: asked.append(name) or answer

    from hpcflow.facts import derive_run_state

    got = derive_run_state(current, states, False, submitting, ask("esc", escalating),
                           ask("exp", expanding))  # fmt: skip
    assert got is RunState(expected)
    if submitting:
        assert asked == []  # nothing read while the submission is unfinished


def test_a_state_this_hpcflow_does_not_know_is_unknown_never_a_crash(tmp_path) -> None:
    """A stored element state from another hpcflow (or a hand edit) reads as UNKNOWN: the
    run's state is derived (RUNNING: not ended, never success) instead of raising."""
    import sqlite3

    from hpcflow.store.db import open_db
    from hpcflow.store.runstate import derived

    from .synthetic import finished_run

    db, run_id = finished_run(tmp_path, 10)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE task SET state = 'FROBNICATED' WHERE step = 'sample'")
    engine = open_db(db)
    with engine.begin() as conn:
        assert derived(conn, run_id, "FAILED", False) == "RUNNING"
    engine.dispose()
