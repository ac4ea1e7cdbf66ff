"""A tracker database written by an earlier release (tests/data/tracker-v3, schema 3) opens
with this one and every read command prints what that release printed."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from .helpers import in_process

DATA = Path(__file__).parent / "data" / "tracker-v3"
CLOCK = ("throughput_per_hour", "projected_finish")  # depend on when the test runs


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    work = tmp_path / "fx"
    shutil.copytree(DATA, work)
    (work / "tracker.db").chmod(0o600)
    return work


ADDED = {"nodes_avoided": []}  # fields added since that release, as an old run has them


def _json(p) -> dict:
    """The document, less the fields added since that release (each checked here to be what
    an old run has)."""
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    for run in doc.get("runs", [doc]):
        for k, v in ADDED.items():
            if isinstance(run, dict) and "steps" in run:  # a status document
                assert run.pop(k) == v, (k, run)
    return doc


def test_old_database_reads_as_before(old_db: Path, hpcflow) -> None:
    db = old_db / "tracker.db"
    env = {"HPCFLOW_DB": str(db)}
    before = db.read_bytes()
    # a read command never migrates: it says what to do and leaves the file as it was
    p = hpcflow("runs", "--json", extra_env=env)
    assert p.returncode == 1 and "schema 3, older than this hpcflow's" in p.stderr, p.stderr
    assert "run a write command once" in p.stderr and db.read_bytes() == before
    expected = json.loads((DATA / "expected" / "runs.json").read_text())
    run_ids = [r["run_id"] for r in expected["runs"]]
    assert len(run_ids) == 4
    cli = in_process(db)  # the first read and the migrating status ran as processes
    for i, rid in enumerate(run_ids):  # status writes: the first one migrates, after a copy
        want = json.loads((DATA / "expected" / f"status-{rid}.json").read_text())
        p = (
            hpcflow("status", rid, "--json", extra_env=env)
            if i == 0
            else cli("status", rid, "--json")
        )
        assert _json(p) == want, rid
        assert ("a copy of it as it was is at" in p.stderr) == (i == 0), p.stderr
    copy = old_db / "tracker.db.schema3.bak"
    assert copy.read_bytes()[:16] == b"SQLite format 3\x00" and copy.stat().st_mode & 0o077 == 0
    import sqlite3 as _sq

    with _sq.connect(copy) as c:  # the copy is the old database, whole
        assert c.execute("PRAGMA user_version").fetchone()[0] == 3
        assert c.execute("SELECT count(*) FROM run").fetchone()[0] == 4
    assert _json(cli("runs", "--json")) == expected
    for rid in run_ids:
        want = json.loads((DATA / "expected" / f"history-{rid}.json").read_text())
        got = _json(cli("history", rid, "--json"))
        # events gained a kind: the old release's new_state, or the kind of move it was
        for e in got["events"]:
            kind = e.pop("kind")
            moves = {"RUN": e["step"] is None, "TASK": e["step"] is not None}
            assert moves.get(kind, kind == e["new_state"]), e
        assert got == want, rid
    got = _json(cli("campaign", "status", str(old_db / "campaign.yaml"), "--json"))
    want = json.loads((DATA / "expected" / "campaign-status.json").read_text())
    for k in CLOCK:
        got.pop(k)
        want.pop(k)
    assert got == want


def test_old_database_is_migrated_and_writable(old_db: Path, hpcflow) -> None:
    from hpcflow.store.db import SCHEMA_VERSION

    env = {"HPCFLOW_DB": str(old_db / "tracker.db")}
    # the campaign is finished: a tick writes its note and submits nothing
    p = hpcflow("campaign", "tick", str(old_db / "campaign.yaml"), extra_env=env)
    assert p.returncode == 0, p.stderr
    assert "0 batch(es) in flight" in p.stdout
    c = sqlite3.connect(old_db / "tracker.db")
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("SELECT count(*) FROM task").fetchone()[0] > 0
