"""How the store's values come out of SQLite, decoded in one place: JSON columns (text
through sqlite3, already decoded through SQLAlchemy's JSON type), stored times (naive UTC),
and the DB-API connection under whatever handle a caller holds."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcflow.store.handles import Handle
from datetime import datetime, timezone
from typing import Any


def json_value(v: Any) -> Any:
    """A JSON column's value: decoded text, or what SQLAlchemy already decoded."""
    return json.loads(v) if isinstance(v, str) else v


def utc(v: Any) -> datetime | None:
    """A stored time (naive UTC text, or a datetime) as an aware UTC datetime."""
    if not v:
        return None
    d = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def iso(v: Any) -> str | None:
    """A stored time as the CLI's JSON prints it (2026-12-07T10:00:00Z)."""
    d = utc(v)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ") if d else None


def dbapi(db: Handle) -> sqlite3.Connection:
    """The sqlite3 connection under a handle: itself, a store.reads.ReadOnly, a SQLAlchemy
    Connection or Session (the same connection and transaction: it sees what the session
    has flushed)."""
    if isinstance(db, sqlite3.Connection):
        return db
    conn = getattr(db, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        return conn
    sa: Any = db  # SQLAlchemy's: its pool proxies the driver's connection
    pooled = sa.connection if hasattr(sa, "exec_driver_sql") else sa.connection().connection
    driver = pooled.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver
