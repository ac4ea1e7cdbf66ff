"""What a run used, on the lab (docs/efficiency.md): known memory and CPU time reported
within 15%, usage asked of sacct once per finished chunk, a suggestion never below a request
an element ran out of, and overrides that round-trip through submit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .browser import opened
from .helpers import counts, recording_sacct, status, submit
from .webhook_server import check_schema, webhook

pytestmark = pytest.mark.slurm

# 200 MB held (bytes filled in, so resident) while 2 s of CPU burn after it
BURN = (
    "python3 -c \"import time; x = b'1' * (200 * 1024 * 1024); t = time.process_time()\n"
    'while time.process_time() - t < {secs}: pass\n"'
)
WF = f"""\
name: eff
steps:
  - name: burn
    foreach: {{i: {{range: [1, 3]}}}}
    resources: {{mem: 1G, time: 10m}}
    run: |
      {BURN.format(secs=2).replace(chr(10), chr(10) + "      ")}
  - name: packed
    foreach: {{i: {{range: [1, 4]}}}}
    pack: 2
    resources: {{mem: 1G, time: 5m}}
    run: |
      {BURN.format(secs=1).replace(chr(10), chr(10) + "      ")}
  - name: oom
    resources: {{mem: 100M}}
    run: python3 -c "import time; x = b'1' * (600 * 1024 * 1024); time.sleep(3)"
