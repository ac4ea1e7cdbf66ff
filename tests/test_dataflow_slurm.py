"""Data flow on the lab cluster: when: conditions evaluated at element start, SKIPPED and its
propagation, `when: always`, fan-in manifests, outputs copied to results (and refused when a
match leaves the element's directory), compensation steps, status --tasks enrichment."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from .helpers import counts, lab_site, status, submit

pytestmark = pytest.mark.slurm

WORKFLOW = """
name: flow
params: {threshold: 6}
steps:
  - name: gen
    foreach: {event: {range: [1, 5]}}
    run: |
      echo "{\\"peak\\": $(( {{ item.event | raw }} * 2 ))}" > outputs.json
      mkdir -p out && echo "e{{ item.event }}" > out/peak.txt
    outputs: ["out/*.txt", "outputs.json"]
  - name: route
    after: {gen: each}
    foreach: {event: {range: [1, 5]}}
    when: upstream.gen.outputs.peak >= params.threshold and item.event != 5
    run: echo routed > routed.txt
  - name: downstream
    after: {route: each}
    foreach: {event: {range: [1, 5]}}
    run: echo ran > ran.txt
  - name: always
    after: {route: each}
    foreach: {event: {range: [1, 5]}}
    when: always
    run: echo ran > ran.txt
  - name: fanin
    after: {downstream: any}
    run: cp "$HPCFLOW_MANIFEST" seen.json
  - name: undo
    after: {gen: notok}
    run: echo compensating
  - name: badkey
    after: {gen: each}
    foreach: {event: {values: [1]}}
    when: upstream.gen.outputs.nokey == 1
    run: echo never
  - name: leak
    outputs: ["*.txt"]
    run: ln -s /etc/hostname stolen.txt && echo ok > fine.txt
"""


def test_conditions_skips_manifest_outputs(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        paths={"results": str(tmp_path / "results")},
    )
    wf = tmp_path / "flow.yaml"
    wf.write_text(textwrap.dedent(WORKFLOW))
    sub = submit(hpcflow, site, wf)
    w = hpcflow("watch", sub["run_id"], "--timeout", "240", "--interval", "1")
    assert w.returncode == 1, w.stdout + w.stderr  # badkey and leak fail on purpose
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {
        "gen": {"COMPLETED": 5},
        "route": {"COMPLETED": 2, "SKIPPED": 3},
        "downstream": {"COMPLETED": 2, "SKIPPED": 3},
        "always": {"COMPLETED": 5},
        "fanin": {"COMPLETED": 1},
        "undo": {"SKIPPED": 1},
        "badkey": {"FAILED": 1},
        "leak": {"FAILED": 1},
    }
    steps = doc["steps"]
    assert steps["undo"]["role"] == "compensation for gen"
    by_event = {t["item"]["event"]: t for t in steps["route"]["tasks"]}
    assert {e for e, t in by_event.items() if t["state"] == "COMPLETED"} == {3, 4}
    assert by_event[1]["reason"] == "skipped: when: condition is false"
    assert by_event[1]["result"]["state"] == "SKIPPED"
    down = {t["item"]["event"]: t for t in steps["downstream"]["tasks"]}
    assert down[5]["reason"] == "skipped: upstream route element was skipped"
    assert not Path(down[5]["task_dir"], "ran.txt").exists()
    assert Path(down[3]["task_dir"], "ran.txt").exists()
    # enrichment: what the element wrote and what its wrapper recorded
    gen3 = next(t for t in steps["gen"]["tasks"] if t["item"]["event"] == 3)
    assert gen3["outputs"] == {"peak": 6}
    assert gen3["result"]["exit_code"] == 0 and gen3["result"]["attempts"] == 1
    # the fan-in manifest lists every upstream element with its final state and outputs
    fan = steps["fanin"]["tasks"][0]
    manifest = json.loads(Path(fan["task_dir"], "seen.json").read_text())
    ups = manifest["upstreams"]["downstream"]
    assert ups["states"] == {"SKIPPED": 3, "COMPLETED": 2}
    assert [e["item"]["event"] for e in ups["elements"]] == [1, 2, 3, 4, 5]
    # a condition that cannot be evaluated fails the element with a message, never skips it
    bad = steps["badkey"]["tasks"][0]
    assert bad["exit_code"] == 95
    err = Path(sub["run_dir"], "logs/badkey/0/0.err").read_text()
    assert "outputs.json has no 'nokey'" in err
    # outputs land in results/<workflow>/<run>/<step>/<shard>/<index>/...
    res = tmp_path / "results" / "flow" / sub["run_id"]
    assert (res / "gen/0/2/out/peak.txt").read_text() == "e3\n"
    assert json.loads((res / "gen/0/4/outputs.json").read_text()) == {"peak": 10}
    # a match that leaves the element's directory is refused and fails the element
    leak = steps["leak"]["tasks"][0]
    assert leak["exit_code"] == 93
    assert not (res / "leak/0/0/stolen.txt").exists()
    assert (
        "stolen.txt leaves the element's directory"
        in Path(sub["run_dir"], "logs/leak/0/0.err").read_text()
    )
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    outside = [p for p in written if not p.startswith(("scratch/", "results/", "db/"))]
    assert outside == ["flow.yaml", "site.yaml"]


def _site_with(tmp_path: Path, **changes: object) -> Path:
    sections: dict = {}
    for key, value in changes.items():
        section, field = key.split("__")
        sections.setdefault(section, {})[field] = value
    site = lab_site(
        tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001}, **sections
    )
    return site


CLEANUP = """
name: tidy
cleanup: {policy}
steps:
  - name: work
    foreach: {{i: {{range: [1, 3]}}}}
    run: echo data > data.txt; test {{{{ item.i }}}} -ne {fail}
