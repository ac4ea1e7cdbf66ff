"""Schema migrations of the tracker database: version -> what reaches it from the one
before. A new database is created at SCHEMA_VERSION directly by create_all (db.migrate)."""

from __future__ import annotations

from typing import Any

from hpcflow.store.handles import Sql
from hpcflow.store.models import MAX_ATTEMPTS, Event

# Ordered migrations: version -> SQL run to reach it from the one before. A new database is
# created at SCHEMA_VERSION directly by create_all.
MIGRATIONS: list[tuple[int, list[Any]]] = [
    (
        2,
        [
            "ALTER TABLE job ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE job ADD COLUMN submitted_at DATETIME",
            "ALTER TABLE job ADD COLUMN extra_json VARCHAR NOT NULL DEFAULT '[]'",
            "ALTER TABLE job ADD COLUMN script VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE job ADD COLUMN tasks VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE job ADD COLUMN output VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE job ADD COLUMN deps_json VARCHAR NOT NULL DEFAULT '[]'",
            "ALTER TABLE job ADD COLUMN retry_of INTEGER",
            "ALTER TABLE step ADD COLUMN policy_json VARCHAR NOT NULL DEFAULT '{}'",
        ],
    ),
    (3, []),  # campaign and batch tables: created by create_all below
    (4, [lambda c: _v4(c)]),
    (5, [lambda c: _v5(c)]),
    (6, [lambda c: _v6(c)]),
    (7, [lambda c: _v7(c)]),
    (8, [lambda c: _v8(c)]),
    (9, [lambda c: _v9(c)]),
    (10, [lambda c: _v10(c)]),
    (11, [lambda c: _v11(c)]),
]


def _columns(c: Sql, table: str) -> set[str]:
    return {row[1] for row in c.exec_driver_sql(f"PRAGMA table_info({table})")}


def _add_columns(c: Sql, adds: list[tuple[str, str, str]]) -> None:
    """(table, column, declaration): each column a table of this database lacks (a table it
    lacks altogether comes from create_all)."""
    for table, col_, decl in adds:
        if _columns(c, table) and col_ not in _columns(c, table):
            c.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {col_} {decl}")


def _v4(c: Sql) -> None:
    """JSON columns instead of hand-serialised *_json text (the stored text is the same); what
    the compiler knew stored on steps and jobs; events say what kind they are. Tables a
    database from before version 3 lacks are created afresh by create_all."""
    renames = [
        ("run", "params_json", "params"),
        ("step", "policy_json", "policy"),
        ("job", "extra_json", "extra"),
        ("job", "deps_json", "deps"),
        ("task", "item_json", "item"),
        ("batch", "events_json", "events"),
    ]
    for table, old, new in renames:
        if old in _columns(c, table):
            c.exec_driver_sql(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    adds = [
        ("step", "kind", "VARCHAR NOT NULL DEFAULT 'step'"),
        ("step", "role", "VARCHAR"),
        ("step", "may_skip", "BOOLEAN NOT NULL DEFAULT 0"),
        ("job", "cpus", "INTEGER"),
        ("job", "mem_mb", "INTEGER"),
        ("job", "time_s", "INTEGER"),
        ("job", "gpus", "INTEGER"),
    ]
    _add_columns(c, adds)
    from hpcflow.spec.dataflow import CLEANUP_STEP, PULL_STEP  # migration only: not on every open

    if _columns(c, "step"):
        c.exec_driver_sql(
            f"UPDATE step SET kind = CASE name WHEN '{CLEANUP_STEP}' THEN 'cleanup' "
            f"WHEN '{PULL_STEP}' THEN 'pull' ELSE 'step' END, "
            "role = json_extract(policy, '$.role'), "
            "may_skip = coalesce(json_extract(policy, '$.may_skip'), 0)"
        )
    if _columns(c, "event"):
        _rebuild_event(c)


def _v5(c: Sql) -> None:
    """Packing: a step's pack and whether its elements' own records decide; an element's
    record and outputs, stored when it ended. Tables a database lacks come from create_all."""
    adds = [
        ("step", "pack", "INTEGER NOT NULL DEFAULT 1"),
        ("step", "parallel", "INTEGER NOT NULL DEFAULT 1"),
        ("step", "reads_result", "BOOLEAN NOT NULL DEFAULT 0"),
        ("task", "result", "JSON"),
        ("task", "outputs", "JSON"),
        ("run", "poll_seconds", "INTEGER"),
    ]
    _add_columns(c, adds)


def _v6(c: Sql) -> None:
    """Usage: what an element used, from sacct once its chunk finished (docs/efficiency.md);
    what right-sizing set for a campaign batch; where a run's end is notified. The notice
    table comes from create_all."""
    adds = [
        ("task", "usage", "JSON"),
        ("job", "usage_done", "BOOLEAN NOT NULL DEFAULT 0"),
        ("batch", "resources", "JSON"),
        ("run", "notify", "JSON"),
    ]
    _add_columns(c, adds)
    if _columns(c, "event"):
        c.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_event_run_time ON event (run_id, time, id)"
        )
    if _columns(c, "task"):
        c.exec_driver_sql(
            'CREATE INDEX IF NOT EXISTS ix_task_run_step_index ON task (run_id, step, "index")'
        )


