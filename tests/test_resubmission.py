"""What a retry resubmits (tracker/resubmission.py), decided without Slurm or a database."""

from __future__ import annotations

import pytest

from hpcflow.errors import BadUsage
from hpcflow.states import TaskState
from hpcflow.tracker.resubmission import Graph, JobNode, TaskNode, plan_resubmission, select

C, F, U = TaskState.COMPLETED, TaskState.FAILED, TaskState.UPSTREAM_FAILED
# a: array 0-3 (100 MB, 10 min); b: aftercorr on a; c: one job afterany on all of b
JOBS = [
    JobNode(1, "a", "hpcflow.r.a.0", True, mem_mb=100, time_s=600),
    JobNode(2, "b", "hpcflow.r.b.0", True, deps=(("aftercorr", 1),), mem_mb=50),
    JobNode(3, "c", "hpcflow.r.c.0", False, deps=(("afterany", 2),)),
]
STATES = {"a": [C, C, F, C], "b": [C, C, U, C]}
TASKS = [
    TaskNode(10 * j + i, step, i, j, i, STATES[step][i])
    for j, step in ((1, "a"), (2, "b"))
    for i in range(4)
] + [TaskNode(30, "c", 0, 3, None, C)]
POS = {"a": 0, "b": 1, "c": 2}


def test_failed_element_takes_its_cancelled_dependent_and_nothing_done() -> None:
    picked = select(Graph(JOBS, TASKS), [12], [], set())
    assert picked == {12, 22}  # a[2] and the b[2] it took down; c completed: not re-run
    plan = plan_resubmission(JOBS, TASKS, POS, picked, mem_factor=2)
    assert [(j.name, j.array, j.tasks) for j in plan] == [
        ("hpcflow.r.a.0.r1", "2", [12]),
        ("hpcflow.r.b.0.r1", "2", [22]),
    ]
    assert plan[1].deps == [("aftercorr", 0)]  # on the new a job, element by element
    assert (plan[0].mem_mb, plan[0].extra) == (200, ["--mem=200M"])
    assert (plan[1].mem_mb, plan[1].extra) == (100, ["--mem=100M"])


def test_rerun_steps_re_run_completed_dependents() -> None:
    picked = select(Graph(JOBS, TASKS), [12], [], {"c"})
    assert picked == {12, 22, 30}
    plan = plan_resubmission(JOBS, TASKS, POS, picked)
    assert plan[2].deps == [("afterany", 1)] and plan[2].array is None
    assert all(j.extra == [] for j in plan)  # no factor: the scripts' own --mem/--time


def test_second_retry_scales_the_retried_job_not_the_first() -> None:
    retried = JobNode(4, "a", "hpcflow.r.a.0.r1", True, attempt=1, retry_of=1, mem_mb=200,
                      extra=("--mem=200M",), time_s=600)  # fmt: skip
    tasks = [t if t.id != 12 else TaskNode(12, "a", 2, 4, 2, F) for t in TASKS]
    plan = plan_resubmission([*JOBS, retried], tasks, POS, {12}, mem_factor=2)
    assert (plan[0].name, plan[0].mem_mb, plan[0].extra) == (
        "hpcflow.r.a.0.r2",
        400,
        ["--mem=400M"],
    )


def test_factor_without_a_known_amount_is_refused() -> None:
    with pytest.raises(BadUsage, match="resources.time is not set"):
        plan_resubmission(JOBS, TASKS, POS, {22}, time_factor=2)
