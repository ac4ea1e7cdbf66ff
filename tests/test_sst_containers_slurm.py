"""The containerised SST example (examples/sst) end to end on the lab cluster, every step a
real Charliecloud container: blocks -> catalog -> SST -> HMS per event -> RAS A, B per event ->
RAS C after both -> conformance (afterany)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import counts, status, submit

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def image(slurm) -> None:
    build = Path(__file__).resolve().parent.parent / "examples/sst/image/build"
    p = subprocess.run(["bash", str(build)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_sst_chain_in_containers(image, hpcflow, repo: Path, site_file: Path) -> None:
    sub = submit(hpcflow, site_file, repo / "examples/sst/workflow.yaml")
    assert [(j["step"], j["array"]) for j in sub["jobs"]] == [
        ("blocks", None),
        ("catalog", None),
        ("sst", None),
        ("hms", "0-11"),
        ("ras", "0-11"),
        ("ras", "0-11"),
        ("ras_c", "0-11"),
        ("conformance", None),
    ]
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {
        "blocks": {"COMPLETED": 1},
        "catalog": {"COMPLETED": 1},
        "sst": {"COMPLETED": 1},
        "hms": {"COMPLETED": 12},
        "ras": {"COMPLETED": 24},
        "ras_c": {"COMPLETED": 12},
        "conformance": {"COMPLETED": 1},
    }
    root = Path(sub["run_dir"], "ffrd/scenario-a")
    blocks = json.loads((root / "blocks.json").read_text())
    assert [(b["realization_index"], b["block_event_start"]) for b in blocks] == [
        (1, 1),
        (1, 4),
        (2, 7),
        (2, 10),
    ]
    storms = (root / "storms.csv").read_text().splitlines()
    assert len(storms) == 13 and storms[0].startswith("event_id,")
    for e in range(1, 13):
        for d in (1, 24, 48, 72):
            assert (root / f"summary-data/hydrology/{d}h_peaks_{e}.csv").is_file()
        for unit in "ABC":
            assert (root / f"event-data/{e}/hydraulics/{unit}/wse.csv").is_file()
    # event 7 failed once inside its job and was retried there (the FFRD failed-events log)
    hms7 = next(t for t in doc["steps"]["hms"]["tasks"] if t["item"]["event"] == 7)
    assert hms7["result"]["attempts"] == 2 and hms7["outputs"]["event"] == 7
    assert (root / "logs/hydrology/failed_events_7.csv").read_text() == "event_id\n7\n"
    # unit C read both A and B of its own event
    c7 = (root / "event-data/7/hydraulics/C/wse.csv").read_text().splitlines()[1]
    a7 = int((root / "event-data/7/hydraulics/A/wse.csv").read_text().split(",")[-1])
    b7 = int((root / "event-data/7/hydraulics/B/wse.csv").read_text().split(",")[-1])
    peak7 = hms7["outputs"]["peak_cfs"]
    assert c7 == f"C,{100 + peak7 // 100 + (a7 + b7) // 10}"
    conf = json.loads((root / "summary-data/conformance.json").read_text())
    assert conf == {"events": 12, "units": "A B C", "missing": [], "ok": True}
    freq = (root / "summary-data/frequency.csv").read_text().splitlines()
    assert len(freq) == 5 and freq[1].endswith(",0.2000")


def test_conformance_catches_a_missing_artifact(
    image, hpcflow, repo: Path, site_file: Path
) -> None:
    sub = submit(hpcflow, site_file, repo / "examples/sst/workflow.yaml", "break_event=5")
    w = hpcflow("watch", sub["run_id"], "--timeout", "300", "--interval", "1")
    assert w.returncode == 1, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    c = counts(doc)
    assert c["ras_c"] == {"COMPLETED": 11, "FAILED": 1}
    assert c["conformance"] == {"FAILED": 1}  # it ran (afterany) and found the gap
    assert c["ras"] == {"COMPLETED": 24}
    root = Path(sub["run_dir"], "ffrd/scenario-a")
    conf = json.loads((root / "summary-data/conformance.json").read_text())
    assert conf["ok"] is False and conf["missing"] == ["event-data/5/hydraulics/C/wse.csv"]
