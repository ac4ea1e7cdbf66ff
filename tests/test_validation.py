"""`hpcflow validate`: every problem the spec lists, as FILE:LINE: message, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main

GOOD = """\
name: demo
params:
  n: 3
steps:
  - name: a
    foreach:
      event: {range: [1, "{{ params.n }}"]}
    run: echo {{ item.event }}
  - name: b
    after: {a: each}
    foreach:
      event: {range: [1, "{{ params.n }}"]}
    run: echo b
"""

# (workflow text, expected line, fragment of the message)
CASES = [
    ("name: demo\nsteps: [\n", 3, "YAML syntax"),
    ("name: Demo!\nsteps:\n  - {name: a, run: x}\n", 1, "name"),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    rum: y\n",
        5,
        "unknown key 'rum' in step 'a'",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n  - name: a\n    run: y\n",
        5,
        "duplicate step name 'a'",
    ),
    ("name: demo\nsteps:\n  - name: a\n    run: x\n    after: [zz]\n", 5, "unknown step 'zz'"),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    after: [b]\n  - name: b\n    run: y\n"
        "    after: [a]\n",
        5,
        "cycle in after: a -> b -> a",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    foreach: {e: {values: [1]}}\n"
        "  - name: b\n    run: y\n    after: {a: each}\n    foreach: {u: {values: [1]}}\n",
        8,
        "needs an axis shared",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    resources: {mem: 6Q}\n",
        5,
        "bad memory size '6Q'",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    resources:\n      time: soon\n",
        6,
        "bad duration 'soon'",
    ),
    ("name: demo\nsteps:\n  - name: a\n    run: x\n    foreach: {}\n", 5, "foreach is empty"),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    foreach:\n      e: {range: [3, 1]}\n",
        6,
        "axis 'e': foreach axis is empty",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    foreach:\n      e: {file: nope.csv}\n",
        6,
        "not found",
    ),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    foreach:\n"
        "      e: {range: [1, 2], values: [3]}\n",
        6,
        "exactly one of range, values, file",
    ),
    ("name: demo\nsteps:\n  - name: '../../etc'\n    run: x\n", 3, "name"),
    ("name: demo\nx: !!python/object:os.system {}\nsteps: []\n", 2, "not allowed"),
    ("name: demo\nname: again\nsteps: []\n", 2, "duplicate key 'name'"),
    (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    container: nope\n",
        5,
        "unknown container 'nope'",
    ),
]


def _validate(tmp_path: Path, text: str, *args: str):
    wf = tmp_path / "wf.yaml"
    wf.write_text(text)
    return wf, CliRunner().invoke(main, ["validate", str(wf), *args])


def test_valid_workflow_exits_0(tmp_path: Path) -> None:
    _, res = _validate(tmp_path, GOOD)
    assert res.exit_code == 0, res.output
    assert "valid (2 steps, 6 elements)" in res.output


@pytest.mark.parametrize("text,line,fragment", CASES)
def test_problem_reported_with_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    wf, res = _validate(tmp_path, text)
    assert res.exit_code == 2, res.output
    assert f"{wf}:{line}: " in res.stderr, res.stderr
    assert fragment in res.stderr, res.stderr
    assert "Traceback" not in res.output


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        name: demo
        steps:
          - name: a
            run: x
            after: [nope]
          - name: a
            run: y
            resources: {cpus: 0}
        """)
    wf, res = _validate(tmp_path, text)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and ":8: " in lines[0]  # schema errors come first...
    text = text.replace("resources: {cpus: 0}", "resources: {cpus: 1}")
    wf, res = _validate(tmp_path, text)
    lines = res.stderr.strip().splitlines()
    assert {ln.split(": ", 1)[0] for ln in lines} == {f"{wf}:5", f"{wf}:6"}  # ...then the graph


def test_billion_laughs_is_bounded(tmp_path: Path) -> None:
    lol = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lol.append(
            f"{chr(97 + i)}: &{chr(97 + i)} " + "[" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]"
        )
    wf, res = _validate(tmp_path, "\n".join(lol) + "\nname: demo\nsteps: []\n")
    assert res.exit_code == 2
    assert "document too large" in res.stderr


def test_set_unknown_param_is_an_error(tmp_path: Path) -> None:
    _, res = _validate(tmp_path, GOOD, "--set", "nn=4")
    assert res.exit_code == 2
    assert "unknown parameter 'nn' (did you mean 'n'?) (known: n)" in res.stderr


def test_set_changes_element_count(tmp_path: Path) -> None:
    _, res = _validate(tmp_path, GOOD, "--set", "n=10")
    assert res.exit_code == 0 and "20 elements" in res.output


@pytest.mark.parametrize(
    "resources,fragment",
    [
        ("{gpus: 1}", "has no GPUs; use partition: gpu"),
        ("{gpus: 3, partition: gpu}", "3 GPUs per node but partition 'gpu' has 2 per node"),
        ("{time: 2d}", "time 2d is over partition 'debug''s limit of 1d"),
        ("{partition: bigmem}", "partition 'bigmem' is not in site 'lab'"),
    ],
)
def test_site_limits(tmp_path: Path, site_file: Path, resources: str, fragment: str) -> None:
    text = f"name: demo\nsteps:\n  - name: a\n    run: x\n    resources: {resources}\n"
    wf, res = _validate(tmp_path, text)
    assert res.exit_code == 0  # no site: nothing to check against
    res = CliRunner().invoke(main, ["--site", str(site_file), "validate", str(wf)])
    assert res.exit_code == 2
    assert f"{wf}:5: " in res.stderr and fragment in res.stderr, res.stderr


def test_gpu_step_valid_on_gpu_partition(tmp_path: Path, site_file: Path) -> None:
    text = "name: demo\nsteps:\n  - name: a\n    run: x\n    resources: {gpus: 2, partition: gpu}\n"
    wf, _ = _validate(tmp_path, text)
    res = CliRunner().invoke(main, ["--site", str(site_file), "validate", str(wf)])
    assert res.exit_code == 0, res.output


def test_foreach_file_csv_column(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_text("event_id,name\n7,a\n9,b\n11,c\n")
    text = (
        "name: demo\nsteps:\n  - name: a\n    run: x\n    foreach:\n"
        "      e: {file: storms.csv, column: event_id}\n"
    )
    _, res = _validate(tmp_path, text)
    assert res.exit_code == 0 and "3 elements" in res.output
    _, res = _validate(tmp_path, text.replace("event_id}", "nope}"))
    assert res.exit_code == 2 and "no column 'nope'" in res.stderr


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("5", 5),
        ("2.5", 2.5),
        ("true", True),
        ("[A, B]", ["A", "B"]),
        ("x #", "x #"),
        ("a: b", "a: b"),
        ("'q'", "'q'"),
        ("", ""),
    ],
)
def test_set_value_parsing(raw: str, expected: object) -> None:
    from hpcflow.spec.expand import _set_value

    assert _set_value(raw) == expected
