"""Data keeps its meaning, no element is silently dropped, and bad input is bounded:
duplicates, numbers as written, typed --set, range bounds, time units, input sizes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcflow.cli import main

from .helpers import run_measured


def wf(axis: str, extra_params: str = "", run: str = "echo {{ item.e }}") -> str:
    return textwrap.dedent(
        f"""\
        name: demo
        params:
          n: 3
          msg: hello
          flag: true
          any: null
        {extra_params}
        steps:
          - name: a
            foreach:
              e: {axis}
            run: {run}
        """
    )


def validate(tmp_path: Path, text: str, *args: str):
    (tmp_path / "wf.yaml").write_text(text)
    return CliRunner().invoke(main, ["validate", str(tmp_path / "wf.yaml"), *args])


@pytest.mark.parametrize(
    "values,line",
    [
        ("[1, 1, 2]", 11),
        ("[1, '1']", 11),
        ("[1, true]", 11),
        ("[1, 1.0]", 11),
        ("\n          - x\n          - y\n          - x", 15),
    ],
)
def test_duplicate_foreach_values_are_refused_at_their_line(
    tmp_path: Path, values: str, line: int
) -> None:
    res = validate(tmp_path, wf("{values: " + values + "}" if "\n" not in values else ""))
    if "\n" in values:
        text = wf("").replace("      e: \n", "      e:\n        values:" + values + "\n")
        res = validate(tmp_path, text)
    assert res.exit_code == 2, res.output
    assert f"wf.yaml:{line}:" in res.stderr and "must appear once" in res.stderr


def test_duplicate_csv_values_are_refused_at_the_csv_line(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_text("storm,x\n001,a\n002,b\n001,c\n")
    res = validate(tmp_path, wf("{file: storms.csv, column: storm}"))
    assert res.exit_code == 2
    assert "storms.csv:4:" in res.stderr and "'001'" in res.stderr


def test_csv_with_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_bytes("\ufeffstorm\n007\n08\n".encode())
    res = validate(tmp_path, wf("{file: storms.csv, column: storm}"))
    assert res.exit_code == 0, res.output
    assert "2 elements" in res.output


def test_non_utf8_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_bytes(b"storm\n1\n2\n\xff\xfe3\n")
    res = validate(tmp_path, wf("{file: storms.csv, column: storm}"))
    assert res.exit_code == 2
    assert "storms.csv:4: not UTF-8" in res.stderr


def render(tmp_path: Path, site_file: Path, text: str, *args: str):
    (tmp_path / "wf.yaml").write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["--site", str(site_file), "render", str(tmp_path / "wf.yaml"), "-o", str(out), *args]
    )
    return res, out


def test_storm_ids_stay_as_written(tmp_path: Path, site_file: Path) -> None:
    res, out = render(tmp_path, site_file, wf("{values: [007, 08, 1:30, no, 2026-01-02]}"))
    assert res.exit_code == 0, res.output
    tasks = (out / "scripts" / "a.0.tasks").read_text()
    for v in ("007", "08", "1:30", "no", "2026-01-02"):
        assert f"HPCFLOW_ITEM_e={v}" in tasks or f"HPCFLOW_ITEM_e='{v}'" in tasks, tasks


@pytest.mark.parametrize(
    "setting,expected",
    [
        ("msg=no", "'no'"),  # string param: the text as typed
        ("msg=007", "'007'"),
        ("any=no", "'no'"),  # untyped: strict YAML, so no stays text
        ("any=007", "'007'"),
        ("any=5", "5"),
        ("flag=no", "False"),  # bool param: yes/no accepted
        ("n=4", "4"),
    ],
)
def test_set_keeps_the_params_type(tmp_path: Path, setting: str, expected: str) -> None:
    from hpcflow.spec.validate import load_workflow

    (tmp_path / "wf.yaml").write_text(wf("{values: [1]}"))
    loaded = load_workflow(tmp_path / "wf.yaml", [setting])
    assert repr(loaded.params[setting.split("=")[0]]) == expected


@pytest.mark.parametrize(
    "setting,fragment",
    [
        ("n=1e9", "an integer parameter"),
        ("n=2.5", "an integer parameter"),
        ("flag=maybe", "give true or false"),
    ],
)
def test_set_with_the_wrong_type_is_an_error(tmp_path: Path, setting: str, fragment: str) -> None:
    res = validate(tmp_path, wf("{range: [1, '{{ params.n }}']}"), "--set", setting)
    assert res.exit_code == 2 and fragment in res.stderr


@pytest.mark.parametrize(
    "axis,setting",
    [
        ("{range: [1, 2.5]}", None),
        ("{range: [1, '{{ params.any }}']}", "any=1e9"),
        ("{range: [1, '{{ params.msg }}']}", "msg=ten"),
        ("{range: [1, true]}", None),
    ],
)
def test_range_bound_must_be_a_whole_number(tmp_path: Path, axis: str, setting: str) -> None:
    args = ["--set", setting] if setting else []
    res = validate(tmp_path, wf(axis), *args)
    assert res.exit_code == 2, res.output
    assert "not a whole number" in res.stderr and "wf.yaml:" in res.stderr


@pytest.mark.parametrize("time", ["10", "'10'", "1.5"])
def test_bare_number_time_is_refused_as_ambiguous(tmp_path: Path, time: str) -> None:
    text = wf("{values: [1]}") + f"    resources: {{time: {time}}}\n"
    res = validate(tmp_path, text)
    assert res.exit_code == 2 and "ambiguous" in res.stderr
    assert f"write {time.strip(chr(39))}m" in res.stderr


def test_time_with_units_is_accepted(tmp_path: Path) -> None:
    res = validate(tmp_path, wf("{values: [1]}") + "    resources: {time: '10:00'}\n")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "text_of",
    [
        lambda: wf("{range: [1, 1000000000000]}"),
        lambda: wf("{range: [1, 1000]}").replace(
            "      e: {range: [1, 1000]}",
            "      e: {range: [1, 1000]}\n      f: {range: [1, 1000]}\n      g: {range: [1, 1000]}",
        ),
    ],
)
def test_huge_expansion_is_refused_before_it_happens(tmp_path: Path, text_of) -> None:
    (tmp_path / "wf.yaml").write_text(text_of())
    m = run_measured(["validate", "wf.yaml"], tmp_path)
    assert m.returncode == 2, m.stderr
    assert "elements, over the bound of 2,000,000" in m.stderr and "--max-elements" in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500


def test_max_elements_flag_raises_the_bound(tmp_path: Path) -> None:
    text = wf("{range: [1, 3000]}")
    res = validate(tmp_path, text, "--max-elements", "2000")
    assert res.exit_code == 2 and "3,000 elements" in res.stderr
    res = validate(tmp_path, text, "--max-elements", "5000")
    assert res.exit_code == 0, res.output


def test_set_1e9_ends_quickly(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(wf("{range: [1, '{{ params.any }}']}"))
    m = run_measured(["validate", "wf.yaml", "--set", "any=1e9"], tmp_path)
    assert m.returncode == 2 and "not a whole number" in m.stderr
    m = run_measured(["validate", "wf.yaml", "--set", "any=1000000000"], tmp_path)
    assert m.returncode == 2 and "over the bound" in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500


def test_validate_dev_zero_is_refused_quickly(tmp_path: Path) -> None:
    m = run_measured(["validate", "/dev/zero"], tmp_path)
    assert m.returncode == 2 and "/dev/zero:1:" in m.stderr and "character device" in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500 and "Traceback" not in m.stderr


def test_big_yaml_without_aliases_gets_an_honest_message(tmp_path: Path) -> None:
    big = wf("{values: [1]}") + "description: |\n" + ("  " + "x" * 99 + "\n") * 200_000
    (tmp_path / "wf.yaml").write_text(big)
    m = run_measured(["validate", "wf.yaml"], tmp_path)
    assert m.returncode == 2 and "over 16 MB" in m.stderr and "alias" not in m.stderr


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (tmp_path / "wf.yaml").write_text("\n".join(lines) + "\nname: demo\n")
    m = run_measured(["validate", "wf.yaml"], tmp_path)
    assert m.returncode == 2 and "counting every alias expansion" in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500


def test_a_250000_value_inline_list_works_in_seconds(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(250_000))
    (tmp_path / "wf.yaml").write_text(wf("{values: [" + values + "]}"))
    m = run_measured(["validate", "wf.yaml"], tmp_path)
    assert m.returncode == 0, m.stderr
    assert "250000 elements" in m.stdout
    # a hang or blow-up guard (quadratic work would take minutes); the speed itself is a
    # benchmark's: about 5 s here
    assert m.seconds < 30 and m.max_rss_mb < 500


@pytest.mark.parametrize(
    "content,line,fragment",
    [
        (b"name: demo\nsteps:\n  - {name: a, run: \x00x}\n", 3, "NUL byte"),
        (b"name: demo\n# caf\xe9\nsteps: []\n", 2, "not UTF-8"),
    ],
)
def test_binary_workflow_names_the_line(
    tmp_path: Path, content: bytes, line: int, fragment: str
) -> None:
    (tmp_path / "wf.yaml").write_bytes(content)
    res = CliRunner().invoke(main, ["validate", str(tmp_path / "wf.yaml")])
    assert res.exit_code == 2 and f"wf.yaml:{line}: {fragment}" in res.stderr


def test_campaign_csv_duplicates_and_ids_as_written(tmp_path: Path, repo: Path) -> None:
    from hpcflow.campaign.spec import load_campaign
    from hpcflow.errors import InvalidInput

    (tmp_path / "wf.yaml").write_text(
        wf("{values: '{{ params.events }}'}", "  events: []")
        .replace("      e: {", "      event: {")
        .replace("item.e", "item.event")
    )
    (tmp_path / "events.csv").write_bytes("\ufeffid\n007\n08\n9\n".encode())
    camp = {
        "name": "c",
        "workflow": "wf.yaml",
        "site": str(repo / "site_configs" / "lab.yaml"),
        "events": {"file": "events.csv", "column": "id"},
        "batch_size": 2,
        "batch_param": "events",
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(camp))
    lc = load_campaign(tmp_path / "c.yaml")
    assert lc.events == ["007", "08", "9"]
    (tmp_path / "events.csv").write_text("id\n1\n2\n01\n1\n")
    with pytest.raises(InvalidInput, match=r"events.csv:5: value '1' \(#4\) repeats"):
        load_campaign(tmp_path / "c.yaml")
