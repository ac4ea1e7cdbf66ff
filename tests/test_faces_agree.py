"""Every face of hpcflow tells the same story about the same database (issue 25): `status
--json`, `runs --json`, `campaign status --json`, the dashboard's /api/*, the report's data
and the run_end notice document. Scenario runs are recorded by hpcflow's own submit path,
then given the states a run that ran would have; their run state is the one hpcflow derives
(store/runstate.py). Each scenario also names what a user would expect, so faces that
agree on a wrong answer fail too."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from .helpers import campaign_file, in_process, lab_site
from .web_server import serving

WF = """\
name: faces
steps:
  - name: hms
    foreach: {event: {range: [1, 4]}}
    run: 'true'
  - name: ras
    after: {hms: each}
    foreach: {event: {range: [1, 4]}}
    resources: {mem: 1G}
    retry: {attempts: 2, on_oom: {mem_factor: 2}}
    run: 'true'
"""
DYNAMIC = """\
name: faces-dyn
steps:
  - {name: sample, run: 'true'}
  - name: hms
    after: [sample]
    foreach: {event: {from: {step: sample, file: events.csv, column: event}}}
    run: 'true'
"""
C, F = "COMPLETED", "FAILED"
# scenario -> (workflow, states per step, run cancelled, what a user expects:
#              run state, elements failed, sync due, dynamic state)
SCENARIOS: dict[str, tuple[str, dict[str, list[str]], bool, tuple[str, int, bool, str | None]]] = {
    "completed": (WF, {"hms": [C] * 4, "ras": [C] * 4}, False, ("COMPLETED", 0, False, None)),
    "partly-failed": (
        WF,
        {"hms": [C, F, C, C], "ras": [C, "UPSTREAM_FAILED", C, C]},
        False,
        ("FAILED", 2, False, None),
    ),  # fmt: skip
    "preempted": (
        WF,
        {"hms": [C] * 4, "ras": [C, C, "PREEMPTED", C]},
        False,
        ("FAILED", 1, False, None),
    ),  # fmt: skip
    "unknown": (
        WF,
        {"hms": [C] * 4, "ras": [C, C, "UNKNOWN", C]},
        False,
        ("RUNNING", 0, True, None),
    ),  # fmt: skip
    # ras has on_oom and one attempt used of 2: the sync resubmits it
    "oom-escalates": (
        WF,
        {"hms": [C] * 4, "ras": [C, "OUT_OF_MEMORY", C, C]},
        False,
        ("RUNNING", 1, True, None),
    ),  # fmt: skip
    # hms has no on_oom: nothing to do, the run has ended
    "oom-stays": (
        WF,
        {"hms": [C, "OUT_OF_MEMORY", C, C], "ras": [C, "UPSTREAM_FAILED", C, C]},
        False,
        ("FAILED", 2, False, None),
    ),  # fmt: skip
    "cancelled": (
        WF,
        {
            "hms": [C, C, "CANCELLED", "CANCELLED"],
            "ras": [C, "CANCELLED", "CANCELLED", "CANCELLED"],
        },
        True,
        ("CANCELLED", 5, False, None),
    ),  # fmt: skip
    "dyn-waiting": (
        DYNAMIC,
        {"sample": ["RUNNING"], "hpcflow-expand": ["PENDING"]},
        False,
        ("RUNNING", 0, True, "waiting"),
    ),  # fmt: skip
    "dyn-due": (
        DYNAMIC,
        {"sample": [C], "hpcflow-expand": [C]},
        False,
        ("RUNNING", 0, True, "waiting"),
    ),  # fmt: skip
    "dyn-skipped": (
        DYNAMIC,
        {"sample": [C], "hpcflow-expand": [C]},
        False,
        ("COMPLETED", 0, False, "skipped"),
    ),  # fmt: skip
    "dyn-failed": (
        DYNAMIC,
        {"sample": [C], "hpcflow-expand": [F]},
        False,
        ("FAILED", 1, False, "failed"),
    ),  # fmt: skip
    "dyn-upstream-failed": (
        DYNAMIC,
        {"sample": [F], "hpcflow-expand": ["UPSTREAM_FAILED"]},
        False,
        ("FAILED", 2, False, "upstream_failed"),
    ),  # fmt: skip
    "dyn-cancelled": (
        DYNAMIC,
        {"sample": ["CANCELLED"], "hpcflow-expand": ["CANCELLED"]},
        True,
        ("CANCELLED", 2, False, "cancelled"),
    ),  # fmt: skip
}
STORED_DYNAMIC = {"dyn-skipped": "skipped", "dyn-failed": "failed"}
CAMPAIGN = "faces-storms"


def _record(d: Path, site_path: Path, name: str, wf_text: str, sets: list[str]) -> str:
    from hpcflow.compile.plan import compile_plan
    from hpcflow.render.scripts import render_run
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow
    from hpcflow.store.db import open_db
    from hpcflow.tracker.submit import record_run

    site = load_site(str(site_path))
    wf = d / f"{name}.yaml"
    wf.write_text(wf_text)
    loaded = load_workflow(wf, sets, site)
    run_id = f"{name}-20261207-0000-aaaa"
    plan = compile_plan(loaded, site, 100_001, run_id, str(d / "runs" / name))
    engine = open_db(d / "t.db")
    record_run(engine, render_run(plan, loaded, site), loaded, site, None)
    engine.dispose()
    return run_id


def _settle(db: Path, run_id: str, states: dict[str, list[str]], cancelled: bool,
            dynamic: str | None = None) -> None:  # fmt: skip
    """Give the run's elements these states, and the run the state hpcflow derives."""
    from hpcflow.store.db import open_db
    from hpcflow.store.runstate import derived

    with sqlite3.connect(db) as c:
        c.execute("UPDATE job SET slurm_job_id = CAST(5000 + id AS TEXT), status = 'SUBMITTED', "
                  "usage_done = 1, submitted_at = '2026-12-07 00:00:00' WHERE run_id = ?",
                  (run_id,))  # fmt: skip
        for step, sts in states.items():
            for i, st in enumerate(sts):
                ended = st not in ("PENDING", "RUNNING", "UNKNOWN")
                c.execute('UPDATE task SET state = ?, attempts = ?, exit_code = ?, "end" = ? '
                          'WHERE run_id = ? AND step = ? AND "index" = ?',
                          (st, 1 if st != "PENDING" else 0, (1 if st == F else 0) if ended
                           else None, "2026-12-07T00:10:00" if ended else None, run_id, step,
                           i))  # fmt: skip
        if dynamic:
            c.execute("UPDATE step SET dynamic = json_set(dynamic, '$.state', ?, '$.reason', "
                      "'events.csv holds no values') WHERE run_id = ? AND json_type(dynamic) = "
                      "'object'", (dynamic, run_id))  # fmt: skip
        c.execute("UPDATE run SET cancelled = ? WHERE id = ?", (cancelled, run_id))
    engine = open_db(db)
    with engine.begin() as conn:
        state = derived(conn, run_id, "RUNNING", cancelled)
    engine.dispose()
    with sqlite3.connect(db) as c:
        ended = state in ("COMPLETED", "FAILED", "CANCELLED")
        c.execute("UPDATE run SET state = ?, finished_at = ?, refreshed_at = ? WHERE id = ?",
                  (state, "2026-12-07 00:20:00" if ended else None,
                   "2026-12-07 00:20:00" if ended else None, run_id))  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("faces")
    site = lab_site(d / "site.yaml", d / "scratch")
    db = d / "t.db"
    runs = {}
    for name, (wf, states, cancelled, _) in SCENARIOS.items():
        runs[name] = _record(d, site, name, wf, [])
        _settle(db, runs[name], states, cancelled, STORED_DYNAMIC.get(name))
    # a campaign: one 100-event batch whose run ended FAILED with one failed event
    camp = campaign_file(d, site, name=CAMPAIGN, events={"range": [1, 100]}, batch_size=100,
                         retry_failed=0, max_in_flight=1)  # fmt: skip
    wf_text = (d / "workflow.yaml").read_text()
    events = list(range(1, 101))
    batch_run = _record(d, site, "storm-batch", wf_text, [f"events={json.dumps(events)}"])
    _settle(db, batch_run, {"hms": [F if e == 7 else C for e in events], "summary": [C]}, False)
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO campaign (name, file, plan_hash, created_at, refusals, event_axis, "
                  "retry_failed) VALUES (?, ?, 'h', '2026-12-07 00:00:00', 0, 'event', 0)",
                  (CAMPAIGN, str(camp)))  # fmt: skip
        c.execute('INSERT INTO batch (campaign, "index", key, events, n_events, state, attempt, '
                  "run_id, retries, submitted_at) VALUES (?, 0, ?, ?, 100, 'SUBMITTED', 1, ?, 0, "
                  "'2026-12-07 00:00:00')", (CAMPAIGN, f"{CAMPAIGN}#0", json.dumps(events),
                                              batch_run))  # fmt: skip
    with serving(db, d, "--no-sync") as served:
        yield {"db": db, "runs": runs, "batch_run": batch_run, "camp": camp, "served": served}


