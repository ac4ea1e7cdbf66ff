"""Fan-out decided at run time, on the lab (docs/dynamic.md): a producer writes the events, the
deferred steps are laid out and submitted after it, by the hpcflow-expand job itself
(dynamic.expand_in: job) or by the next sync on the login node (login); every edge the issue
lists, and an expand job killed half-way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    REPO,
    counts,
    edit_yaml,
    lab_site,
    path_shim,
    ssh_site,
    status,
    submit,
    wait_until,
)

pytestmark = pytest.mark.slurm

EXAMPLE = REPO / "examples/dynamic/workflow.yaml"

# the producer copies a file the test prepared (or fails when it is missing)
EDGES = """
name: dyn-edges
params: {src: /nonexistent, fixed: /nonexistent}
steps:
  - name: sample
    run: cp {{ params.src }} events.csv
  - name: hms
    foreach:
      event: {from: {step: sample, file: events.csv, column: event}}
    after: {sample: ok}
    pack: 3
    run: |
      if [ {{ item.event }} = bad ] && [ ! -e {{ params.fixed }} ]; then exit 4; fi
      echo "hms {{ item.event }}"
  - name: ras
    foreach:
      event: {from: {step: sample, file: events.csv, column: event}}
      unit: {values: [u1, u2]}
    after: {hms: each}
    run: echo "ras {{ item.event }} {{ item.unit }}"