"""

USAGE_FORMAT = "--format=JobID,State,AllocCPUS"


@pytest.mark.browser
def test_efficiency_reports_what_elements_used(slurm, hpcflow, tmp_path: Path, lab_site) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    with webhook() as hook:  # the site notifies a run's end (docs/notify.md)
        site_file = lab_site(limits={"max_array_size": 1001}, notify=[{"webhook": hook.url}])
        sub = submit(hpcflow, site_file, wf)
        env = recording_sacct(tmp_path)
        w = hpcflow("watch", sub["run_id"], "--timeout", "240", "--interval", "1", extra_env=env)
    assert w.returncode == 1, w.stdout + w.stderr  # the oom step fails
    (end,) = hook.received
    check_schema(end)
    assert (end["run_id"], end["state"]) == (sub["run_id"], "FAILED")
    assert [(f["step"], f["state"]) for f in end["failures"]] == [("oom", "OUT_OF_MEMORY")]
    assert counts(status(hpcflow, sub["run_id"])) == {
        "burn": {"COMPLETED": 3}, "packed": {"COMPLETED": 4}, "oom": {"OUT_OF_MEMORY": 1}
    }  # fmt: skip
    p = hpcflow("efficiency", sub["run_id"], "--json", check=True, extra_env=env)
    doc = json.loads(p.stdout)["steps"]

    burn = doc["burn"]
    assert burn["elements"] == burn["measured"] == 3
    # memory: 200 MB held by each element (plus the interpreter's ~10 MB), from sacct MaxRSS
    assert 200 * 0.85 <= burn["mem"]["p50_mb"] <= 200 * 1.15 + 10, burn
    assert burn["mem"]["requested_mb"] == 1024 and burn["cpu"]["requested"] == 1
    # CPU: 2 s burnt per element (process_time, so never less), plus filling 200 MB and
    # starting python and the job script: ~0.5 s each on a busy 2-core machine
    assert 6.0 * 0.97 <= burn["cpu"]["used_s"] <= 6.0 + 3 * 0.75, burn
    assert 2.0 <= burn["elapsed"]["p50_s"] <= 10 and burn["elapsed"]["limit_s"] == 600
    # efficiency: CPU time over CPUs x elapsed (the lab runs 16 "CPUs" on 2 cores: elements
    # that share a core wait, so it is well under 1 here)
    reserved_s = burn["core_hours"]["reserved"] * 3600
    assert burn["cpu"]["efficiency"] == pytest.approx(burn["cpu"]["used_s"] / reserved_s, rel=0.05)
    assert 0.05 <= burn["cpu"]["efficiency"] <= 1.0, burn
    # suggestion: p95 + 20%, far below the 1G asked for
    suggested = burn["suggest"]["mem"]
    assert suggested in ("300M", "400M"), burn["suggest"]

    # packed elements: CPU and elapsed time measured by the job script, per element
    packed = doc["packed"]
    assert packed["measured"] == 4
    # (an element's time counted for its task's other element too would be 8 s)
    assert 4.0 * 0.97 <= packed["cpu"]["used_s"] <= 4.0 + 4 * 0.75, packed
    # ... and each element's own peak, from the job tool's wait4 (200 MB + the interpreter)
    assert 200 * 0.85 <= packed["mem"]["p50_mb"] <= 200 * 1.15 + 10, packed

    # the element that ran out of memory at 100M: never suggested less than that
    oom = doc["oom"]
    assert oom["ran_out"] == {"memory": 1, "time": 0}
    assert oom["suggest"]["mem"] == "200M" and "ran out of memory at 100M" in str(oom["suggest"])

    # usage: one sacct with step rows per finished chunk, never -X, never asked again
    calls = [c for c in (tmp_path / "calls").read_text().splitlines() if USAGE_FORMAT in c]
    asked = [i for c in calls for i in c.split("-j ", 1)[1].split(",")]
    jobs = {j["slurm_job_id"] for j in sub["jobs"]}
    assert set(asked) == jobs and all(asked.count(j) <= 2 for j in jobs), calls
    assert not any(c.split()[0] == "-X" for c in calls)
    before = len((tmp_path / "calls").read_text().splitlines())
    again = json.loads(hpcflow("efficiency", sub["run_id"], "--json", extra_env=env).stdout)
    assert again["steps"] == json.loads(p.stdout)["steps"]
    assert len((tmp_path / "calls").read_text().splitlines()) == before  # nothing re-asked

    # the human table
    table = hpcflow("efficiency", sub["run_id"], check=True).stdout
    assert "burn" in table and "suggest mem: " in table and "ran out: 1 of memory" in table

    # --write-overrides -> submit --overrides: the next run asks for the suggestion
    ov = tmp_path / "ov.yaml"
    hpcflow("efficiency", sub["run_id"], "--write-overrides", str(ov), check=True)
    assert yaml.safe_load(ov.read_text())["steps"]["burn"]["resources"]["mem"] == suggested
    val = hpcflow("--site", str(site_file), "validate", str(wf), "--overrides", str(ov))
    assert val.returncode == 0, val.stderr
    sub2 = json.loads(
        hpcflow(
            "--site",
            str(site_file),
            "submit",
            str(wf),
            "--overrides",
            str(ov),
            "--json",
            check=True,
        ).stdout  # fmt: skip
    )
    burn_job = next(j["slurm_job_id"] for j in sub2["jobs"] if j["step"] == "burn")
    req = subprocess.run(["scontrol", "show", "job", burn_job], capture_output=True, text=True)
    hpcflow("cancel", sub2["run_id"], check=True)
    assert f"mem={suggested}" in req.stdout.replace("MinMemoryNode", "mem"), req.stdout

    # the report of this run, in a real headless Chromium
    out = tmp_path / "report.html"
    hpcflow("report", sub["run_id"], "-o", str(out), check=True)
    doc = status(hpcflow, sub["run_id"])
    with opened(out) as b:
        assert b.console_errors == [] and b.requests == [out.resolve().as_uri()]
        for name, st in doc["steps"].items():
            for state, n in st["states"].items():
                cell = b.page.locator(f'td[data-step="{name}"][data-state="{state}"]')
                assert cell.inner_text() == str(n), (name, state)
        body = b.page.locator("body").inner_text()
        assert "OUT_OF_MEMORY" in body and "oom[0] OUT_OF_MEMORY: last lines of stderr" in body
        assert "attempt 1" in body  # the wrapper's own line in the element's stderr
        b.screenshot("report-lab.png")
