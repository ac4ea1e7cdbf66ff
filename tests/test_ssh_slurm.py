"""hpcflow from a "workstation" over SSH: a real sshd on 127.0.0.1, submitting to the lab
cluster through it; host keys verified; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import counts, ssh_site, status

pytestmark = pytest.mark.slurm

WF = """\
name: remote
steps:
  - name: a
    foreach: {i: {range: [1, 4]}}
    run: echo "element {{ item.i }} on $(hostname)" | tee out.txt
  - name: b
    after: {a: any}
    run: cat ../../../a/0/*/out.txt > all.txt
"""


def _accepted(sshd: dict) -> int:
    return sshd["log"].read_text().count("Accepted publickey")


def test_submit_and_track_over_ssh(slurm, sshd, hpcflow, tmp_path: Path) -> None:
    site = ssh_site(tmp_path / "site.yaml", tmp_path / "scratch", sshd)
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    before = _accepted(sshd)
    p = hpcflow("--site", str(site), "submit", str(wf), "--json")
    assert p.returncode == 0, p.stderr
    assert _accepted(sshd) == before + 1  # one connection for the whole command
    sub = json.loads(p.stdout)
    w = hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 4}, "b": {"COMPLETED": 1}}
    # read over SSH once, by the refresh that saw it end (one batched sh), and stored
    assert doc["steps"]["a"]["tasks"][0]["result"]["exit_code"] == 0
    all_txt = Path(sub["run_dir"], "steps/b/0/0/all.txt").read_text()
    assert all_txt.count("element ") == 4
    logs = hpcflow("logs", sub["run_id"], "a", "2")
    assert logs.returncode == 0 and logs.stdout.startswith("element 3 on "), logs.stdout
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    assert hist["events"][-1]["new_state"] == "COMPLETED"