"""


def _site(tmp_path: Path, mode: str, **extra: object) -> Path:
    return lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        dynamic={"expand_in": mode},
        tracker={"poll_interval": "0s"},
        **extra,
    )


def _edges(tmp_path: Path, rows: list[str] | None) -> tuple[Path, list[str]]:
    wf = tmp_path / "edges.yaml"
    wf.write_text(EDGES)
    sets = []
    if rows is not None:
        src = tmp_path / "events-src.csv"
        src.write_text("\n".join(rows) + "\n")
        sets.append(f"src={src}")
    return wf, sets


def _ended(hpcflow, run_id: str, timeout: float = 120) -> dict:
    def done() -> dict | None:
        doc = status(hpcflow, run_id)
        return doc if doc["state"] not in ("PENDING", "RUNNING") else None

    return wait_until(done, timeout, every=1, what=f"run {run_id} to end")


def _task(doc: dict, step: str, index: int = 0) -> dict:
    return next(t for t in doc["steps"][step]["tasks"] if t["index"] == index)


@pytest.mark.parametrize("mode", ["login", "job"])
def test_three_step_dynamic_chain(slurm, hpcflow, tmp_path: Path, mode: str) -> None:
    """sample -> hms(each event) -> ras(each event x unit), one submission; before the
    expansion the deferred steps wait with an unknown total, afterwards real counts."""
    site = _site(tmp_path, mode)
    sub = submit(hpcflow, site, EXAMPLE, "sample_seconds=6")
    run_id = sub["run_id"]
    early = status(hpcflow, run_id)
    for step in ("hms", "ras"):
        assert early["steps"][step]["total"] is None
        assert early["steps"][step]["dynamic"] == {
            "state": "waiting",
            "producers": ["sample"],
            "reason": None,
        }
    text = hpcflow("status", run_id, check=True).stdout
    assert "waiting for sample" in text
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "COMPLETED", doc
    assert counts(doc) == {
        "sample": {"COMPLETED": 1},
        "hms": {"COMPLETED": 6},
        "ras": {"COMPLETED": 12},
        "hpcflow-expand": {"COMPLETED": 1},
    }
    assert doc["steps"]["hms"]["dynamic"]["state"] == "expanded"
    events = [t["item"]["event"] for t in doc["steps"]["hms"]["tasks"]]
    assert events == [f"storm-{17 * i % 997}" for i in range(1, 7)]
    # each ras element read its own hms element's output
    ras = doc["steps"]["ras"]["tasks"]
    for t in ras:
        log = hpcflow("logs", run_id, "ras", str(t["index"]), check=True).stdout
        assert log.splitlines() == [f"hms {t['item']['event']}", f"ras {t['item']['event']} "
                                    f"{t['item']['unit']}"]  # fmt: skip
    run_dir = Path(sub["run_dir"])
    assert json.loads((run_dir / "dynamic/plan.json").read_text())["sbatch_calls"] == 3
    submitted = run_dir / "dynamic/submitted.json"
    if mode == "job":
        ids = json.loads(submitted.read_text())  # the expand job submitted them ...
        tracked = {j for st in ("hms", "ras") for j in doc["steps"][st]["slurm_jobs"]}
        assert set(ids.values()) == tracked  # ... and the tracker adopted exactly those
    else:
        assert not submitted.exists()


def test_empty_expansion_skips_the_fan_out(slurm, hpcflow, tmp_path: Path) -> None:
    wf, sets = _edges(tmp_path, ["event"])  # a header, no events
    run_id = submit(hpcflow, _site(tmp_path, "job"), wf, *sets)["run_id"]
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "COMPLETED"
    for step in ("hms", "ras"):
        d = doc["steps"][step]["dynamic"]
        assert d["state"] == "skipped" and "holds no values" in d["reason"]
        assert doc["steps"][step]["states"] == {}
    wide = hpcflow("status", run_id, check=True, extra_env={"COLUMNS": "250"}).stdout
    assert "ras (SKIPPED: " in wide


@pytest.mark.parametrize("mode", ["login", "job"])
def test_malformed_file_fails_the_expansion_at_its_line(
    slurm, hpcflow, tmp_path: Path, mode: str
) -> None:
    wf, sets = _edges(tmp_path, ["event", "A", "B", "A"])  # A repeats on line 4
    sub = submit(hpcflow, _site(tmp_path, mode), wf, *sets)
    doc = _ended(hpcflow, sub["run_id"])
    assert doc["state"] == "FAILED"
    where = f"{sub['run_dir']}/steps/sample/0/0/events.csv:4:"
    expander = _task(doc, "hpcflow-expand")
    assert expander["state"] == "FAILED" and expander["reason"].startswith(where)
    assert "repeats 'A'" in expander["reason"]
    assert doc["steps"]["hms"]["dynamic"]["state"] == "failed"
    assert sum(doc["steps"]["ras"]["states"].values()) == 0  # nothing was submitted
    # the expand element's log says it too (from the job, or from the login node)
    log = hpcflow("logs", sub["run_id"], "hpcflow-expand", "0", check=True).stdout
    assert where in log


def test_expansion_over_the_element_bound_is_refused(slurm, hpcflow, tmp_path: Path) -> None:
    wf, sets = _edges(tmp_path, ["event", *[f"e{i}" for i in range(10)]])
    site = _site(tmp_path, "login", limits={"max_elements": 20})
    run_id = submit(hpcflow, site, wf, *sets)["run_id"]
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "FAILED"
    reason = _task(doc, "hpcflow-expand")["reason"]
    assert "makes 31 elements, over the bound of 20" in reason  # 1 + 10 + 10 x 2


def test_failed_producer_then_retry(slurm, hpcflow, tmp_path: Path) -> None:
    """No events file: the producer fails, the fan-out is UPSTREAM_FAILED (never run, never
    expanded); with the file in place `retry` reruns the producer and the expansion happens."""
    wf, _ = _edges(tmp_path, None)
    src = tmp_path / "later.csv"
    run_id = submit(hpcflow, _site(tmp_path, "login"), wf, f"src={src}")["run_id"]
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "FAILED"
    assert _task(doc, "hpcflow-expand")["state"] == "UPSTREAM_FAILED"
    assert doc["steps"]["hms"]["dynamic"]["state"] == "upstream_failed"
    wide = hpcflow("status", run_id, extra_env={"COLUMNS": "250"}).stdout
    assert "hms (not expanded: sample did not succeed)" in wide
    src.write_text("event\nx\ny\n")
    hpcflow("retry", run_id, check=True)
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "COMPLETED", counts(doc)
    assert counts(doc)["ras"] == {"COMPLETED": 4}


def test_packed_expanded_step_retries_only_its_failed_element(
    slurm, hpcflow, tmp_path: Path
) -> None:
    wf, sets = _edges(tmp_path, ["event", "a", "bad", "c", "d"])
    fixed = tmp_path / "fixed"
    run_id = submit(hpcflow, _site(tmp_path, "job"), wf, *sets, f"fixed={fixed}")["run_id"]
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "FAILED"
    assert doc["steps"]["hms"]["pack"] == {"size": 3, "parallel": 1}
    assert counts(doc)["hms"] == {"COMPLETED": 3, "FAILED": 1}
    assert counts(doc)["ras"] == {"COMPLETED": 6, "UPSTREAM_FAILED": 2}
    assert _task(doc, "hms", 1)["exit_code"] == 4
    fixed.touch()
    out = hpcflow("retry", run_id, "--json", check=True).stdout
    assert json.loads(out)["resubmitted"] == 3  # hms[1] and its two ras elements
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "COMPLETED"
    assert _task(doc, "hms", 1)["attempts"] == 2 and _task(doc, "hms", 0)["attempts"] == 1


def test_expand_job_killed_half_way_is_completed_not_duplicated(
    slurm, hpcflow, tmp_path: Path
) -> None:
    """kill -9 of the expander after its first sbatch: the login node adopts that job (from
    submitted.json), submits the others, and Slurm has every job name exactly once."""
    # the expander's second sbatch (the ras job) hangs: it is killed there, after the first
    shim = 'case "$*" in *.ras.*) sleep 120 ;; esac'
    path = path_shim(tmp_path, "sbatch", shim)
    site = _site(tmp_path, "job")
    wf, sets = _edges(tmp_path, ["event", "p", "q"])
    args = ["--site", str(site), "submit", str(wf), "--json", "--set", sets[0]]
    sub = json.loads(hpcflow(*args, check=True, extra_env={"PATH": path}).stdout)
    run_dir = Path(sub["run_dir"])
    ids_file = run_dir / "dynamic/submitted.json"
    wait_until(ids_file.exists, 120, what="the expander's first sbatch")
    wait_until(lambda: _running(f"{tmp_path}/shim/sbatch"), 60, what="the hung sbatch")
    kill = subprocess.run(["pkill", "-9", "-f", f"hpcflow.launch.expander {run_dir}"])
    assert kill.returncode == 0
    subprocess.run(["pkill", "-9", "-f", f"{tmp_path}/shim/sbatch"], check=True)
    first = json.loads(ids_file.read_text())
    assert len(first) == 1
    doc = _ended(hpcflow, sub["run_id"], timeout=180)
    assert doc["state"] == "COMPLETED", counts(doc)
    assert counts(doc)["ras"] == {"COMPLETED": 4}
    hms_jobs = doc["steps"]["hms"]["slurm_jobs"]
    assert hms_jobs == list(first.values())  # adopted, not submitted again
    rows = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,JobName", "-S", "now-1hour"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    jobs = {tuple(r.split("|")) for r in rows}  # array tasks share a JobID before the _
    jobs = {(jid.split("_")[0], name) for jid, name in jobs}
    mine = sorted(n for _, n in jobs if n.startswith(f"hpcflow.{sub['run_id']}."))
    assert len(mine) == len(set(mine)) == 5, mine  # sample, expand, hms, ras x 2: once each
    history = hpcflow("history", sub["run_id"], check=True).stdout
    assert "submitted by the expand job" in history


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_cancel_before_the_expansion(slurm, hpcflow, tmp_path: Path) -> None:
    site = _site(tmp_path, "login")
    run_id = submit(hpcflow, site, EXAMPLE, "sample_seconds=60")["run_id"]
    wait_until(
        lambda: status(hpcflow, run_id)["steps"]["sample"]["states"].get("RUNNING"),
        60,
        what="the producer to start",
    )
    hpcflow("cancel", run_id, check=True)
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "CANCELLED"
    assert _task(doc, "hpcflow-expand")["state"] == "CANCELLED"
    assert doc["steps"]["ras"]["dynamic"]["state"] == "cancelled"
    assert doc["steps"]["ras"]["total"] is None
    # the HTML report says so too
    out = tmp_path / "report.html"
    hpcflow("report", run_id, "-o", str(out), check=True)
    assert "ras (not expanded: cancelled)" in out.read_text()


def test_login_node_expansion_over_ssh(slurm, sshd, hpcflow, tmp_path: Path) -> None:
    """From a workstation: the producer's file is read, and the deferred steps' files
    written, over SFTP; the chain runs to the end."""
    site = ssh_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        sshd,
    )
    edit_yaml(site, tracker={"poll_interval": "0s"})
    run_id = submit(hpcflow, site, EXAMPLE, "n_storms=3")["run_id"]
    doc = _ended(hpcflow, run_id)
    assert doc["state"] == "COMPLETED", counts(doc)
    assert counts(doc)["ras"] == {"COMPLETED": 6}


OOM = """
name: dyn-oom
params: {src: /nonexistent}
steps:
  - name: sample
    run: cp {{ params.src }} events.csv
  - name: model
    foreach:
      event: {from: {step: sample, file: events.csv}}
    after: {sample: ok}
    resources: {mem: 100M}
    retry: {attempts: 2, on_oom: {mem_factor: 8}}
    run: |
      if [ {{ item.event }} = big ]; then
        python3 -c "import time; x = bytearray(600 * 1024 * 1024); time.sleep(3)"
      fi
      if [ {{ item.event }} = broken ]; then exit 5; fi
"""


def test_oom_escalation_and_resolve_on_an_expanded_step(slurm, hpcflow, tmp_path: Path) -> None:
    wf = tmp_path / "oom.yaml"
    wf.write_text(OOM)
    src = tmp_path / "events.txt"
    src.write_text("small\nbig\nbroken\n")  # one value per line: no column
    run_id = submit(hpcflow, _site(tmp_path, "login"), wf, f"src={src}")["run_id"]
    doc = _ended(hpcflow, run_id, timeout=180)
    by_event = {t["item"]["event"]: t for t in doc["steps"]["model"]["tasks"]}
    assert by_event["big"]["state"] == "COMPLETED" and by_event["big"]["attempts"] == 2
    hist = json.loads(hpcflow("history", run_id, "--json", check=True).stdout)["events"]
    assert any(e["reason"] == "automatic on_oom: mem_factor 8.0" for e in hist)
    assert by_event["broken"]["state"] == "FAILED" and doc["state"] == "FAILED"
    hpcflow("resolve", run_id, "model", str(by_event["broken"]["index"]), check=True)
    doc = status(hpcflow, run_id)
    assert doc["state"] == "COMPLETED", counts(doc)
    assert counts(doc)["model"] == {"COMPLETED": 2, "RESOLVED": 1}
