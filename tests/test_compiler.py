"""Compiler plans: chains, diamonds, fan-in, `each` across chunks and axes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hpcflow.compile.plan import Plan, compile_plan, compress_ids
from hpcflow.errors import InvalidInput
from hpcflow.spec.validate import load_workflow


def plan_of(
    tmp_path: Path, text: str, max_array: int = 1001, sets: list[str] | None = None
) -> Plan:
    wf = tmp_path / "wf.yaml"
    wf.write_text(text)
    loaded = load_workflow(wf, sets)
    return compile_plan(loaded, None, max_array, "r1", "/scratch/r1")


def deps(plan: Plan, step: str, job: int = 0) -> list[tuple[str, str, int]]:
    return plan.steps[step].jobs[job].deps


def item(plan: Plan, step: str, idx: int) -> dict:
    sp = plan.steps[step]
    vals = list(itertools.product(*sp.axes.values()))[idx]
    return dict(zip(sp.axes, vals))


def assert_aligned(plan: Plan) -> None:
    """For every `each` edge U -> D: at each (D job, task id), the aftercorr'd U jobs hold,
    at that same task id, exactly the U elements that agree with the D element on every
    shared axis. This is what Slurm's aftercorr needs to implement `each`."""
    for dname in plan.order:
        d = plan.steps[dname]
        for u_name, kind in d.step.after.items():
            if kind != "each":
                continue
            u = plan.steps[u_name]
            shared = [a for a in d.axes if a in u.axes]
            for job in d.jobs:
                ujobs = [u.jobs[i] for k, s, i in job.deps if k == "aftercorr" and s == u_name]
                assert ujobs, f"{dname} job {job.job_index} has no aftercorr on {u_name}"
                for tid, idx in zip(job.task_ids, job.elements):
                    mine = item(plan, dname, idx)
                    at_tid = []
                    for uj in ujobs:
                        pos = dict(zip(uj.task_ids, uj.elements))
                        assert tid in pos, f"{u_name} job {uj.job_index} lacks task {tid}"
                        at_tid.append(pos[tid])
                    expected = sorted(
                        i
                        for i in range(u.n_elements)
                        if all(item(plan, u_name, i)[a] == mine[a] for a in shared)
                    )
                    assert sorted(at_tid) == expected, (dname, mine, at_tid, expected)


def test_chain_without_foreach(tmp_path: Path) -> None:
    p = plan_of(
        tmp_path,
        """name: c
steps:
  - {name: a, run: x}
  - {name: b, run: x, after: [a]}
  - {name: c, run: x, after: [b]}
""",
    )
    assert p.order == ["a", "b", "c"]
    assert [len(s.jobs) for s in p.steps.values()] == [1, 1, 1]
    assert deps(p, "b") == [("afterok", "a", 0)]
    assert deps(p, "c") == [("afterok", "b", 0)]
    assert p.steps["a"].jobs[0].array_spec is None


def test_diamond_and_kinds(tmp_path: Path) -> None:
    p = plan_of(
        tmp_path,
        """name: d
steps:
  - {name: d, run: x, after: {b: ok, c: any}}
  - {name: b, run: x, after: [a]}
  - {name: a, run: x}
  - {name: c, run: x, after: {a: notok}}
""",
    )
    assert p.order == ["a", "b", "c", "d"]
    assert deps(p, "c") == [("afternotok", "a", 0)]
    assert sorted(deps(p, "d")) == [("afterany", "c", 0), ("afterok", "b", 0)]


def test_fan_in_over_chunks(tmp_path: Path) -> None:
    p = plan_of(
        tmp_path,
        """name: f
steps:
  - name: a
    foreach: {e: {range: [1, 25]}}
    throttle: 5
    run: x
  - {name: b, run: x, after: {a: any}}
""",
        max_array=11,
    )
    a = p.steps["a"]
    assert [j.array_spec for j in a.jobs] == ["0-10%5", "0-10%5", "0-2%5"]
    assert [j.chunk for j in a.jobs] == [0, 1, 2]
    assert [j.elements[0] for j in a.jobs] == [0, 11, 22]  # offsets
    assert deps(p, "b") == [("afterany", "a", 0), ("afterany", "a", 1), ("afterany", "a", 2)]
    assert len(p.jobs) == 4  # sbatch calls = (step, chunk) pairs


def test_each_chain_across_chunks(tmp_path: Path) -> None:
    p = plan_of(
        tmp_path,
        """name: e
steps:
  - {name: a, run: x, foreach: {e: {range: [1, 25]}}}
  - {name: b, run: x, foreach: {e: {range: [1, 25]}}, after: {a: each}}
  - {name: c, run: x, foreach: {e: {range: [1, 25]}}, after: {b: each}}
""",
        max_array=11,
    )
    for s in "bc":
        assert [j.array_spec for j in p.steps[s].jobs] == ["0-10", "0-10", "0-2"]
    assert [deps(p, "b", i) for i in range(3)] == [[("aftercorr", "a", i)] for i in range(3)]
    assert_aligned(p)


