"""`status` without SQLAlchemy when no sync is due: the same document as the full path, the
per-site poll budget decides, and the command imports no database library."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hpcflow.slurm.planning import prepare
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow
from hpcflow.store import lite
from hpcflow.store.db import open_db
from hpcflow.tracker.query import status_docs
from hpcflow.tracker.submit import record_run

from .helpers import lab_site

WF = """\
name: lite
steps:
  - name: a
    foreach: {i: {range: [1, 5]}}
    pack: 2
    run: 'true'
  - {name: b, after: [a], run: 'true'}
"""


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    """A run recorded as submitted (no Slurm), refreshed just now, poll interval 60 s."""
    site = load_site(str(lab_site(tmp_path / "site.yaml", tmp_path / "scratch",
                                  limits={"max_array_size": 1001},
                                  tracker={"poll_interval": "60s"})))  # fmt: skip
    (tmp_path / "wf.yaml").write_text(WF)
    loaded = load_workflow(tmp_path / "wf.yaml", [], site)
    rr = prepare(loaded, site, None)
    db = tmp_path / "db" / "tracker.db"
    db.parent.mkdir()
    record_run(open_db(db), rr, loaded, site, "x")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE job SET status = 'SUBMITTED', slurm_job_id = '7'")
        c.execute("UPDATE run SET refreshed_at = ?", (_stamp(0),))
        c.execute("UPDATE task SET state = 'COMPLETED', result = '{\"attempts\": 2}' "
                  "WHERE \"index\" = 1")  # fmt: skip
    return db, rr.plan.run_id


def _stamp(ago_s: float) -> str:
    t = datetime.now(timezone.utc) - timedelta(seconds=ago_s)
    return t.replace(tzinfo=None).isoformat(sep=" ")


def test_same_document_as_the_full_path(recorded) -> None:
    db, run_id = recorded
    conn = lite.connect_ro(db)
    assert conn is not None
    run = lite.find_run(conn, run_id[:-2])  # a unique prefix
    got = lite.status_doc(conn, run, with_tasks=True)
    with status_docs(open_db(db), [run_id], with_tasks=True) as full:
        assert got == full[0]
    assert got["steps"]["a"]["pack"] == {"size": 2, "parallel": 1}
    a1 = next(t for t in got["steps"]["a"]["tasks"] if t["index"] == 1)
    assert a1["result"] == {"attempts": 2} and a1["slurm_job_id"] == "7_0"


def test_poll_budget_decides_if_a_sync_is_due(recorded) -> None:
    db, run_id = recorded
    conn = lite.connect_ro(db)
    assert conn is not None
    runs = [lite.find_run(conn, run_id)]
    assert not lite.sync_needed(conn, runs)  # refreshed just now, interval 60 s
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET refreshed_at = ?", (_stamp(61),))
    assert lite.sync_needed(conn, runs)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET refreshed_at = ?", (_stamp(0),))
        c.execute("UPDATE job SET status = 'PLANNED' WHERE step = 'b'")
    assert lite.sync_needed(conn, runs)  # a submission to resume
    with sqlite3.connect(db) as c:
        c.execute("UPDATE job SET status = 'SUBMITTED'")
        c.execute("UPDATE task SET state = 'OUT_OF_MEMORY', attempts = 1 WHERE \"index\" = 2")
    # out of memory, but the step has no retry.on_oom: a sync would do nothing
    assert not lite.sync_needed(conn, runs)
    policy = json.dumps({"attempts": 2, "on_oom": {"mem_factor": 2.0}})
    with sqlite3.connect(db) as c:
        c.execute("UPDATE step SET policy = ? WHERE name = 'a'", (policy,))
    assert lite.sync_needed(conn, runs)  # an escalation due: the policy resubmits it
    with sqlite3.connect(db) as c:
        c.execute('UPDATE task SET attempts = 2 WHERE "index" = 2')
    assert not lite.sync_needed(conn, runs)  # its attempts are used up


CHECK = """\
import json, sys
from hpcflow.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    mods = [m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "sqlmodel")]
    print(json.dumps(mods), file=sys.stderr)
"""


def run_cli(db: Path, *args: str) -> tuple[str, list[str]]:
    env = dict(os.environ, HPCFLOW_CACHE=str(db.parent / "cache"))
    p = subprocess.run([sys.executable, "-c", CHECK, "--db", str(db), *args],
                       capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout, json.loads(p.stderr.strip().splitlines()[-1])


def test_status_imports_no_database_library_when_nothing_is_due(recorded) -> None:
    db, run_id = recorded
    out, mods = run_cli(db, "status", run_id, "--json", "--tasks")
    assert mods == [] and json.loads(out)["run_id"] == run_id
    out, mods = run_cli(db, "status", "--json")
    assert mods == [] and [d["run_id"] for d in json.loads(out)["runs"]] == [run_id]
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET state = 'COMPLETED'")
    out, mods = run_cli(db, "status")
    assert mods == [] and "no active runs" in out
    # a due refresh takes the full path (it would ask Slurm: here, none is due to ask)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET state = 'PENDING', refreshed_at = NULL")
    _, mods = run_cli(db, "status", run_id, "--json", "--no-refresh")
    assert mods == []  # --no-refresh never needs the full path


def test_render_and_validate_import_no_database_library(tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001,
                    "max_submit_jobs": 100})  # fmt: skip
    (tmp_path / "wf.yaml").write_text(WF)
    db = tmp_path / "none.db"
    out, mods = run_cli(db, "--site", str(site), "validate", str(tmp_path / "wf.yaml"))
    assert mods == [] and "valid" in out
    out, mods = run_cli(db, "--site", str(site), "render", str(tmp_path / "wf.yaml"),
                        "-o", str(tmp_path / "out"))  # fmt: skip
    assert mods == [] and (tmp_path / "out/scripts/a.sh").exists()
    assert not db.exists()
