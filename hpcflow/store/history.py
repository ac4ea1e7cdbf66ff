"""The history table's bulk writer: element moves, up to 100,000 in one refresh."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpcflow.states import EventKind
from hpcflow.store.handles import Orm


def insert_moves(s: Orm, columns: Sequence[str], moves: list[tuple[Any, ...]], stamp: str) -> None:
    """Element moves (each a tuple of ``columns``) as TASK events at ``stamp`` (the time as
    SQLAlchemy's SQLite DateTime stores it), in the session's transaction. The driver's
    executemany: SQLAlchemy's per-row parameter processing costs more than SQLite at
    100,000 rows."""
    names = ", ".join(f'"{c}"' for c in (*columns, "kind", "time"))
    marks = ", ".join("?" * (len(columns) + 2))
    kind = EventKind.TASK.value
    s.connection().exec_driver_sql(
        f"INSERT INTO event ({names}) VALUES ({marks})", [(*m, kind, stamp) for m in moves]
    )
