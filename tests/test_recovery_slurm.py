"""Recovery on the lab cluster: retry with dependency repair, --mem-factor, resolve,
compensation steps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import counts, status, submit

pytestmark = pytest.mark.slurm

FLAKY = """\
name: flaky
params: {flags: /nonexistent}
defaults: {resources: {mem: 256M}}  # --mem-factor multiplies what hpcflow asked for
steps:
  - name: a
    foreach: {e: {range: [1, 6]}}
    run: test $(( {{ item.e }} % 3 )) != 0 || test -e {{ params.flags }}/ok-{{ item.e }}
  - name: b
    after: {a: each}
    foreach: {e: {range: [1, 6]}}
    run: echo b{{ item.e }} > out
  - {name: c, after: [b], run: 'cat {{ run_dir }}/steps/b/0/*/out > all'}
  - {name: d, after: {b: any}, run: 'true'}
"""


def run_to_end(hpcflow, run_id: str) -> int:
    w = hpcflow("watch", run_id, "--timeout", "300", "--interval", "1")
    print(w.stdout, w.stderr)
    return w.returncode


def test_retry_two_failed_with_dependents_repaired(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    wf = tmp_path / "flaky.yaml"
    wf.write_text(FLAKY)
    sub = submit(hpcflow, site_file, wf, f"flags={flags}")
    assert run_to_end(hpcflow, sub["run_id"]) == 1
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {
        "a": {"COMPLETED": 4, "FAILED": 2},
        "b": {"COMPLETED": 4, "UPSTREAM_FAILED": 2},
        "c": {"UPSTREAM_FAILED": 1},
        "d": {"COMPLETED": 1},
    }
    (flags / "ok-3").touch()
    (flags / "ok-6").touch()
    r = json.loads(
        hpcflow("retry", sub["run_id"], "--mem-factor", "2", "--json", check=True).stdout
    )
    assert r["resubmitted"] == 5 and r["by_step"] == {"a": 2, "b": 2, "c": 1}
    assert [(j["step"], j["array"]) for j in r["jobs"]] == [("a", "2,5"), ("b", "2,5"), ("c", None)]
    assert run_to_end(hpcflow, sub["run_id"]) == 0
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {
        "a": {"COMPLETED": 6},
        "b": {"COMPLETED": 6},
        "c": {"COMPLETED": 1},
        "d": {"COMPLETED": 1},
    }
    all_out = Path(sub["run_dir"], "steps/c/0/0/all").read_text().split()
    assert sorted(all_out) == [f"b{e}" for e in range(1, 7)]
    retried = {t["index"]: t for t in doc["steps"]["a"]["tasks"]}
    assert retried[2]["attempts"] == 2 and retried[0]["attempts"] == 1
    new_a = r["jobs"][0]["slurm_job_id"]
    mem = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=ReqMem", "-j", new_a], capture_output=True, text=True
    ).stdout.split()
    assert set(mem) == {"512M"}, mem  # 256M * 2
    b_dep = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID", "-j", r["jobs"][1]["slurm_job_id"]],
        capture_output=True,
        text=True,
    )
    assert b_dep.stdout.split() == [
        f"{r['jobs'][1]['slurm_job_id']}_2",
        f"{r['jobs'][1]['slurm_job_id']}_5",
    ]
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    assert any(e["reason"] == "hpcflow retry --mem-factor 2.0" for e in hist["events"])
    # the retried attempt's log is appended to the same element log
    err = hpcflow("logs", sub["run_id"], "a", "2", "--stderr", check=True).stdout
    assert err.count("attempt 1 on") == 2
    events = [json.loads(x) for x in Path(sub["run_dir"], "events.jsonl").read_text().splitlines()]
    assert len(events) == len(hist["events"])
    assert hpcflow("retry", sub["run_id"], check=True).stdout.endswith("nothing to retry\n")


def test_resolve_releases_dependents(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "flaky.yaml"
    wf.write_text(FLAKY.replace("range: [1, 6]", "range: [1, 3]"))
    sub = submit(hpcflow, site_file, wf)
    assert run_to_end(hpcflow, sub["run_id"]) == 1
    out = hpcflow("resolve", sub["run_id"], "a", "2", check=True).stdout
    assert "a[2] RESOLVED; released 2 dependent element(s)" in out  # b[2] and c
    assert run_to_end(hpcflow, sub["run_id"]) == 0
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc)["a"] == {"COMPLETED": 2, "RESOLVED": 1}
    assert counts(doc)["b"] == {"COMPLETED": 3} and counts(doc)["c"] == {"COMPLETED": 1}
    bad = hpcflow("resolve", sub["run_id"], "a", "0")
    assert bad.returncode == 1 and "only a failed element can be resolved" in bad.stderr


def test_compensation_step_skipped_when_not_needed(
    slurm, hpcflow, tmp_path: Path, site_file: Path
) -> None:
    wf = tmp_path / "saga.yaml"
    wf.write_text(
        "name: saga\nparams: {rc: 0}\nsteps:\n  - {name: work, run: 'exit {{ params.rc }}'}\n"
        "  - {name: undo, after: {work: notok}, run: 'true'}\n"
    )
    ok = submit(hpcflow, site_file, wf)
    assert run_to_end(hpcflow, ok["run_id"]) == 0
    assert counts(status(hpcflow, ok["run_id"])) == {
        "work": {"COMPLETED": 1},
        "undo": {"SKIPPED": 1},
    }
    bad = submit(hpcflow, site_file, wf, "rc=4")
    assert run_to_end(hpcflow, bad["run_id"]) == 1
    assert counts(status(hpcflow, bad["run_id"])) == {
        "work": {"FAILED": 1},
        "undo": {"COMPLETED": 1},
    }
