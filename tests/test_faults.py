"""Node faults, decided once (hpcflow/faults.py): table tests of the black-hole rule and the
resubmissions a node's fault calls for, and the store's evidence from a real tracker."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpcflow.faults import (
    BlackHoleRule,
    Faulted,
    NodeTally,
    black_holes,
    decide,
    new_suspects,
    node_resubmissions,
    retry_due,
)
from hpcflow.states import TaskState

RULE = BlackHoleRule()  # 5 fast failures, within 60 s, half the node's, others <= 10% of >= 5


def T(node: str, fast: int, lasted: int) -> NodeTally:
    return NodeTally(node, fast, lasted)


@pytest.mark.parametrize(
    "tallies, holes",
    [
        # one node of four fails everything it gets, fast; the others do not
        ([T("n1", 0, 30), T("n2", 0, 30), T("n3", 40, 0), T("n4", 1, 29)], ["n3"]),
        # every node fails fast: the workflow's bug, no node is blamed
        ([T("n1", 30, 0), T("n2", 30, 1), T("n3", 40, 0), T("n4", 29, 1)], []),
        # two black holes of four
        ([T("n1", 20, 0), T("n2", 0, 30), T("n3", 25, 2), T("n4", 0, 30)], ["n1", "n3"]),
        # too few fast failures yet
        ([T("n1", 0, 30), T("n3", 4, 0)], []),
        # most of its elements still last: not a black hole
        ([T("n1", 0, 30), T("n3", 6, 20)], []),
        # nothing to compare with (the other nodes decided too few elements)
        ([T("n1", 0, 4), T("n3", 40, 0)], []),
        # the others fail fast too often (20%): the workflow, not the node
        ([T("n1", 6, 24), T("n2", 6, 24), T("n3", 40, 0)], []),
        # a single node in the run
        ([T("n3", 40, 0)], []),
        ([], []),
    ],
)
def test_black_holes(tallies: list[NodeTally], holes: list[str]) -> None:
    assert [h.node for h in black_holes(tallies, RULE)] == holes


@pytest.mark.parametrize(
    "others_code, holes",
    [
        (3, ["n3"]),  # the others' failures are another matter (a data error): n3 is blamed
        (181, []),  # the others fail the same way, 20% of the time: not the node
    ],
)
def test_how_the_elements_failed_counts(others_code: int, holes: list[str]) -> None:
    """Exit codes: the other nodes' fast failures count against a suspect only when they
    failed the way its elements did."""
    way = ((others_code, 6),)
    tallies = [NodeTally("n1", 6, 24, way), NodeTally("n2", 6, 24, way),
               NodeTally("n3", 40, 0, ((181, 40),))]  # fmt: skip
    assert [h.node for h in black_holes(tallies, RULE)] == holes


def test_a_black_hole_says_why_and_none_without_a_rule() -> None:
    (h,) = black_holes([T("n1", 0, 30), T("n3", 12, 0)], RULE)
    assert h.why() == ("12 of its 12 elements failed within 60 s of their start; on the other "
                       "nodes 0 of 30 failed that way")  # fmt: skip
    (h,) = black_holes([T("n1", 0, 30), NodeTally("n3", 12, 0, ((181, 10), (1, 2)))], RULE)
    assert "(exit code 181 x10, 1 x2)" in h.why()
    assert black_holes([T("n1", 0, 30), T("n3", 12, 0)], None) == []
    assert BlackHoleRule.of(None) is None
    assert BlackHoleRule.of({"min_failures": 3, "within_s": 30}) == BlackHoleRule(3, 30)


def F(i: int, state: TaskState, node: str | None, fast: bool, n: int = 0) -> Faulted:
    return Faulted(i, state, node, fast, n)


@pytest.mark.parametrize(
    "faulted, avoided, retries, want",
    [
        # NODE_FAIL that Slurm did not requeue: again (the node is DOWN, not excluded)
        ([F(1, TaskState.NODE_FAIL, "n2", False)], [], 2, {(): [1]}),
        # a fast failure on a black hole: away from every avoided node
        ([F(1, TaskState.FAILED, "n3", True)], ["n3", "n1"], 2, {("n1", "n3"): [1]}),
        # ... and a NODE_FAIL elsewhere then avoids the black holes
        ([F(1, TaskState.NODE_FAIL, "n2", False)], ["n3"], 2, {("n3",): [1]}),
        # a slow failure on a black hole, or a fast one on a healthy node: the element's own
        ([F(1, TaskState.FAILED, "n3", False), F(2, TaskState.FAILED, "n1", True)], ["n3"], 2, {}),
        # retries used up
        ([F(1, TaskState.NODE_FAIL, "n2", False, 2)], [], 2, {}),
        ([F(1, TaskState.FAILED, "n3", True, 1)], ["n3"], 1, {}),
        # node unknown (it never started there): not a node's fault hpcflow can see
        ([F(1, TaskState.NODE_FAIL, None, False)], [], 2, {}),
        # retries 0: the site turned them off
        ([F(1, TaskState.NODE_FAIL, "n2", False)], [], 0, {}),
    ],
)
def test_node_resubmissions(faulted, avoided, retries, want) -> None:
    got = node_resubmissions(faulted, avoided, retries)
    assert {tuple(sorted(k)): v for k, v in got.items()} == want


def test_tallies_are_read_only_when_a_new_black_hole_is_possible() -> None:
    fast = [F(i, TaskState.FAILED, "n3", True) for i in range(5)]
    assert new_suspects(fast, [], RULE)
    assert not new_suspects(fast[:4], [], RULE)  # fewer than min_failures
    assert not new_suspects(fast, ["n3"], RULE)  # avoided already
    assert not new_suspects([F(i, TaskState.FAILED, "n3", False) for i in range(9)], [], RULE)
    assert not new_suspects(fast, [], None)


def test_decide_blames_new_black_holes_and_retries_their_elements() -> None:
    tallies = [T("n1", 0, 30), T("n3", 12, 0)]
    faulted = [F(i, TaskState.FAILED, "n3", True) for i in range(12)]
    d = decide(tallies, faulted, [], RULE, 2)
    assert [h.node for h in d.holes] == ["n3"] and d.resubmit == {
        frozenset({"n3"}): list(range(12))
    }
    assert retry_due(d) and not retry_due(None)
    # every node fails fast: nothing is blamed, nothing retried (the workflow fails)
    d = decide([T("n1", 30, 0), T("n3", 12, 0)], faulted, [], RULE, 2)
    assert d.holes == [] and d.resubmit == {} and not retry_due(d)


# --- the evidence, read from a real tracker --------------------------------------------------


def tracker(
    tmp_path: Path, rows: list[tuple[str, str, int, int | None]], faults: dict | None
) -> Path:
    """A run with elements (node, state, seconds since start at the end (None: running))."""
    from hpcflow.store.db import Job, Run, StepRow, Task, open_db, session

    engine = open_db(tmp_path / "t.db")
    t0 = datetime.now() - timedelta(hours=1)
    with session(engine) as s:
        s.add(Run(id="r", workflow="w", site="/s.yaml", state="RUNNING", run_dir="/x",
                  workflow_path="/w.yaml", faults=faults))  # fmt: skip
        s.flush()
        s.add(StepRow(run_id="r", name="a", position=0, total=len(rows)))
        s.add(Job(id=1, run_id="r", step="a", job_index=0, chunk=0, name="hpcflow.r.a.0",
                  slurm_job_id="50", array=f"0-{len(rows) - 1}", status="SUBMITTED"))  # fmt: skip
        s.flush()
        for i, (node, state, start_min, el) in enumerate(rows):
            st = t0 + timedelta(minutes=start_min)
            s.add(Task(run_id="r", step="a", index=i, job_id=1, task_id=i, state=state, node=node,
                       start=st.strftime("%Y-%m-%dT%H:%M:%S"),
                       end=None if el is None else (st + timedelta(seconds=el)).strftime(
                           "%Y-%m-%dT%H:%M:%S")))  # fmt: skip
        s.commit()
    engine.dispose()
    return tmp_path / "t.db"


POLICY = {"retries": 2, "black_hole": {"min_failures": 5, "within_s": 60, "min_share": 0.5,
                                       "others_max_share": 0.1, "min_others": 5}}  # fmt: skip


def test_the_store_reads_the_evidence_and_the_fast_status_asks_for_a_sync(tmp_path: Path) -> None:
    from hpcflow.store import lite, nodes

    rows = ([("n3", "FAILED", m, 0) for m in range(8)]  # n3 fails each element at once
            + [("n1", "COMPLETED", m, 300) for m in range(6)]
            + [("n2", "RUNNING", 1, None)] * 4  # running for an hour: lasted
            + [("n2", "FAILED", 2, 600)])  # a slow failure: the element's own  # fmt: skip
    db = tracker(tmp_path, rows, POLICY)
    conn = sqlite3.connect(db)
    d = nodes.decision(conn, "r")
    assert d is not None and [h.node for h in d.holes] == ["n3"]
    assert d.resubmit == {frozenset({"n3"}): list(range(1, 9))}  # task row ids of n3's
    tallies = {
        t.node: (t.fast, t.lasted) for t in nodes.tallies(conn, "r", RULE, nodes.local_now())
    }
    assert tallies == {"n1": (0, 6), "n2": (0, 5), "n3": (8, 0)}
    by_node = {t.node: t for t in nodes.tallies(conn, "r", RULE, nodes.local_now())}
    assert by_node["n3"].codes == ((None, 8),) and by_node["n1"].codes == ()
    # refreshed just now (no poll due): only the node fault asks for a sync
    conn.execute("UPDATE run SET poll_seconds = 3600, refreshed_at = ?",
                 (datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),))  # fmt: skip
    run = lite.find_run(conn, "r")
    assert lite.sync_needed(conn, [run])  # its black hole's elements are due
    conn.execute("UPDATE task SET node_retries = 2")  # used up: nothing due
    assert not nodes.decision(conn, "r").resubmit and not lite.sync_needed(conn, [run])
    # a run that ended was decided (its state waited for these): its tallies are not read
    conn.execute("UPDATE task SET node_retries = 0")
    conn.execute("UPDATE run SET state = 'FAILED'")
    d = nodes.decision(conn, "r")
    assert d is not None and d.holes == [] and d.resubmit == {}
    conn.execute("UPDATE run SET nodes_avoided = ?", ('[{"node": "n3", "why": "", "at": ""}]',))
    assert nodes.decision(conn, "r").resubmit == {frozenset({"n3"}): list(range(1, 9))}


def test_a_run_without_a_fault_policy_is_left_alone(tmp_path: Path) -> None:
    from hpcflow.store import nodes

    db = tracker(tmp_path, [("n3", "NODE_FAIL", 0, 5)] + [("n1", "COMPLETED", 0, 300)] * 6, None)
    assert nodes.decision(sqlite3.connect(db), "r") is None