def _v7(c: Sql) -> None:
    """Dynamic foreach: a step laid out at run time records its expansion (docs/dynamic.md)."""
    if _columns(c, "step") and "dynamic" not in _columns(c, "step"):
        c.exec_driver_sql("ALTER TABLE step ADD COLUMN dynamic JSON")


def _v8(c: Sql) -> None:
    """A task missing from sacct and squeue once is remembered until the next refresh."""
    if _columns(c, "task") and "absent_at" not in _columns(c, "task"):
        c.exec_driver_sql("ALTER TABLE task ADD COLUMN absent_at VARCHAR")


PRIVILEGED = ("command", "secret_env", "secret_file")
V9_REFUSED = (
    "refused: stored before hpcflow took commands and secrets from trusted files only; a "
    "workflow or campaign may have given it. Name a target of your notify.yaml instead"
)


def _v9(c: Sql) -> None:
    """Notify targets that run a command or read a secret came, before version 9, from any
    workflow or campaign file as well as the site's. Which one cannot be told now, so none
    is delivered: pending notices of that kind are parked, and runs forget such targets."""
    import json

    if not _columns(c, "notice"):
        return
    for nid, target in c.exec_driver_sql(
        "SELECT id, target FROM notice WHERE delivered_at IS NULL"
    ).all():
        t = json.loads(target) if isinstance(target, str) else target
        if isinstance(t, dict) and any(t.get(k) for k in PRIVILEGED):
            c.exec_driver_sql(
                "UPDATE notice SET attempts = ?, error = ? WHERE id = ?",
                (MAX_ATTEMPTS, V9_REFUSED, nid),
            )
    for rid, targets in c.exec_driver_sql(
        "SELECT id, notify FROM run WHERE notify IS NOT NULL"
    ).all():
        ts = json.loads(targets) if isinstance(targets, str) else targets
        if isinstance(ts, list):
            kept = [t for t in ts if isinstance(t, dict) and not any(t.get(k) for k in PRIVILEGED)]
            if kept != ts:
                c.exec_driver_sql(
                    "UPDATE run SET notify = ? WHERE id = ?", (json.dumps(kept or None), rid)
                )


def _v10(c: Sql) -> None:
    """Derived facts from the database alone (hpcflow/facts.py): a step says it is a
    compensation step (until 10 only its display role did, parsed here once), and a campaign
    keeps the event axis and retry_failed its progress is counted with (set by each tick;
    until the next tick, the defaults)."""
    adds = [
        ("step", "compensation", "BOOLEAN NOT NULL DEFAULT 0"),
        ("campaign", "event_axis", "VARCHAR NOT NULL DEFAULT 'event'"),
        ("campaign", "retry_failed", "INTEGER NOT NULL DEFAULT 0"),
    ]
    _add_columns(c, adds)
    if _columns(c, "step"):
        c.exec_driver_sql("UPDATE step SET compensation = 1 WHERE role LIKE 'compensation %'")


def _v11(c: Sql) -> None:
    """Node faults (docs/faults.md): a run keeps the site's fault policy it was submitted
    with and the nodes it avoids; an element counts its resubmissions for a node's fault.
    A run from before 11 has no policy: hpcflow leaves its node faults alone, as it did."""
    _add_columns(c, [("run", "faults", "JSON"), ("run", "nodes_avoided", "JSON"),
                     ("task", "node_retries", "INTEGER NOT NULL DEFAULT 0")])  # fmt: skip


def _rebuild_event(c: Sql) -> None:
    """Events get a kind; a note's new_state becomes NULL, which the old NOT NULL column cannot
    hold: SQLite's way is a new table, a copy, and a drop."""
    c.exec_driver_sql("ALTER TABLE event RENAME TO event_v3")
    for (name,) in c.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='event_v3' "
        "AND sql IS NOT NULL"
    ).all():
        c.exec_driver_sql(f"DROP INDEX {name}")
    Event.__table__.create(c)  # type: ignore[attr-defined]
    notes = "'SUBMITTING', 'SUBMITTED', 'NOTE', 'DEGRADED', 'RECOVERED', 'CLEANED'"
    c.exec_driver_sql(
        'INSERT INTO event (id, run_id, time, kind, step, "index", old_state, new_state, '
        "slurm_job_id, exit_code, reason) SELECT id, run_id, time, "
        f"CASE WHEN new_state IN ({notes}) THEN new_state WHEN step IS NULL THEN 'RUN' "
        f"ELSE 'TASK' END, step, \"index\", old_state, "
        f"CASE WHEN new_state IN ({notes}) THEN NULL ELSE new_state END, "
        "slurm_job_id, exit_code, reason FROM event_v3"
    )
    c.exec_driver_sql("DROP TABLE event_v3")
