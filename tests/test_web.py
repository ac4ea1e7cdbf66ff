"""`hpcflow serve` against a real server process on 127.0.0.1, over a synthetic finished run
(docs/web.md): the API mirrors the CLI's JSON, pages and 404s, path traversal refused, a
token off loopback, actions only with --allow-actions and the token, CSRF on forms, escaping,
and the OpenAPI file in docs/ matches the app."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .helpers import REPO, in_process
from .synthetic import finished_run
from .web_server import serving

RUN = "synth-20261206-0000-aaaa"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("web")
    db, _ = finished_run(d, 100)
    evil = '<script>alert("x")</script>'
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET label = ?", (evil,))
        c.execute("UPDATE task SET reason = ? WHERE state = 'FAILED'", (evil,))
        avoided = [{"node": "n3", "why": f"12 of its 12 elements failed {evil}", "at": "2026"}]
        c.execute("UPDATE run SET nodes_avoided = ?", (json.dumps(avoided),))
    return db


@pytest.fixture(scope="module")
def served(synth: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for the read-only tests (each start costs an interpreter and FastAPI)."""
    with serving(synth, tmp_path_factory.mktemp("served"), "--no-sync") as s:
        yield s


def test_the_api_mirrors_the_cli(synth: Path, served) -> None:
    run = in_process(synth)
    cli, runs, hist = (
        json.loads(run(*args).stdout)
        for args in (("status", RUN, "--json"), ("runs", "--json"), ("history", RUN, "--json"))
    )
    s = served
    code, doc, headers = s.get(f"/api/runs/{RUN}")
    assert code == 200 and doc == cli
    assert [a["node"] for a in doc["nodes_avoided"]] == ["n3"]  # a black hole (faults.md)
    code, html, _ = s.get(f"/runs/{RUN}")
    assert code == 200 and 'data-node-avoided="n3"' in html and "avoiding node" in html
    assert "default-src 'none'" in headers["content-security-policy"]
    code, doc, _ = s.get("/api/runs")
    assert [r["run_id"] for r in doc["runs"]] == [r["run_id"] for r in runs["runs"]]
    assert doc["runs"][0]["counts"] == {"COMPLETED": 300, "FAILED": 1, "OUT_OF_MEMORY": 1}
    # elements, paged: every page of ras together is every element, once
    seen = []
    page, pages = 1, 1
    while page <= pages:
        code, p, _ = s.get(f"/api/runs/{RUN}/tasks?step=ras&page={page}&per_page=70")
        assert code == 200 and p["total"] == 200
        seen += [t["index"] for t in p["tasks"]]
        pages, page = p["pages"], page + 1
    assert sorted(seen) == list(range(200)) and pages == 3
    code, p, _ = s.get(f"/api/runs/{RUN}/tasks?state=OUT_OF_MEMORY")
    assert [(t["step"], t["index"]) for t in p["tasks"]] == [("ras", 1)]
    code, h, _ = s.get(f"/api/runs/{RUN}/history?per_page=5000")
    assert h["events"] == hist["events"]
    code, g, _ = s.get(f"/api/runs/{RUN}/graph")
    assert {(e["from"], e["kind"], e["to"]) for e in g["edges"]} == {
        ("sample", "afterok", "hms"), ("hms", "aftercorr", "ras"),
        ("ras", "afterany", "summarize")}  # fmt: skip
    code, m, _ = s.get(f"/api/runs/{RUN}/metrics")
    assert code == 200 and m["steps"]["ras"]["elements"] == 200
    code, t, _ = s.get(f"/api/runs/{RUN}/timeline")
    assert code == 200 and {ln["step"] for ln in t["lanes"]} == set(cli["steps"])
    assert s.get("/api/campaigns")[1] == {"campaigns": []}


def test_404s_and_paths_that_leave_the_run_directory(synth: Path, served) -> None:
    log = Path(sqlite3.connect(synth).execute("SELECT run_dir FROM run").fetchone()[0])
    err = log / "logs" / "ras" / "0" / "0.err"
    err.parent.mkdir(parents=True, exist_ok=True)
    err.write_text("".join(f"line {i}\n" for i in range(1000)))
    s = served
    code, doc, _ = s.get(f"/api/runs/{RUN}/logs/ras/0?stream=stderr&tail=3")
    assert code == 200 and doc["lines"] == ["line 997", "line 998", "line 999"]
    for path in ("/api/runs/nope", "/api/runs/nope/tasks", f"/api/runs/{RUN}/logs/nope/0",
                 f"/api/runs/{RUN}/logs/ras/99999", f"/api/runs/{RUN}/logs/ras/0?stream=x",
                 "/api/campaigns/nope", "/runs/nope"):  # fmt: skip
        assert s.get(path)[0] == 404, path
    for path in (f"/api/runs/{RUN}/logs/..%2F..%2F..%2Fetc/0",
                 f"/api/runs/{RUN}/logs/../../../../etc/passwd",
                 f"/api/runs/{RUN}/logs/ras/-1",
                 f"/api/runs/{RUN}/logs/ras/0?stream=../../etc/passwd"):  # fmt: skip
        code, doc, _ = s.get(path)
        assert code in (404, 422) and "root:" not in str(doc), (path, code)


