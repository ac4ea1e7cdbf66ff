"""What a refresh concludes (tracker/reconcile.py), from captured sacct/squeue output, without
Slurm. Each row: the element as tracked, what Slurm said, what the tracker must record."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hpcflow.slurm.commands import SqueueRow, parse_sacct, parse_squeue
from hpcflow.states import TaskState
from hpcflow.tracker.reconcile import Tracked, observe, reconcile, skipped, squeue_needed

CAP = Path(__file__).parent / "captured"
FIELDS_V1 = ["JobID", "JobIDRaw", "JobName", "State", "ExitCode", "Start", "End", "NodeList",
             "Reason"]  # fmt: skip
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
P, R, C = TaskState.PENDING, TaskState.RUNNING, TaskState.COMPLETED


def tracked(sid: str, tid: int | None, state: TaskState = P, **kw: object) -> Tracked:
    kw.setdefault("submitted_at", NOW - timedelta(seconds=60))
    return Tracked(id=tid or 0, run_id="r", step="s", index=tid or 0, slurm_job_id=sid,
                   task_id=tid, state=state, **kw)  # type: ignore[arg-type]  # fmt: skip


def decide(tasks, sacct_text="", squeue=(), fields=FIELDS_V1, degraded=False, lost_after=300):
    seen = observe(parse_sacct(sacct_text, fields), tasks, datetime(2026, 11, 22, 3, 0))
    changes = reconcile(tasks, seen, squeue, now=NOW, lost_after=lost_after, degraded=degraded)
    return {c.task.key: c for c in changes}


def test_kill_on_invalid_dep_is_upstream_failed_and_compensation_skipped() -> None:
    text = (CAP / "sacct-kill-invalid-dep.txt").read_text()
    plain = [tracked("19", i, has_dependency=True) for i in range(5)]
    got = decide(plain, text)
    assert got[("19", 2)].new is TaskState.UPSTREAM_FAILED
    assert got[("19", 0)].new is C and got[("19", 0)].row["attempts"] == 1
    comp = [tracked("19", 2, has_dependency=True, compensation=True)]
    c = decide(comp, text)[("19", 2)]
    assert c.new is TaskState.SKIPPED and "compensation not needed" in (c.event_reason or "")


@pytest.mark.parametrize(
    ("state", "squeue", "want"),
    [
        # sacct lags: it shows PENDING for an element we saw running; squeue silent -> no change
        (R, [], None),
        # squeue (slurmctld) confirms it is back in the queue: a requeue
        (R, [SqueueRow("60", None, "PENDING", "BeginTime")], P),
    ],
)
def test_sacct_lag_versus_requeue(state, squeue, want) -> None:
    text = "60|60|j|PENDING|0:0|Unknown|Unknown|None assigned|None\n"
    got = decide([tracked("60", None, state)], text, squeue)
    if want is None:
        assert ("60", None) not in got
    else:
        c = got[("60", None)]
        assert c.new is want and c.event_reason and c.event_reason.startswith("requeued")


@pytest.mark.parametrize(
    ("age", "degraded", "want"),
    [(60, False, None), (400, False, TaskState.LOST), (400, True, None)],
)
def test_lost_after_grace_never_when_degraded(age, degraded, want) -> None:
    t = tracked("70", None, submitted_at=NOW - timedelta(seconds=age))
    got = decide([t], "", [], degraded=degraded)
    if want is None:
        assert got == {}
    else:
        assert got[("70", None)].new is want
        assert got[("70", None)].event_reason == "not in sacct or squeue 400 s after submission"


def test_squeue_asked_only_for_what_sacct_cannot_settle() -> None:
    tasks = [tracked("57", i) for i in range(4, 9)] + [tracked("19", 0)]
    seen = observe(parse_sacct((CAP / "sacct-kill-invalid-dep.txt").read_text(), FIELDS_V1),
                   tasks, datetime(2026, 11, 22, 3, 0))  # fmt: skip
    assert squeue_needed(tasks, seen) == ["57"]
    q = parse_squeue((CAP / "squeue-array.txt").read_text())
    got = decide(tasks[:5], "", q)
    assert got[("57", 4)].row["reason"] == "JobArrayTaskLimit"


def test_skip_marker_checked_once_on_the_transition() -> None:
    text = "19_0|22|j|COMPLETED|0:0|2026-11-22T02:24:43|2026-11-22T02:24:43|vm|None\n"
    first = decide([tracked("19", 0, may_skip=True)], text)[("19", 0)]
    assert first.check_skip
    s = skipped(first, "skipped: when: false")
    assert s.new is TaskState.SKIPPED and s.row["exit_code"] == 0
    # already recorded SKIPPED: Slurm's COMPLETED changes nothing, no marker read
    assert decide([tracked("19", 0, TaskState.SKIPPED, may_skip=True)], text) == {}
    # already COMPLETED: a later refresh does not read the marker again
    again = decide([tracked("19", 0, C, may_skip=True, attempts=1)], text)
    assert all(not c.check_skip for c in again.values())


# Captured on the lab (Slurm 22.05) one second after b_2 was killed by its invalid aftercorr
# dependency: slurmdbd had only the meta record; b_0, b_1, b_3, b_4 completed, and their own
# rows arrived a moment later. Finished elements are not asked about again, so the meta record
# must not decide for them while it is fresh.
META_ONLY = "1675|1675|hpcflow.r.b.0|CANCELLED|0:0|None|2026-11-22T02:59:30|None assigned|None\n"


@pytest.mark.parametrize(
    ("end_age_s", "want"), [(1, None), (119, None), (121, TaskState.UPSTREAM_FAILED)]
)
def test_a_fresh_meta_record_does_not_decide_finished_elements(end_age_s, want) -> None:
    end = (datetime(2026, 11, 22, 3, 0) - timedelta(seconds=end_age_s)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    text = META_ONLY.replace("1675|1675|", "1675_[0-5]|1675|").replace("2026-11-22T02:59:30", end)
    got = decide([tracked("1675", i, has_dependency=True) for i in range(6)], text)
    assert {k[1]: c.new for k, c in got.items()} == (
        {} if want is None else {i: want for i in range(6)}
    )


def test_sacct_is_asked_by_task_only_for_jobs_whose_elements_all_run() -> None:
    from hpcflow.tracker import asking as rec

    tasks = [tracked("9", 3, R), tracked("9", 1, R), tracked("12", 0, R), tracked("12", 1, P),
             tracked("10", None, R), tracked("30", 2, TaskState.NODE_FAIL)]  # fmt: skip
    # 9: all running -> by task; 12: one pending (inside the meta record) -> whole job;
    # 10: not an array; 30: may be requeued into the pending record -> whole job
    assert rec.sacct_targets(tasks) == ["9_1", "9_3", "10", "12", "30"]
    many = [tracked("5", i, R) for i in range(rec.MAX_TASK_IDS + 1)]
    assert rec.sacct_targets(many) == ["5"]


def test_the_unchanged_shortcut_agrees_with_the_rules() -> None:
    """reconcile skips elements whose sacct row says what the tracker has; for every state
    pair and field difference, the full rules would have recorded no change either."""
    from itertools import product

    from hpcflow.tracker.reconcile import Observation, _change, _conclude, unchanged

    fields = [  # (tracked extra, observation extra)
        ({}, {}),
        ({"start": "t0", "node": "vm"}, {"start": "t0", "node": "vm"}),
        ({"start": "t0", "node": "vm"}, {"start": "t1", "node": "vm"}),
        ({"exit_code": 0, "end": "t2"}, {"exit_code": 0, "end": "t2"}),
        ({"exit_code": None, "end": None}, {"exit_code": 1, "end": "t2"}),
        ({"reason": None}, {"reason": ""}),
        ({"reason": "x"}, {"reason": "y"}),
    ]
    checked = 0
    for old, new, (tk, ok), comp in product(TaskState, TaskState, fields, (False, True)):
        t = tracked("5", 1, old, compensation=comp, **tk)
        o = Observation(new, **ok)
        if unchanged(t, o):
            checked += 1
            concluded = _conclude(t, o, None, NOW, 300, False)
            assert concluded is None or _change(t, concluded) is None, (t, o)
    assert checked > len(TaskState)  # the shortcut is taken, for every state


def test_the_still_pending_shortcut_agrees_with_the_rules() -> None:
    """reconcile skips elements squeue shows pending for the reason the tracker has (sacct
    not asked about them); for every tracked state, squeue state and reason, the full rules
    would have recorded no change either."""
    from itertools import product

    from hpcflow.slurm.commands import SqueueRow
    from hpcflow.tracker.reconcile import _change, _conclude, still_pending

    squeue_states = ["PENDING", "RUNNING", "REQUEUED", "COMPLETING", "SUSPENDED", "CANCELLED"]
    reasons = ["", "Resources", "Priority", "JobArrayTaskLimit", "DependencyNeverSatisfied"]
    tracked_fields = [{}, {"reason": "Priority"}, {"reason": "Resources"},
                      {"start": "t0", "node": "vm"}]  # fmt: skip
    checked = 0
    for old, st, why, tk in product(TaskState, squeue_states, reasons, tracked_fields):
        t = tracked("5", 1, old, **tk)
        q = SqueueRow("5", 1, st, why)
        if still_pending(t, q):
            checked += 1
            concluded = _conclude(t, None, q, NOW, 300, False)
            assert concluded is None or _change(t, concluded) is None, (t, q)
    assert checked >= 2  # taken for pending elements with and without a reason


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("61|61|j|NODE_FAIL|0:0|2026-11-22T02:00:00|2026-11-22T02:01:00|n2|None\n",
         "on node n2"),
        ("61|61|j|PREEMPTED|0:0|2026-11-22T02:00:00|2026-11-22T02:01:00|n1|None\n",
         "on node n1"),
    ],
)  # fmt: skip
def test_a_node_fault_move_names_the_node(line: str, want: str) -> None:
    """docs/faults.md: the history says which node a NODE_FAIL or PREEMPTED happened on."""
    c = decide([tracked("61", None, R)], line)[("61", None)]
    assert c.event_reason is not None and c.event_reason.startswith(want), c.event_reason
