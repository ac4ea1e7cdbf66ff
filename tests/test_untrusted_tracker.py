"""The tracker database as a surface (docs/security.md, docs/tracker.md#the-database-file):
read commands open it read-only and never create, migrate or lock it; another program's
SQLite file, a corrupt file and a missing one are errors that name the path (never an empty
answer with exit 0, never a traceback or SQLAlchemy's link); a network filesystem is refused
unless allowed; SQLite without the WAL-reset fix journals by rollback."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.store import dbfile
from hpcflow.store.db import open_db

from .synthetic import finished_run

READS = [
    ["runs", "--json"],
    ["history", "{run}", "--json"],
    ["efficiency", "{run}", "--json"],
    ["report", "{run}", "-o", "{tmp}/r.html"],
    ["logs", "{run}", "hms", "0"],
    ["status", "{run}", "--no-refresh", "--json"],
]


def _cli(db: Path, args: list[str], tmp: Path, run: str = "synth-20261206-0000-aaaa"):
    argv = ["--db", str(db), *[a.format(run=run, tmp=tmp) for a in args]]
    return CliRunner().invoke(main, argv)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("rec")
    db, run_id = finished_run(d, 20)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE job SET usage_done = 1")  # nothing left to ask sacct
    return db, run_id


@pytest.mark.parametrize("args", READS, ids=lambda a: a[0])
def test_a_read_command_on_a_missing_database_names_it_and_creates_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    db = tmp_path / "typo" / "tracker.db"
    res = _cli(db, args, tmp_path)
    assert res.exit_code == 1 and f"no tracker database at {db}" in res.stderr, res.stderr
    assert not db.exists() and not db.parent.exists()


@pytest.mark.parametrize("args", READS, ids=lambda a: a[0])
def test_a_read_command_reads_a_0400_database_and_writes_nothing(
    recorded: tuple[Path, str], tmp_path: Path, args: list[str]
) -> None:
    db = tmp_path / "t.db"
    db.write_bytes(recorded[0].read_bytes())
    db.chmod(0o400)
    (tmp_path / "run").symlink_to(recorded[0].parent / "run")  # the run directory
    before = _digest(db)
    res = _cli(db, args, tmp_path, recorded[1])
    assert "read-only" not in res.stderr and "Traceback" not in res.output
    if args[0] == "logs":  # the synthetic run wrote no logs: a clear 1, not a crash
        assert res.exit_code == 1 and "no log at" in res.stderr, res.stderr
    else:
        assert res.exit_code == 0, res.stderr
    assert _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.db")) == ["t.db"]


def test_a_read_leaves_no_lock_a_writer_would_wait_for(recorded: tuple[Path, str]) -> None:
    engine = open_db(recorded[0], readonly=True)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM run").scalar() == 1
        w = sqlite3.connect(recorded[0], timeout=0.1)  # a writer gets in at once
        w.execute("BEGIN IMMEDIATE")
        w.rollback()
        w.close()
    with pytest.raises(Exception, match="readonly"), engine.begin() as c:
        c.exec_driver_sql("DELETE FROM event")


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        c.execute("INSERT INTO moz_places (url) VALUES ('https://example.org')")


@pytest.mark.parametrize("args", [["runs"], ["status"], ["history", "x"], ["cancel", "x"]])
def test_another_programs_sqlite_file_is_refused_untouched(tmp_path: Path, args) -> None:
    db = tmp_path / "places.sqlite"
    _foreign(db)
    db.chmod(0o600)
    before = _digest(db)
    res = _cli(db, args, tmp_path)
    assert res.exit_code == 1 and "not an hpcflow tracker (its tables: moz_places)" in res.stderr
    assert _digest(db) == before


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "header", "empty"],
)
def test_a_corrupt_database_is_an_error_never_an_empty_answer(
    recorded: tuple[Path, str], tmp_path: Path, damage: str
) -> None:
    db = tmp_path / "t.db"
    good = recorded[0].read_bytes()
    db.write_bytes({
        "garbage": os.urandom(50_000),
        "truncated": good[: len(good) // 3],
        "header": b"SQLite format 3\x00" + os.urandom(len(good) - 16),
        "empty": b"",
    }[damage])  # fmt: skip
    db.chmod(0o600)
    for args in (["runs", "--json"], ["history", "{run}"], ["status", "{run}", "--no-refresh"]):
        res = _cli(db, args, tmp_path, recorded[1])
        assert res.exit_code != 0, (damage, args, res.output)
        assert '{"runs": []}' not in res.output and "Traceback" not in res.output
        assert "sqlalche.me" not in res.output + res.stderr, res.stderr
        assert str(db) in res.stderr or "tracker database" in res.stderr, res.stderr


def test_a_network_filesystem_is_refused_unless_allowed(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "t.db"
    open_db(db).dispose()
    monkeypatch.setattr(dbfile, "filesystem_type", lambda p: "lustre")
    res = CliRunner().invoke(main, ["--db", str(db), "cancel", "nope"])  # a command that writes
    assert res.exit_code == 1 and "is on a lustre filesystem" in res.stderr
    assert "--allow-network-db" in res.stderr
    with pytest.raises(Exception, match="lustre"):
        open_db(tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
    res = CliRunner().invoke(main, ["--db", str(db), "--allow-network-db", "cancel", "nope"])
    assert res.exit_code == 1 and "no run 'nope'" in res.stderr, res.stderr
    env = {dbfile.ALLOW_NETWORK_ENV: "1"}
    res = CliRunner().invoke(main, ["--db", str(db), "cancel", "nope"], env=env)
    assert res.exit_code == 1 and "no run 'nope'" in res.stderr, res.stderr
    # reading takes no write lock, so a read command may read it there
    res = CliRunner().invoke(main, ["--db", str(db), "runs", "--json"])
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize(
    ("version", "safe"),
    [
        ("3.40.1", False),
        ("3.44.5", False),
        ("3.44.6", True),
        ("3.45.0", False),
        ("3.50.6", False),
        ("3.50.7", True),
        ("3.51.2", False),
        ("3.51.3", True),
        ("3.52.0", True),
        ("4.0", True),
    ],  # fmt: skip
)
def test_which_sqlite_may_use_wal(version: str, safe: bool) -> None:
    assert dbfile.wal_safe(version) is safe


def test_the_journal_mode_follows_the_library(tmp_path: Path) -> None:
    open_db(tmp_path / "t.db").dispose()
    mode = sqlite3.connect(tmp_path / "t.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == ("wal" if dbfile.wal_safe(sqlite3.sqlite_version) else "delete")
    # a database left in WAL mode by an older hpcflow is switched back by a writer
    with sqlite3.connect(tmp_path / "t.db") as c:
        c.execute("PRAGMA journal_mode=WAL")
    open_db(tmp_path / "t.db").dispose()
    mode = sqlite3.connect(tmp_path / "t.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == dbfile.JOURNAL_MODE


def test_database_errors_carry_no_sqlalchemy_link(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    open_db(db).dispose()
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE event")  # a tracker damaged by hand
    res = _cli(db, ["history", "x"], tmp_path)
    assert res.exit_code == 1 and "sqlalche.me" not in res.stderr and "[SQL:" not in res.stderr
    assert "Traceback" not in res.output, res.output
    doc = CliRunner().invoke(main, ["--db", str(db), "runs", "--json"])
    assert doc.exit_code == 0 and json.loads(doc.output) == {"runs": []}  # runs reads run only
