"""The tracker's SQLite database (sqlmodel): opening it (read-only or to write), its
migrations, sessions. The tables are in store/models.py."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

from hpcflow.errors import TrackerError
from hpcflow.store.dbfile import (
    ALLOW_NETWORK_ENV,
    APPLICATION_ID,
    JOURNAL_MODE,
    SCHEMA_VERSION,
    check_readable,
    check_writable,
    copy_aside,
    db_error,
    network_fs_refusal,
    ro_connect,
)
from hpcflow.store.lite import default_db_path
from hpcflow.store.models import (  # the tables, for the importers of db
    BatchRow,
    CampaignRow,
    Event,
    Job,
    Notice,
    Run,
    StepRow,
    Task,
    utcnow,
)

log = logging.getLogger(__name__)

__all__ = ["BatchRow", "CampaignRow", "Event", "Job", "Notice", "Run", "StepRow", "Task"]
__all__ += ["utcnow", "SCHEMA_VERSION", "default_db_path", "open_db", "migrate", "session"]


def _create_or_check(p: Path) -> int | None:
    """The file made 0600 (its directory 0700) when missing; else checked: yours, private,
    an hpcflow tracker. Returns the schema version found (None: new)."""
    new_dir = not p.parent.exists()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if new_dir:
        os.chmod(p.parent, 0o700)
    if p.exists():
        _check_perms(p)
    else:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
    return check_writable(p)  # before anything is written: another program's file stays so


def _check_perms(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise TrackerError(f"{path}: owned by uid {st.st_uid}, not you; refusing to use it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TrackerError(f"{path}: writable by group/others; run `chmod 600 {path}`")


def _journal(cur: sqlite3.Cursor) -> None:
    """The journal mode, set once per database file: WAL where this SQLite has the WAL-reset
    fix, rollback journaling where it does not (dbfile.wal_safe). Switching modes takes an
    exclusive lock and SQLite may answer SQLITE_BUSY at once, without its busy handler,
    while another process has the file open (two hpcflow processes creating a database
    together): retry then."""
    import time

    for _ in range(300):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == JOURNAL_MODE:
                return
            cur.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            time.sleep(0.1)
    raise TrackerError(f"the tracker database stayed locked for 30 s (journal_mode={JOURNAL_MODE})")


def _open_ro(p: Path) -> Engine:
    check_readable(p)
    engine = create_engine("sqlite://", creator=lambda: ro_connect(p), json_serializer=_json_dumps)

    @sa_event.listens_for(engine, "connect")
    def _ro(conn: sqlite3.Connection, _rec: object) -> None:
        conn.isolation_level = None

    @sa_event.listens_for(engine, "begin")
    def _begin_ro(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def open_db(
    path: str | Path | None = None, readonly: bool = False, allow_network_fs: bool | None = None
) -> Engine:
    """The tracker's engine. ``readonly``: a `mode=ro` connection to an existing tracker of
    this schema (read commands): nothing is created, migrated or locked for writing. Else a
    write command's: created 0600 if missing, migrated after a copy aside, refused on a
    network filesystem unless allowed, and another program's SQLite file refused untouched."""
    p = Path(path).expanduser() if path else default_db_path()
    if readonly:
        return _open_ro(p)
    if allow_network_fs is None:
        allow_network_fs = os.environ.get(ALLOW_NETWORK_ENV, "") not in ("", "0")
    if why := network_fs_refusal(p, allow_network_fs):
        raise TrackerError(why)
    found = _create_or_check(p)  # before anything is written: another program's file stays so
    engine = create_engine(
        f"sqlite:///{p}", connect_args={"timeout": 30}, json_serializer=_json_dumps
    )

    @sa_event.listens_for(engine, "connect")
    def _pragmas(conn: sqlite3.Connection, _rec: object) -> None:
        conn.isolation_level = None  # we issue BEGIN ourselves
        cur = conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        _journal(cur)
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock at the start of every transaction: two writers then queue on
        # busy_timeout instead of failing with "database is locked" on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    if found is not None and found < SCHEMA_VERSION:
        copy = copy_aside(p, found)
        log.warning("migrating the tracker %s from schema %s to %s; a copy of it as it was "
                    "is at %s", p, found, SCHEMA_VERSION, copy)  # fmt: skip
    try:
        migrate(engine)
    except TrackerError:
        raise
    except Exception as e:  # sqlite3.DatabaseError and friends
        raise TrackerError(f"{p}: cannot open the tracker database: {db_error(e)}") from e
    return engine


def _json_dumps(o: Any) -> str:
    return json.dumps(o, default=str)


def migrate(engine: Engine) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found."""
    with engine.begin() as c:
        found = c.exec_driver_sql("PRAGMA user_version").scalar() or 0
        has_tables = c.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='run'"
        ).scalar()
        if not has_tables:
            SQLModel.metadata.create_all(c)
        else:
            if found > SCHEMA_VERSION:
                raise TrackerError(
                    f"database schema {found} is newer than this hpcflow "
                    f"({SCHEMA_VERSION}); upgrade hpcflow"
                )
            from hpcflow.store.migrations import MIGRATIONS  # only when there is work

            for version, statements in MIGRATIONS:
                if version > max(found, 1):
                    for sql in statements:
                        if callable(sql):
                            sql(c)
                        else:
                            c.exec_driver_sql(sql)
            SQLModel.metadata.create_all(c)  # tables added by later versions (checkfirst)
        if found != SCHEMA_VERSION:
            c.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")
            c.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
    return int(found)


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
