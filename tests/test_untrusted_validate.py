"""validate refuses what could only fail at run time (docs/workflow-format.md, docs/limits.md,
docs/site-configs.md, docs/cli.md): yes/no where a number goes, a number compared with text
in `when:`, a relative scratch, a missing job_templates directory, a node too small for
cpus x parallel, a plan of too many sbatch calls (with the pack that fits), a render into a
directory of other files, and campaigns of ten million events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcflow.cli import main

from .helpers import REPO, lab_site, run_measured


def _validate(tmp_path: Path, text: str, *args: str, json_out: bool = False):
    wf = tmp_path / "wf.yaml"
    wf.write_text(text)
    return CliRunner().invoke(main, [*args, "validate", str(wf), *(["--json"] * json_out)])


@pytest.mark.parametrize(
    ("resources", "line", "shown"),
    [
        ("{cpus: true}", 4, "true"),
        ("{cpus: 2, gpus: false}", 4, "false"),
        ("{nodes: true}", 4, "true"),
    ],
)
def test_yes_no_where_a_number_goes_is_refused(
    tmp_path: Path, resources: str, line: int, shown: str
) -> None:
    text = f"name: x\nsteps:\n  - name: a\n    resources: {resources}\n    run: c\n"
    r = _validate(tmp_path, text)
    assert r.exit_code == 2, r.output
    assert f"wf.yaml:{line}:" in r.stderr and f"{shown} is a yes/no value" in r.stderr, r.stderr


def test_yes_no_in_a_list_of_exit_codes_is_refused(tmp_path: Path) -> None:
    r = _validate(
        tmp_path, "name: x\nsteps:\n  - name: a\n    retry: {exit_codes: [1, true]}\n    run: c\n"
    )
    assert r.exit_code == 2 and "wf.yaml:4:" in r.stderr and "[1, true]" in r.stderr, r.stderr


WHEN = """\
name: w
params: {{n: 3, tag: x}}
steps:
  - name: a
    foreach: {{i: {{values: ["1", "2", "10"]}}, j: {{range: [1, 2]}}}}
    when: "{when}"
    run: c
"""


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("item.i > 5", "item.i is text and is compared with a number (>): this fails at run time"),
        ("item.i == 5", "is false for every element"),
        ("item.i != 5", "is true for every element"),
        ("index > 0 and item.j >= 'a'", "'a' is text and is compared with a number (>=)"),
        ("params.tag < 3", "params.tag is text"),
    ],
)
def test_a_number_compared_with_text_in_when_is_refused(
    tmp_path: Path, when: str, says: str
) -> None:
    r = _validate(tmp_path, WHEN.format(when=when))
    assert r.exit_code == 2, r.output
    assert "wf.yaml:6:" in r.stderr and says in r.stderr, r.stderr


@pytest.mark.parametrize(
    "when", ["item.i == '5'", "item.j > 1", "item.i in ['1', '2']", "params.n >= index"]
)
def test_like_compared_with_like_in_when_is_fine(tmp_path: Path, when: str) -> None:
    r = _validate(tmp_path, WHEN.format(when=when))
    assert r.exit_code == 0, r.stderr


def test_a_dynamic_axis_is_text(tmp_path: Path) -> None:
    text = (
        "name: d\nsteps:\n  - name: p\n    run: c\n  - name: a\n    after: {p: ok}\n"
        "    foreach: {e: {from: {step: p, file: e.txt}}}\n    when: item.e > 3\n    run: c\n"
    )
    r = _validate(tmp_path, text)
    assert r.exit_code == 2 and "wf.yaml:8:" in r.stderr and "item.e is text" in r.stderr


WF = "name: x\nsteps:\n  - name: a\n    run: c\n"


def test_a_relative_scratch_is_refused(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    text = site.read_text()
    site.write_text(text.replace(f"scratch: {tmp_path / 'scratch'}", "scratch: scratch/{user}"))
    assert "scratch: scratch/{user}" in site.read_text()
    r = _validate(tmp_path, WF, "--site", str(site))
    assert r.exit_code == 2, r.output
    assert "site.yaml:" in r.stderr and "'scratch/{user}' is a relative path" in r.stderr


def test_a_missing_job_templates_directory_is_refused(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", job_templates="my-templates")
    r = _validate(tmp_path, WF, "--site", str(site))
    assert r.exit_code == 2, r.output
    assert f"job_templates: {tmp_path / 'my-templates'} does not exist" in r.stderr, r.stderr
    (tmp_path / "my-templates").mkdir()
    assert _validate(tmp_path, WF, "--site", str(site)).exit_code == 0


def test_cpus_times_parallel_beyond_a_node_is_refused(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    text = (
        "name: p\nsteps:\n  - name: a\n    foreach: {i: {range: [1, 100]}}\n"
        "    resources: {cpus: 8, time: 1m}\n    pack: {parallel: 4}\n    run: c\n"
    )
    r = _validate(tmp_path, text, "--site", str(site))
    assert r.exit_code == 2 and "wf.yaml:6:" in r.stderr, r.stderr
    assert "asks for 32 CPUs but a node of partition 'debug' has 16" in r.stderr


def test_fifty_thousand_sbatch_calls_do_not_fit_and_a_pack_is_suggested(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 2})
    text = (
        "name: many\nsteps:\n  - name: a\n    foreach: {e: {range: [1, 100000]}}\n"
        "    resources: {time: 10m}\n    run: c\n"
    )
    r = _validate(tmp_path, text, "--site", str(site), json_out=True)
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["sbatch_calls"] == 50_000 and plan["fits"] is False
    assert plan["calls_fit"] is False and plan["limits"]["max_sbatch_calls"] == 1000
    assert plan["suggest_pack"] == {
        "pack": 50, "steps": ["a"], "array_tasks": 2000, "sbatch_calls": 1000
    }  # fmt: skip
    from hpcflow.cli.plan_text import report_text

    text_out = report_text(plan)  # what validate prints without --json
    assert "sbatch calls: 50,000, over the site's limits.max_sbatch_calls 1,000" in text_out
    assert "pack: 50 on a would make it 2000 task(s) in 1000 sbatch call(s)" in text_out


RENDER = """\
name: r
steps:
  - name: a
    foreach: {{e: {{range: [1, {n}]}}}}
    run: c
  - name: {other}
    run: c
