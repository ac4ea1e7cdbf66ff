"""Limit-aware plans on the lab: the real QOS lab-tiny (MaxSubmitJobsPerUser=2), what `validate
--site` reports, `pack: auto` from the live limit, and site configs from `sites init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .helpers import REPO, counts, status, submit

pytestmark = pytest.mark.slurm

WF = """\
name: tiny
cleanup: never
steps:
  - name: a
    foreach: {i: {range: [1, 20]}}
    PACK
    run: echo {{ item.i }} > out
"""


def test_validate_reports_what_fits_lab_tiny(hpcflow, slurm, tmp_path: Path, lab_site) -> None:
    site = lab_site(defaults={"qos": "lab-tiny"})
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK", ""))
    doc = json.loads(hpcflow("--site", str(site), "validate", str(wf), "--json", check=True).stdout)
    plan = doc["plan"]
    assert plan["limits"]["submit_limit"] == 2
    assert plan["limits"]["submit_limit_source"] == "QOS lab-tiny MaxSubmitJobsPerUser"
    assert plan["limits"]["max_array_size"] == 10001  # read from scontrol
    assert (plan["array_tasks"], plan["sbatch_calls"], plan["fits"]) == (20, 1, False)
    assert plan["suggest_pack"] == {"pack": 10, "steps": ["a"], "array_tasks": 2, "sbatch_calls": 1}
    text = hpcflow("--site", str(site), "validate", str(wf), check=True).stdout
    assert "does NOT fit" in text and "pack: 10 on a would make it 2 task(s)" in text
    wf.write_text(WF.replace("PACK", "pack: 10"))
    doc = json.loads(hpcflow("--site", str(site), "validate", str(wf), "--json", check=True).stdout)
    assert (doc["plan"]["array_tasks"], doc["plan"]["fits"]) == (2, True)


@pytest.mark.lab_alone
def test_pack_auto_fits_the_live_limit(hpcflow, slurm, tmp_path: Path, lab_site) -> None:
    site = lab_site(defaults={"qos": "lab-tiny"}, limits={"max_array_size": None})
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF.replace("PACK", "pack: auto"))
    sub = submit(hpcflow, site, wf)  # unpacked, Slurm would refuse 20 tasks under lab-tiny
    assert [j["array"] for j in sub["jobs"]] == ["0-1"]
    assert hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1").returncode == 0
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 20}}
    assert doc["steps"]["a"]["pack"] == {"size": 10, "parallel": 1}


def test_sites_init_writes_a_site_that_checks(hpcflow, slurm, tmp_path: Path) -> None:
    out = tmp_path / "made.yaml"
    hpcflow("sites", "init", "made", "-o", str(out), check=True)
    doc = yaml.safe_load(out.read_text())
    assert doc["limits"]["max_array_size"] == 10001
    assert doc["partitions"]["debug"]["default"] is True and doc["partitions"]["gpu"]["gpus"] == 2
    assert doc["partitions"]["debug"]["max_time"] == "1-00:00:00"
    assert "with --qos=lab-tiny: at most 2 queued" in out.read_text()
    check = hpcflow("sites", "check", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    assert hpcflow("sites", "init", "made", "-o", str(out)).returncode == 2  # no overwrite


def test_example_production_site(hpcflow, slurm, tmp_path: Path) -> None:
    example = REPO / "examples/sites/production.yaml"
    assert hpcflow("sites", "check", str(example), "--offline").returncode == 0
    doc = yaml.safe_load(example.read_text())
    doc["login"]["host"] = None  # compare it with the lab itself
    local = tmp_path / "prod.yaml"
    local.write_text(yaml.safe_dump(doc))
    check = hpcflow("sites", "check", str(local))
    assert check.returncode == 2
    assert "partition 'compute' does not exist on the cluster" in check.stderr
