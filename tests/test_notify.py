"""Notifications (docs/notify.md) against a real HTTP server on 127.0.0.1: the run_end
document (checked against docs/notify.schema.json), secrets, a dead endpoint retried later,
a slow endpoint that never holds a sync up, and bad targets refused."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcflow.spec.notify import NotifyTarget
from hpcflow.store.db import open_db
from hpcflow.tracker.notify import deliver, queue_run_ends

from .helpers import free_port
from .synthetic import finished_run
from .webhook_server import check_schema, webhook


def _run_with(tmp_path: Path, targets: list[dict]) -> tuple[object, str]:
    db, run_id = finished_run(tmp_path, 20)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET notify = ?", (json.dumps(targets),))
    return open_db(db), run_id


def test_a_run_end_is_posted_once_with_its_failures(tmp_path: Path) -> None:
    with webhook() as hook:
        engine, run_id = _run_with(tmp_path, [{"webhook": hook.url}])
        assert queue_run_ends(engine, [run_id]) == 1
        assert queue_run_ends(engine, [run_id]) == 0  # once per run and target
        assert deliver(engine) == {"delivered": 1, "failed": 0, "left": 0}
        assert deliver(engine) == {"delivered": 0, "failed": 0, "left": 0}
    (doc,) = hook.received
    check_schema(doc)
    assert doc["run_id"] == run_id and doc["state"] == "FAILED"
    assert doc["counts"]["ras"] == {"COMPLETED": 38, "FAILED": 1, "OUT_OF_MEMORY": 1}
    assert {(f["step"], f["state"], f["exit_code"]) for f in doc["failures"]} == {
        ("ras", "FAILED", 3), ("ras", "OUT_OF_MEMORY", 137)}  # fmt: skip


def test_the_secret_goes_where_it_is_asked_and_nowhere_else(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-value")
    with webhook() as hook:
        engine, run_id = _run_with(tmp_path, [
            {"webhook": hook.url, "secret_env": "HOOK_TOKEN"},
            {"webhook": hook.url + "/{secret}", "secret_env": "HOOK_TOKEN"}])  # fmt: skip
        queue_run_ends(engine, [run_id])
        assert deliver(engine)["delivered"] == 2
    assert hook.headers[0]["Authorization"] == "Bearer s3cr3t-value"
    assert hook.paths[1] == "/hook/s3cr3t-value" and "Authorization" not in hook.headers[1]
    dump = "\n".join(sqlite3.connect(tmp_path / "t.db").iterdump())
    assert "s3cr3t-value" not in dump  # the database holds the variable's name only


def test_a_secret_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("abc\n")
    secret.chmod(0o644)
    with webhook() as hook:
        engine, run_id = _run_with(tmp_path, [{"webhook": hook.url,
                                               "secret_file": str(secret)}])  # fmt: skip
        queue_run_ends(engine, [run_id])
        assert deliver(engine)["failed"] == 1 and not hook.received
        secret.chmod(0o600)
        assert deliver(engine)["delivered"] == 1
    assert hook.headers[0]["Authorization"] == "Bearer abc"


def test_a_dead_endpoint_is_retried_on_the_next_sync(tmp_path: Path, caplog) -> None:
    port = free_port()
    engine, run_id = _run_with(tmp_path, [{"webhook": f"http://127.0.0.1:{port}/hook"}])
    queue_run_ends(engine, [run_id])
    t = time.monotonic()
    assert deliver(engine) == {"delivered": 0, "failed": 1, "left": 0}
    assert time.monotonic() - t < 2
    assert "not delivered (attempt 1)" in caplog.text
    with sqlite3.connect(tmp_path / "t.db") as c:
        (err,) = c.execute("SELECT error FROM notice").fetchone()
    assert "refused" in err.lower()
    with webhook(port) as hook:  # the endpoint comes back: the next sync delivers
        assert deliver(engine)["delivered"] == 1
    assert hook.received[0]["run_id"] == run_id


def test_a_slow_endpoint_never_holds_a_sync_for_long(tmp_path: Path) -> None:
    with webhook(delay_s=20) as hook:
        engine, run_id = _run_with(tmp_path, [{"webhook": hook.url}, {"webhook": hook.url}])
        queue_run_ends(engine, [run_id])
        t = time.monotonic()
        got = deliver(engine, budget_s=2)  # 5 s in a sync; shorter here, same logic
        took = time.monotonic() - t
    # the first waits out the 2 s budget, the second is left for later (the counts say so);
    # the bound only guards against a hang: without the budget, two 20 s endpoints take 40 s
    assert took < 10.0, took
    assert got == {"delivered": 0, "failed": 1, "left": 1}


def test_a_command_target_gets_the_document_on_stdin(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "got.json"
    monkeypatch.setenv("TOK", "t0k")
    script = f'cat > {out}; printf %s "$HPCFLOW_NOTIFY_SECRET" > {out}.secret'
    engine, run_id = _run_with(tmp_path, [{"command": ["sh", "-c", script],
                                           "secret_env": "TOK"}])  # fmt: skip
    queue_run_ends(engine, [run_id])
    assert deliver(engine)["delivered"] == 1
    check_schema(json.loads(out.read_text()))
    assert (tmp_path / "got.json.secret").read_text() == "t0k"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ({"webhook": "ftp://x/y"}, "http"),
        ({"webhook": "https://u:p@x/y"}, "credentials"),
        ({"webhook": "https://x/y", "command": ["mail"]}, "exactly one"),
        ({}, "exactly one"),
        ({"command": []}, "non-empty"),
        ({"webhook": "https://x", "secret_env": "A-B"}, "pattern"),
        ({"webhook": "https://x", "on": ["hourly"]}, "run_end"),
        ({"webhook": "https://x", "extra": 1}, "xtra"),
    ],  # fmt: skip
)
def test_bad_targets_are_refused(target, says) -> None:
    with pytest.raises(ValidationError, match=says):
        NotifyTarget.model_validate(target)
