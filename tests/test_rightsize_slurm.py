"""Right-sizing across campaign batches on the lab (docs/campaigns.md#right-sizing), and the
campaign's tick digests posted to a real HTTP server on 127.0.0.1 (docs/notify.md)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .helpers import lab_site
from .web_server import serving
from .webhook_server import check_schema, webhook

pytestmark = pytest.mark.slurm

# events 1-3 hold 40 MB; from event 4 on, 250 MB: the second batch, sized from the first,
# runs out of memory, is escalated (x4) and completes; the third must never ask that little
WORKFLOW = """\
name: rs
params: {events: [1], big_from: 4}
defaults:
  resources: {mem: 1G, time: 10m}
steps:
  - name: hms
    foreach: {event: {values: "{{ params.events }}"}}
    retry: {attempts: 2, on_oom: {mem_factor: 4}}
    run: >-
      python3 -c "import time; big = {{ item.event }} >= {{ params.big_from }};
      x = b'1' * ((250 if big else 40) * 1024 * 1024); time.sleep(3)"
"""


def _j(hpcflow, *args: str) -> dict:
    p = hpcflow(*args, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def _req_mem(job: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "--format=ReqMem", "-j", job],
                         capture_output=True, text=True).stdout  # fmt: skip
    return out.splitlines()[0] if out.strip() else ""


def test_later_batches_ask_what_earlier_ones_used(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    (tmp_path / "workflow.yaml").write_text(WORKFLOW)
    with webhook() as hook:
        camp = tmp_path / "campaign.yaml"
        camp.write_text(yaml.safe_dump({
            "name": "rightsize", "workflow": "workflow.yaml", "site": str(site),
            "events": {"range": [1, 9]}, "batch_size": 3, "max_in_flight": 1,
            "batch_param": "events",
            "right_size": {"mem": "p95", "time": "p95", "margin": "20%", "min_samples": 3},
            "notify": [{"webhook": hook.url}]}))  # fmt: skip
        ticks = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ticks.append(_j(hpcflow, "campaign", "tick", str(camp)))
            st = _j(hpcflow, "campaign", "status", str(camp))
            if st["finished"]:
                break
            time.sleep(2)
        assert st["finished"], ticks[-3:]
        sent = len(hook.received)
        for _ in range(2):  # nothing new: no digest
            _j(hpcflow, "campaign", "tick", str(camp))
        assert len(hook.received) == sent
    assert st["events"]["done"] == 9, st
    b0, b1, b2 = st["batches"]
    # the first batch asks what the workflow says; the second what the first used
    assert "right_size" not in b0
    mem1 = b1["right_size"]["hms"]["mem"]
    assert mem1 in ("100M", "200M"), b1  # 40 MB + python, + 20%, rounded up
    assert b1["right_size"]["hms"]["time"] == "1m"
    runs = {b["index"]: b["run_id"] for b in st["batches"]}
    hist1 = _j(hpcflow, "history", runs[1])["events"]
    notes = [e["reason"] or "" for e in hist1]
    assert any(n.startswith(f"right_size: hms: mem 1024M -> {mem1}") for n in notes), notes
    # ... ran out of memory at that size, was escalated, and completed
    assert any(e["new_state"] == "OUT_OF_MEMORY" for e in hist1), hist1
    doc1 = _j(hpcflow, "status", runs[1], "--tasks")
    assert {t["state"] for t in doc1["steps"]["hms"]["tasks"]} == {"COMPLETED"}
    first = doc1["steps"]["hms"]["slurm_jobs"][0]
    assert _req_mem(first) == mem1
    # the third batch never asks for the size that ran out of memory, or less
    mem2 = b2["right_size"]["hms"]["mem"]
    assert int(mem2.rstrip("M")) > int(mem1.rstrip("M")), (mem1, mem2)
    hist2 = _j(hpcflow, "history", runs[2])["events"]
    assert any(f"-> {mem2}" in (e["reason"] or "") for e in hist2)
    # digests: one per tick that changed something, each valid, the right-sizing among them
    for doc in hook.received:
        check_schema(doc)
        assert doc["kind"] in ("campaign_tick", "run_end")
    digests = [d for d in hook.received if d["kind"] == "campaign_tick"]
    assert 3 <= len(digests) <= len(ticks)  # a batch submitted: news; nothing new: silence
    assert digests[-1]["finished"] and digests[-1]["events"]["done"] == 9
    assert any("right_size" in n for d in digests for n in d["notes"])
    ends = [d for d in hook.received if d["kind"] == "run_end"]
    assert sorted(d["run_id"] for d in ends) == sorted(runs.values())  # each batch's end once

    # the dashboard's view of the campaign: every event done, batch by batch (docs/web.md)
    with serving(tmp_path / "db" / "tracker.db", tmp_path, "--no-sync") as s:
        code, c, _ = s.get("/api/campaigns/rightsize")
        assert code == 200
        assert c["events"] == {"total": 9, "done": 9, "failed": 0, "running": 0, "pending": 0}
        assert [b["run_id"] for b in c["batches"]] == [runs[i] for i in range(3)]
        (listed,) = s.get("/api/campaigns")[1]["campaigns"]
        assert c["failed_events"] == [] and listed["batches"] == c["batches"]  # (the rate moves)
        code, html, _ = s.get("/campaigns")
        assert code == 200 and all(runs[i] in html for i in range(3))