def test_what_users_wrote_is_escaped_in_pages(served) -> None:
    s = served
    for path in ("/", f"/runs/{RUN}", f"/runs/{RUN}/tasks?state=FAILED"):
        code, html, _ = s.get(path)
        assert code == 200 and '<script>alert("x")' not in html, path
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in s.get(f"/runs/{RUN}")[1]


def test_a_token_is_required_off_loopback(synth: Path, tmp_path: Path) -> None:
    with serving(synth, tmp_path, "--no-sync", host="0.0.0.0") as s:
        assert (s.token_file.stat().st_mode & 0o777) == 0o600
        assert s.get("/api/runs")[0] == 401 and s.get("/")[0] == 401
        assert s.get("/api/runs", token="wrong")[0] == 401
        assert s.get("/api/runs", token=s.token())[0] == 200
        assert s.token() not in s.log.read_text()  # the token is in its file only
    with serving(synth, tmp_path, "--no-sync", "--require-token") as s:  # asked for: loopback too
        assert s.get("/api/runs")[0] == 401 and s.get("/api/runs", token=s.token())[0] == 200
        assert s.get("/login?token=wrong")[0] == 401
        import http.client

        conn = http.client.HTTPConnection(*s.base.split("//")[1].split(":"))
        conn.request("GET", f"/login?token={s.token()}")  # not followed: its own answer
        r = conn.getresponse()
        cookie_attrs = (r.getheader("set-cookie") or "").lower()
        assert r.status == 303 and "httponly" in cookie_attrs and "samesite=strict" in cookie_attrs
        conn.close()
        cookie = {"Cookie": f"hpcflow_token={s.token()}"}  # what /login?token= sets
        assert s.get("/api/runs", headers=cookie)[0] == 200


def test_actions_need_the_flag_the_token_and_a_csrf_field(
    synth: Path, served, tmp_path: Path
) -> None:
    assert served.get(f"/api/runs/{RUN}/cancel", method="POST")[0] == 403  # no --allow-actions
    shim = tmp_path / "bin"  # Slurm here is a recording shim
    shim.mkdir()
    (shim / "scancel").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scancel.log\n')
    (shim / "scancel").chmod(0o755)
    env = {"PATH": f"{shim}:/usr/bin:/bin"}
    with serving(synth, tmp_path, "--no-sync", "--allow-actions", env=env) as s:
        tok = s.token()
        assert s.get(f"/api/runs/{RUN}/cancel", method="POST")[0] == 401  # no token
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        # the cookie a browser would send, but no CSRF field: refused
        cookie = {"Cookie": f"hpcflow_token={tok}", **form}
        code, doc, _ = s.get(f"/api/runs/{RUN}/retry", method="POST", body=b"", headers=cookie)
        assert code == 403 and "CSRF" in doc["error"]
        code, doc, _ = s.get(f"/api/runs/{RUN}/retry", method="POST", body=b"csrf=forged",
                             headers=cookie)  # fmt: skip
        assert code == 403 and not (tmp_path / "scancel.log").exists()
        # with the token as a bearer header the action runs
        code, doc, _ = s.get(f"/api/runs/{RUN}/cancel", method="POST", token=s.token())
        assert code == 200 and doc["action"] == "cancel", doc
    jobs = sqlite3.connect(synth).execute("SELECT slurm_job_id FROM job").fetchall()
    called = set((tmp_path / "scancel.log").read_text().split())
    assert called and called <= {j for (j,) in jobs}


def test_the_openapi_file_in_docs_is_the_apps(served) -> None:
    code, live, _ = served.get("/api/openapi.json")
    assert code == 200
    assert json.loads((REPO / "docs" / "openapi.json").read_text()) == live, (
        "docs/openapi.json is stale: regenerate it (docs/web.md)"
    )


def test_a_campaigns_failed_events(tmp_path: Path) -> None:
    """/api/campaigns/{name} from the database alone: a batch whose run failed, and the
    events (values of the event axis) whose elements did not succeed."""
    db, run_id = finished_run(tmp_path, 20)  # ras[0] FAILED, ras[1] OUT_OF_MEMORY: event 1
    camp = tmp_path / "c.yaml"
    camp.write_text("event_axis: event\n")
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO campaign (name, file, plan_hash, created_at, refusals, "
                  "event_axis, retry_failed) VALUES ('storms', ?, 'h', '2026-12-06 00:00:00', "
                  "0, 'event', 0)", (str(camp),))  # fmt: skip
        c.execute('INSERT INTO batch (campaign, "index", key, events, n_events, state, attempt, '
                  "run_id, retries, submitted_at) VALUES ('storms', 0, 'storms#0', ?, 20, "
                  "'SUBMITTED', 1, ?, 0, '2026-12-06 00:00:00')",
                  (json.dumps(list(range(1, 21))), run_id))  # fmt: skip
    with serving(db, tmp_path, "--no-sync") as s:
        code, doc, _ = s.get("/api/campaigns/storms")
        assert code == 200 and doc["batches"][0]["state"] == "FAILED"
        # counted as `campaign status` counts them: 19 events done, not 0 (issue 25)
        assert doc["events"] == {"total": 20, "done": 19, "failed": 1, "running": 0, "pending": 0}
        want = {"event": 1, "batch": 0, "run_id": run_id, "steps": ["ras"],
                "states": ["FAILED", "OUT_OF_MEMORY"]}  # fmt: skip
        assert doc["failed_events"] == [want]
        assert "failed events (1)" in s.get("/campaigns")[1]
