"""The handles the store's functions take, named once. Types only: nothing here is imported
at run time but this module (the fast paths never load SQLAlchemy for a signature).

- ``Orm``: an ORM session (sqlmodel), for code that changes the store's models;
- ``Sql``: a SQLAlchemy connection (migrations run their DDL through it);
- ``Handle``: any of these or a plain sqlite3 connection, or an object holding one in
  ``.conn`` (store/reads.ReadOnly): a reader reaches the DB-API connection under it through
  ``codec.dbapi``, inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlmodel import Session


class HoldsConnection(Protocol):
    """An object that holds a sqlite3 connection (store/reads.ReadOnly)."""

    conn: sqlite3.Connection


Orm: TypeAlias = "Session"
Sql: TypeAlias = "Connection"
Handle: TypeAlias = "sqlite3.Connection | HoldsConnection | Connection | Session"
