"""The tracker database as a file (docs/tracker.md#the-database): what may be opened,
how, and what a migration keeps. Only write commands create, migrate or write it; read
commands open it read-only (``mode=ro``) and refuse what is not an hpcflow tracker."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from hpcflow.errors import NotFound, TrackerError
from hpcflow.util.fs import NETWORK_FS, filesystem_type

SCHEMA_VERSION = 11  # PRAGMA user_version of this hpcflow's trackers (store/migrations.py)
APPLICATION_ID = 0x48504346  # 'HPCF': PRAGMA application_id of every tracker hpcflow creates
TABLES = frozenset({"run", "step", "job"})  # every tracker has these, version 1 on
ALLOW_NETWORK_ENV = "HPCFLOW_ALLOW_NETWORK_DB"


def wal_safe(version: str = sqlite3.sqlite_version) -> bool:
    """Whether this SQLite has the fix for the WAL-reset corruption bug (3.51.3, backported
    to 3.44.6 and 3.50.7). Affected libraries get rollback journaling instead of WAL."""
    major, minor, patch = (int(x) for x in (version.split(".") + ["0", "0"])[:3])
    v = (major, minor, patch)
    return v >= (3, 51, 3) or (3, 50, 7) <= v < (3, 51, 0) or (3, 44, 6) <= v < (3, 45, 0)


JOURNAL_MODE = "wal" if wal_safe() else "delete"


def network_fs_refusal(path: Path, allowed: bool) -> str | None:
    """Why the database may not live at ``path`` (None: it may)."""
    kind = filesystem_type(path.parent)
    if kind in NETWORK_FS and not allowed:
        return (
            f"the tracker database {path} is on a {kind} filesystem, where SQLite's locking "
            "is unsafe and a database can be corrupted; put it on a local disk (--db or "
            f"HPCFLOW_DB), or accept the risk with --allow-network-db ({ALLOW_NETWORK_ENV}=1)"
        )
    return None


def ro_connect(path: Path) -> sqlite3.Connection:
    """A read-only connection; it never creates, locks for writing or journals the file."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)


def check_readable(path: Path) -> None:
    """What a read command may open: an existing hpcflow tracker of this schema version."""
    if not path.exists():
        raise NotFound(
            f"no tracker database at {path} (nothing submitted with this --db / HPCFLOW_DB?)"
        )
    if not path.is_file():
        raise TrackerError(f"{path}: not a regular file; refusing to open it as a tracker")
    try:
        conn = ro_connect(path)
    except sqlite3.Error as e:
        raise TrackerError(f"{path}: cannot open the tracker database: {e}") from e
    try:
        version = _identify(conn, path)
    finally:
        conn.close()
    if version > SCHEMA_VERSION:
        raise TrackerError(
            f"{path}: schema {version} is newer than this hpcflow's ({SCHEMA_VERSION}); "
            "upgrade hpcflow"
        )
    if version < SCHEMA_VERSION:
        raise TrackerError(
            f"{path}: schema {version}, older than this hpcflow's ({SCHEMA_VERSION}); a read "
            "command never migrates it: run a write command once (e.g. `hpcflow status`), "
            "which copies it aside first"
        )


def _identify(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of an hpcflow tracker; TrackerError for anything else."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise TrackerError(f"{path}: not a readable SQLite database ({e}): corrupt?") from e
    if app not in (0, APPLICATION_ID) or not tables:
        what = "an empty file" if not tables and path.stat().st_size == 0 else "another program's"
        raise TrackerError(f"{path}: not an hpcflow tracker ({what} database); refused untouched")
    if not tables >= TABLES:
        some = ", ".join(sorted(tables)[:5])
        raise TrackerError(
            f"{path}: not an hpcflow tracker (its tables: {some}); refused untouched"
        )
    return int(version)


def check_writable(path: Path) -> int | None:
    """Before a write command opens ``path``: None for a new (or empty) file, else the
    schema version of the hpcflow tracker there; TrackerError for another program's file."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    conn = ro_connect(path)
    try:
        return _identify(conn, path)
    finally:
        conn.close()


def copy_aside(path: Path, version: int) -> Path:
    """A consistent copy of the database before a migration (VACUUM INTO), 0600."""
    dest = path.with_name(f"{path.name}.schema{version}.bak")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.schema{version}.{n}.bak")
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        old = os.umask(0o077)
        try:
            conn.execute("VACUUM INTO ?", (str(dest),))
        finally:
            os.umask(old)
    finally:
        conn.close()
    os.chmod(dest, 0o600)
    return dest


def is_db_error(e: BaseException) -> bool:
    """An error of the database itself (sqlite3's, or SQLAlchemy's around it)."""
    return isinstance(e, sqlite3.Error) or type(e).__module__.startswith("sqlalchemy")


def db_error(e: BaseException) -> str:
    """A database error as one line: the driver's message, without SQLAlchemy's
    'Background on this error at: https://sqlalche.me/...' tail or its SQL."""
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e)
    return text.split("\n(Background on this error", 1)[0].split("\n[SQL:", 1)[0].strip()