"""


@pytest.mark.parametrize(
    ("policy", "fail", "removed", "cleanup_state"),
    [
        ("on_success", 0, True, "COMPLETED"),
        ("on_success", 2, False, "UPSTREAM_FAILED"),
        ("always", 2, True, "COMPLETED"),
    ],
)
def test_cleanup_job(
    slurm, hpcflow, tmp_path: Path, policy: str, fail: int, removed: bool, cleanup_state: str
) -> None:
    site = _site_with(tmp_path)
    wf = tmp_path / "tidy.yaml"
    wf.write_text(CLEANUP.format(policy=policy, fail=fail))
    sub = submit(hpcflow, site, wf)
    assert [j["step"] for j in sub["jobs"]] == ["work", "hpcflow-cleanup"]
    w = hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1")
    assert w.returncode == (0 if fail == 0 else 1), w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc)["hpcflow-cleanup"] == {cleanup_state: 1}
    assert doc["steps"]["hpcflow-cleanup"]["role"] == "cleanup"
    assert Path(sub["run_dir"]).exists() is not removed
    # nothing but the run directory went: its parent and the rest of scratch are intact
    assert Path(sub["run_dir"]).parent.is_dir()


def test_lustre_striping(slurm, hpcflow, tmp_path: Path) -> None:
    """With lustre.stripe_count set, `lfs setstripe -c N RUN_DIR` is run on the empty run
    directory; without lfs (as here) the run goes ahead with a note in its history. lfs is a
    recording stand-in: this machine has no Lustre."""
    site = _site_with(tmp_path, lustre__stripe_count=4)
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nsteps:\n  - name: a\n    run: 'true'\n")
    sub = submit(hpcflow, site, wf)
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    notes = [e["reason"] for e in hist["events"] if e["new_state"] == "NOTE"]
    assert len(notes) == 1 and notes[0].startswith(
        "lustre.stripe_count=4 not applied: lfs: command not found"
    ), notes
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "lfs-calls"
    (fake / "lfs").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "lfs").chmod(0o755)
    args = ["--site", str(site), "submit", str(wf), "--json"]
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    sub2 = json.loads(hpcflow(*args, check=True, extra_env=env).stdout)
    assert calls.read_text() == f"setstripe -c 4 {sub2['run_dir']}\n"
    hist = json.loads(hpcflow("history", sub2["run_id"], "--json", check=True).stdout)
    notes = [e["reason"] for e in hist["events"] if e["new_state"] == "NOTE"]
    assert notes == [f"lfs setstripe -c 4 {sub2['run_dir']}"]
