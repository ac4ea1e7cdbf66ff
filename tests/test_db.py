"""The tracker database: migrations, filesystem warnings, write transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hpcflow.store.db import SCHEMA_VERSION, open_db
from hpcflow.store.dbfile import network_fs_refusal
from hpcflow.util.fs import filesystem_type

V1_JOB = """CREATE TABLE job (id INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR NOT NULL,
 step VARCHAR NOT NULL, job_index INTEGER NOT NULL, chunk INTEGER NOT NULL,
 name VARCHAR NOT NULL, slurm_job_id VARCHAR, array VARCHAR, dependency VARCHAR,
 status VARCHAR NOT NULL)"""
V1 = [
    "CREATE TABLE run (id VARCHAR NOT NULL PRIMARY KEY, workflow VARCHAR NOT NULL, "
    "version VARCHAR, namespace VARCHAR, label VARCHAR, site VARCHAR NOT NULL, "
    "state VARCHAR NOT NULL, run_dir VARCHAR NOT NULL, workflow_path VARCHAR NOT NULL, "
    "params_json VARCHAR NOT NULL, submitted_at DATETIME NOT NULL, refreshed_at DATETIME, "
    "finished_at DATETIME, cancelled BOOLEAN NOT NULL, degraded VARCHAR)",
    "CREATE TABLE step (id INTEGER NOT NULL PRIMARY KEY, run_id VARCHAR NOT NULL, "
    "name VARCHAR NOT NULL, position INTEGER NOT NULL, total INTEGER NOT NULL)",
    V1_JOB,
    "INSERT INTO job VALUES (1, 'r', 'a', 0, 0, 'hpcflow.r.a.0', '77', NULL, NULL, 'SUBMITTED')",
    "PRAGMA user_version=1",
]


def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as c:
        for sql in V1:
            c.execute(sql)
    db.chmod(0o600)
    open_db(db)
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        cols = {r[1] for r in c.execute("PRAGMA table_info(job)")}
        assert {"attempt", "retry_of", "deps", "script", "mem_mb", "time_s"} <= cols
        assert c.execute("select slurm_job_id, attempt, deps from job").fetchall() == [
            ("77", 0, "[]")
        ]
        assert {"policy", "kind", "role", "may_skip"} <= {
            r[1] for r in c.execute("PRAGMA table_info(step)")
        }
    open_db(db)  # a second open changes nothing


MOUNTS = """\
/dev/vda / ext4 rw 0 0
10.0.0.5:/home /home nfs4 rw 0 0
lustre@o2ib:/scratch /scratch lustre rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


def test_filesystem_type() -> None:
    assert filesystem_type("/home/alice/.local/share/hpcflow", MOUNTS) == "nfs4"
    assert filesystem_type("/scratch/x", MOUNTS) == "lustre"
    assert filesystem_type("/var/lib/x", MOUNTS) == "ext4"
    assert filesystem_type("/homeless", MOUNTS) == "ext4"


def test_no_refusal_on_local_disk(tmp_path: Path) -> None:
    assert network_fs_refusal(tmp_path / "t.db", allowed=False) is None