def test_each_across_axes_ffrd_shape(tmp_path: Path) -> None:
    """hms(event) -> ras(event x unit) each -> rasC(event) each on both units."""
    p = plan_of(
        tmp_path,
        """name: ffrd
params: {n: 12}
steps:
  - name: hms
    foreach: {event: {range: [1, "{{ params.n }}"]}}
    run: x
  - name: ras
    after: {hms: each}
    foreach:
      event: {range: [1, "{{ params.n }}"]}
      unit: {values: [A, B]}
    run: x
  - name: rasC
    after: {ras: each}
    foreach: {event: {range: [1, "{{ params.n }}"]}}
    run: x
""",
        max_array=5,
    )
    ras = p.steps["ras"]
    assert ras.base_axes == ["event"] and ras.group_axes == ["unit"]
    assert [(j.group, j.chunk, j.array_spec) for j in ras.jobs] == [
        ({"unit": "A"}, 0, "0-4"),
        ({"unit": "A"}, 1, "0-4"),
        ({"unit": "A"}, 2, "0-1"),
        ({"unit": "B"}, 0, "0-4"),
        ({"unit": "B"}, 1, "0-4"),
        ({"unit": "B"}, 2, "0-1"),
    ]
    assert deps(p, "ras", 4) == [("aftercorr", "hms", 1)]
    assert deps(p, "rasC", 1) == [("aftercorr", "ras", 1), ("aftercorr", "ras", 4)]
    assert len(p.jobs) == 3 + 6 + 3
    assert_aligned(p)


def test_each_with_axis_order_and_subset(tmp_path: Path) -> None:
    """Downstream axes in another order, and a subset of the events: sparse task ids."""
    p = plan_of(
        tmp_path,
        """name: s
steps:
  - name: a
    foreach: {e: {range: [1, 10]}}
    run: x
  - name: b
    after: {a: each}
    foreach:
      u: {values: [x, y, z]}
      e: {values: [2, 3, 4, 9]}
    run: x
""",
        max_array=4,
    )
    b = p.steps["b"]
    assert {j.array_spec for j in b.jobs} == {"1-3", "0"}
    assert_aligned(p)


def test_each_upstream_with_extra_group_axis(tmp_path: Path) -> None:
    """Upstream over (unit, event) laid out by event because a consumer lacks unit."""
    p = plan_of(
        tmp_path,
        """name: g
steps:
  - name: a
    foreach:
      unit: {values: [A, B, C]}
      event: {range: [1, 7]}
    run: x
  - name: b
    after: {a: each}
    foreach: {event: {range: [1, 7]}}
    run: x
""",
        max_array=3,
    )
    assert p.steps["a"].base_axes == ["event"]
    assert len(p.steps["a"].jobs) == 3 * 3
    assert_aligned(p)


def test_each_chain_without_common_axis_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no foreach axis is common"):
        plan_of(
            tmp_path,
            """name: n
steps:
  - {name: a, run: x, foreach: {x: {values: [1, 2]}}}
  - name: b
    run: x
    foreach: {x: {values: [1, 2]}, y: {values: [1, 2]}}
    after: {a: each}
  - {name: c, run: x, foreach: {y: {values: [1, 2]}}, after: {b: each}}
""",
        )


@pytest.mark.parametrize("m", [2, 3, 7, 1001])
@pytest.mark.parametrize("units", [["A"], ["A", "B", "C"]])
def test_alignment_property(tmp_path: Path, m: int, units: list[str]) -> None:
    p = plan_of(
        tmp_path,
        f"""name: p
steps:
  - {{name: a, run: x, foreach: {{e: {{range: [1, 9]}}}}}}
  - name: b
    after: {{a: each}}
    foreach: {{e: {{range: [1, 9]}}, u: {{values: {units}}}}}
    run: x
  - {{name: c, run: x, foreach: {{e: {{range: [1, 9]}}}}, after: {{b: each}}}}
  - {{name: d, run: x, after: {{c: any, b: ok}}}}
""",
        max_array=m,
    )
    assert_aligned(p)
    n_chunks = -(-9 // m)
    assert len(p.steps["b"].jobs) == n_chunks * len(units)
    assert all(max(j.task_ids) < m for s in p.steps.values() for j in s.jobs)


def test_compress_ids() -> None:
    assert compress_ids([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert compress_ids([3]) == "3"
    assert compress_ids([]) == ""