"""


def _render(tmp_path: Path, site: Path, out: Path, **fmt: object):
    (tmp_path / "wf.yaml").write_text(RENDER.format(**fmt))
    return CliRunner().invoke(
        main, ["--site", str(site), "render", str(tmp_path / "wf.yaml"), "-o", str(out)]
    )


def test_render_again_clears_only_what_it_wrote(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    out = tmp_path / "out"
    assert _render(tmp_path, site, out, n=30, other="b").exit_code == 0
    assert (out / "scripts/b.sh").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "scripts/mine.sh").write_text("mine")
    r = _render(tmp_path, site, out, n=3, other="c")
    assert r.exit_code == 0 and "the 7 files of the earlier render removed" in r.stdout
    assert not (out / "scripts/b.sh").exists() and not (out / "scripts/b.0.tasks").exists()
    assert (out / "scripts/c.sh").is_file() and (out / "notes.txt").read_text() == "mine"
    assert (out / "scripts/mine.sh").read_text() == "mine"


def test_render_into_a_directory_of_other_files_is_refused(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    r = _render(tmp_path, site, out, n=3, other="b")
    assert r.exit_code == 2 and "is not empty and no earlier render wrote it" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]  # nothing written


def test_a_manifest_cannot_make_render_remove_files_elsewhere(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    out = tmp_path / "out"
    assert _render(tmp_path, site, out, n=3, other="b").exit_code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "link").symlink_to(victim)
    (out / ".hpcflow-render.json").write_text(
        json.dumps({"files": ["../victim.txt", str(victim), "link", "plan.txt"]})
    )
    assert _render(tmp_path, site, out, n=3, other="b").exit_code == 0
    assert victim.read_text() == "keep" and (out / "link").is_symlink()


def _campaign(tmp_path: Path, events: dict) -> Path:
    doc = {
        "name": "big",
        "workflow": str(REPO / "examples/campaign/workflow.yaml"),
        "site": "lab",
        "events": events,
        "batch_size": 500,
        "batch_param": "events",
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_a_campaign_of_ten_million_events_is_refused_by_its_bound(tmp_path: Path) -> None:
    c = _campaign(tmp_path, {"range": [1, 10_000_000]})
    m = run_measured(["campaign", "validate", str(c)], tmp_path)
    assert m.returncode == 2 and "10,000,000 events, over the bound of 2,000,000" in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 300, (m.seconds, m.max_rss_mb)


def test_a_campaign_events_file_of_ten_million_lines_is_refused_small(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_bytes(b"storm\n" + b"S1234567\n" * 10_000_000)
    c = _campaign(tmp_path, {"file": "storms.csv", "column": "storm"})
    m = run_measured(["campaign", "validate", str(c)], tmp_path)
    assert m.returncode == 2 and "over the bound of 2,000,000" in m.stderr, m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500, (m.seconds, m.max_rss_mb)


@pytest.mark.parametrize(
    ("kind", "args", "says"),
    [
        ("site", ["--site", "{f}", "validate", "{wf}"], "a site config must be a YAML mapping"),
        ("workflow", ["validate", "{f}"], "a workflow file must be a YAML mapping"),
        ("campaign", ["campaign", "validate", "{f}"], "a campaign file must be a YAML mapping"),
    ],
)
def test_every_file_kind_must_be_a_mapping(tmp_path: Path, kind: str, args, says: str) -> None:
    """One loader for workflows, sites, campaigns and overrides: the same first check."""
    f = tmp_path / f"{kind}.yaml"
    f.write_text("- just\n- a list\n")
    (tmp_path / "wf.yaml").write_text(WF)
    argv = [a.format(f=f, wf=tmp_path / "wf.yaml") for a in args]
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 2 and f"{f}:1: {says}" in r.stderr, r.stderr
