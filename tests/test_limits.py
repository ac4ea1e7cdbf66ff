"""Cluster limits without Slurm: parsing captured sacctmgr/sinfo output (lab, Slurm 22.05), which
limit applies, the cache's time to live, the pack `validate --site` suggests, and the site
config `sites init` writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from hpcflow.compile.plan import compile_plan
from hpcflow.runners.base import Result
from hpcflow.slurm.limits import (
    Association,
    ClusterLimits,
    Qos,
    cluster_limits,
    parse_assoc,
    parse_qos,
    submit_limit,
)
from hpcflow.slurm.planning import suggest_pack
from hpcflow.slurm.siteinit import parse_partitions, site_yaml
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow

CAP = Path(__file__).parent / "captured"


def test_parse_lab_assoc_and_qos() -> None:
    assocs = parse_assoc((CAP / "sacctmgr-assoc.txt").read_text())
    assert assocs == [
        Association("research", qos=("lab-tiny", "normal")),
        Association("root", qos=("normal",)),
    ]
    qos = parse_qos((CAP / "sacctmgr-qos.txt").read_text())
    assert qos == {"normal": Qos("normal"), "lab-tiny": Qos("lab-tiny", max_submit_pu=2)}


CL = ClusterLimits(
    user="u",
    max_array_size=1001,
    max_job_count=10_000,
    assocs=[
        Association("proj", max_submit=500, default_qos="std"),
        Association("proj", partition="gpu", max_submit=50),
        Association("other", grp_submit=300),
    ],
    qos={"std": Qos("std", max_submit_pu=1000), "tiny": Qos("tiny", max_submit_pu=2)},
)


@pytest.mark.parametrize(
    ("account", "qos", "configured", "want"),
    [
        ("proj", None, None, (500, "association proj MaxSubmitJobs")),  # partition-less row
        ("proj", "tiny", None, (2, "QOS tiny MaxSubmitJobsPerUser")),
        ("proj", None, 100, (100, "site limits.max_submit_jobs")),
        ("other", None, None, (300, "association other GrpSubmitJobs")),
        ("nobody", None, None, (10_000, "MaxJobCount (all users)")),
    ],
)
def test_submit_limit_is_the_smallest_that_applies(account, qos, configured, want) -> None:
    got = submit_limit(CL, account, qos, configured)
    assert (got.limit, got.source) == want


class Counting:
    """A runner that answers like the lab's Slurm and counts what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **kw: object) -> Result:
        self.calls.append(argv)
        out = {
            "scontrol": (CAP / "scontrol-show-config.txt").read_text(),
            "sacctmgr": (
                CAP / ("sacctmgr-qos.txt" if "qos" in argv else "sacctmgr-assoc.txt")
            ).read_text(),
        }[argv[0]]
        return Result(argv, 0, out, "")


def test_limits_cached_per_site_for_their_time_to_live(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HPCFLOW_CACHE", str(tmp_path / "cache"))
    r = Counting()
    first = cluster_limits(r, "lab", "root", ttl_s=3600)
    assert len(r.calls) == 3 and first.qos["lab-tiny"].max_submit_pu == 2
    again = cluster_limits(r, "lab", "root", ttl_s=3600)
    assert len(r.calls) == 3 and again == first  # from the cache, Slurm not asked
    cache = tmp_path / "cache/limits-lab-root.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    doc = json.loads(cache.read_text())
    doc["fetched_at"] = time.time() - 7200  # two hours old
    cache.write_text(json.dumps(doc))
    cluster_limits(r, "lab", "root", ttl_s=3600)
    assert len(r.calls) == 6


WF = """\
name: fit
steps:
  - name: a
    foreach: {e: {range: [1, 1000]}}
    run: 'true'
  - name: b
    foreach: {e: {range: [1, 1000]}, u: {values: [x, y]}}
    after: {a: each}
    run: 'true'
  - {name: c, after: [b], run: 'true'}
"""


def test_suggested_pack_fits_the_limit(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WF)
    plan = compile_plan(load_workflow(tmp_path / "wf.yaml"), None, 1001, "r", "/r")
    got = suggest_pack(plan, 100, 1000, 1001)
    # a: ceil(1000/N); b: two arrays (one per u) of ceil(1000/N); c: 1 -> N = 31: 33*3+1 = 100
    assert got == {"pack": 31, "steps": ["a", "b"], "array_tasks": 100, "sbatch_calls": 4}
    assert suggest_pack(plan, 3, 1000, 1001) is None  # c and three arrays cannot fit in 3


def test_suggested_pack_fits_the_sbatch_call_limit(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WF)
    plan = compile_plan(load_workflow(tmp_path / "wf.yaml"), None, 10, "r", "/r")
    assert sum(len(sp.jobs) for sp in plan.steps.values()) == 301  # 3 x 100 chunks + c
    got = suggest_pack(plan, None, 31, 10)
    # calls: 1 + 3 * ceil(ceil(1000/N) / 10) <= 31 -> ceil(1000/N) <= 100 -> N = 10
    assert got == {"pack": 10, "steps": ["a", "b"], "array_tasks": 301, "sbatch_calls": 31}
    assert suggest_pack(plan, None, 3, 10) is None


def test_sites_init_text_is_a_valid_site(tmp_path: Path) -> None:
    parts = parse_partitions(
        (CAP / "sinfo-init.txt").read_text() + "a100|gpu:a100:4(S:0-1)|2-00:00:00|64|1000000+\n"
        "weird name|(null)|infinite|1|1\n"
    )
    assert set(parts) == {"debug", "gpu", "a100"}
    assert parts["debug"].default and not parts["gpu"].default
    assert (parts["a100"].gpus, parts["a100"].gpu_type, parts["a100"].mem_mb) == (
        4,
        "a100",
        1000000,
    )
    text = site_yaml("made", parts, 10001, "lab", "research", ["account research: QOS x"])
    f = tmp_path / "made.yaml"
    f.write_text(text)
    site = load_site(str(f))
    assert site.limits.max_array_size == 10001 and site.partitions["a100"].gpu_type == "a100"
    assert site.partitions["debug"].max_time == 86400  # 1-00:00:00, in seconds
    assert "# " in text and yaml.safe_load(text)["account"] == "research"
