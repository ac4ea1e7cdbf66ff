"""What a retry resubmits (tracker/resubmission.py), decided without Slurm or a database."""

from __future__ import annotations

import pytest

from hpcflow.errors import BadUsage
from hpcflow.facts import Ended, escalations
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


OOM, TO = TaskState.OUT_OF_MEMORY, TaskState.TIMEOUT
POLICY = {
    "hms": {"attempts": 3, "on_oom": {"mem_factor": 2}},
    "ras": {"attempts": 2, "on_timeout": {"time_factor": 1.5}, "on_oom": {"mem_factor": 4}},
    "plain": {"attempts": 3},  # in-job retries only: nothing escalates
}


@pytest.mark.parametrize(
    ("ended", "expected"),
    [
        # an OOM with attempts left doubles memory
        ([Ended(1, "hms", OOM, 1)], {("on_oom", "mem_factor", 2.0): [1]}),
        # attempts used up (3 starts of 3): stays OUT_OF_MEMORY
        ([Ended(1, "hms", OOM, 3)], {}),
        # a timeout where the step only escalates OOM: no
        ([Ended(1, "hms", TO, 1)], {}),
        # per step, per state: ras times out -> time, ras OOM -> its own factor
        (
            [Ended(1, "ras", TO, 1), Ended(2, "ras", OOM, 1), Ended(3, "hms", OOM, 2)],
            {
                ("on_timeout", "time_factor", 1.5): [1],
                ("on_oom", "mem_factor", 4.0): [2],
                ("on_oom", "mem_factor", 2.0): [3],
            },
        ),
        # no policy, or a step the policy table does not know
        ([Ended(1, "plain", OOM, 1), Ended(2, "gone", TO, 1)], {}),
        # FAILED never escalates, even on a step with on_oom
        ([Ended(1, "hms", TaskState.FAILED, 1)], {}),
    ],
)
def test_escalation_decisions(ended: list[Ended], expected: dict) -> None:
    assert escalations(ended, POLICY) == expected


def test_default_attempts_is_one_start_so_nothing_escalates() -> None:
    assert escalations([Ended(1, "s", OOM, 1)], {"s": {"on_oom": {"mem_factor": 2}}}) == {}
    assert escalations([Ended(1, "s", OOM, 0)], {"s": {"on_oom": {"mem_factor": 2}}}) == {
        ("on_oom", "mem_factor", 2.0): [1]
    }