def _faces(world: dict[str, Any], run_id: str) -> dict[str, dict[str, Any]]:
    """What each face says of a run: its state, elements per step and state, and failures."""
    from hpcflow.report.page import build
    from hpcflow.runners.base import LocalRunner
    from hpcflow.store.db import open_db
    from hpcflow.tracker.notify import run_end_doc

    cli = in_process(world["db"])
    st = json.loads(cli("status", run_id, "--json", "--no-refresh").stdout)
    listed = {r["run_id"]: r for r in json.loads(cli("runs", "--json").stdout)["runs"]}[run_id]
    code, api, _ = world["served"].get(f"/api/runs/{run_id}")
    assert code == 200, api
    api_listed = {r["run_id"]: r for r in world["served"].get("/api/runs")[1]["runs"]}[run_id]
    engine = open_db(world["db"], readonly=True)
    try:
        report = build(engine, LocalRunner(), run_id)
        with engine.connect() as conn:
            notice = run_end_doc(conn, run_id)
    finally:
        engine.dispose()

    def per_step(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {n: s["states"] for n, s in doc["steps"].items() if s["states"]}

    def dyn(doc: dict[str, Any]) -> str | None:
        return next((s["dynamic"]["state"] for s in doc["steps"].values() if "dynamic" in s),
                    None)  # fmt: skip

    def flat(counts: dict[str, dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for sts in counts.values():
            for k, n in sts.items():
                out[k] = out.get(k, 0) + n
        return out

    from hpcflow.facts import failed_count

    return {
        "status": {"state": st["state"], "steps": per_step(st), "dynamic": dyn(st),
                   "failed": failed_count(flat(per_step(st)))},
        "runs": {"state": listed["state"]},
        "api": {"state": api["state"], "steps": per_step(api), "dynamic": dyn(api),
                "failed": failed_count(flat(per_step(api)))},
        "api_runs": {"state": api_listed["state"], "elements": api_listed["counts"]},
        "report": {"state": report.status["state"], "steps": per_step(report.status),
                   "dynamic": dyn(report.status),
                   "failed": sum(g["count"] for g in report.failures),
                   "failed_states": sorted({g["state"] for g in report.failures})},
        "notice": {"state": notice["state"], "steps": notice["counts"],
                   "failed": sum(g["count"] for g in notice["failures"]),
                   "failed_states": sorted({g["state"] for g in notice["failures"]})},
    }  # fmt: skip


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_face_tells_the_same_story(world: dict[str, Any], scenario: str) -> None:
    from hpcflow.facts import FAILED

    run_id = world["runs"][scenario]
    state, n_failed, sync_due, dynamic = SCENARIOS[scenario][3]
    faces = _faces(world, run_id)
    assert {f: v["state"] for f, v in faces.items()} == dict.fromkeys(faces, state)
    steps = faces["status"]["steps"]
    for f in ("api", "report", "notice"):
        assert faces[f]["steps"] == steps, f
    every = {k: sum(s.get(k, 0) for s in steps.values()) for s in steps.values() for k in s}
    assert faces["api_runs"]["elements"] == every
    for f in ("status", "api", "report", "notice"):
        assert faces[f]["failed"] == n_failed, (f, faces[f])
    failed_states = sorted({k for k in every if k in {s.value for s in FAILED}})
    assert faces["report"]["failed_states"] == faces["notice"]["failed_states"] == failed_states
    assert faces["status"]["dynamic"] == faces["api"]["dynamic"] == faces["report"]["dynamic"]
    assert faces["status"]["dynamic"] == dynamic


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sync_due_is_one_decision(world: dict[str, Any], scenario: str) -> None:
    """The fast `status` (sqlite3 alone) asks for a sync exactly when the sync would do
    something: an escalation its retry policy allows, an expansion due, an active run never
    refreshed. A finished run with an OOM element its policy does not resubmit needs none."""
    from hpcflow.store import lite
    from hpcflow.store.db import open_db
    from hpcflow.store.runstate import escalatable, expansion_due

    run_id = world["runs"][scenario]
    conn = lite.connect_ro(world["db"])
    assert conn is not None
    try:
        fast = lite.sync_needed(conn, [lite.find_run(conn, run_id)])
    finally:
        conn.close()
    engine = open_db(world["db"], readonly=True)
    from sqlmodel import Session

    with Session(engine) as s:
        run_state = (
            s.connection().exec_driver_sql("SELECT state FROM run WHERE id = ?", (run_id,)).one()[0]
        )
        full = (
            bool(escalatable(s, run_id))
            or lite.expansion_due(s.connection().connection.driver_connection, run_id)
            or run_state in ("PENDING", "RUNNING")
        )
        open_ = expansion_due(s.connection(), run_id)
    engine.dispose()
    assert fast == full == SCENARIOS[scenario][3][2], (fast, full)
    assert open_ == (scenario in ("dyn-waiting", "dyn-due"))


def test_campaign_progress_is_one_count(world: dict[str, Any]) -> None:
    """A 100-event batch whose run failed on one event: 99 done and 1 failed, in `campaign
    status`, on the dashboard's API and page (where, before, the dashboard said 0 done)."""
    cli = in_process(world["db"])
    p = cli("campaign", "status", str(world["camp"]), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    code, api, _ = world["served"].get(f"/api/campaigns/{CAMPAIGN}")
    assert code == 200, api
    want = {"total": 100, "done": 99, "failed": 1, "running": 0, "pending": 0}
    assert doc["events"] == api["events"] == want
    failed = [{"event": 7, "batch": 0, "run_id": world["batch_run"], "steps": ["hms"],
               "states": ["FAILED"]}]  # fmt: skip
    assert doc["failed_events"] == api["failed_events"] == failed
    assert doc["throughput_per_hour"] == api["throughput_per_hour"]
    assert [b["state"] for b in doc["batches"]] == [b["state"] for b in api["batches"]]
    page = world["served"].get("/campaigns")[1]
    assert "99 of 100 events done · 1 failed" in page
