"""`notify:` as a surface (docs/security.md, docs/notify.md). A workflow or campaign file
(anyone's) may name a target of trusted configuration or give a plain https webhook; never a
command or a secret. Webhooks go to https (http only to loopback), never to a metadata or
link-local address (also after resolving the name), never follow a redirect; deliveries are
bounded, parked after MAX_ATTEMPTS, never raise, and no secret reaches an error, a log line,
the database or a repr."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.spec.notify import NotifyTarget, PlainWebhook
from hpcflow.store.db import open_db
from hpcflow.tracker import notify as tn
from hpcflow.tracker.notify import MAX_ATTEMPTS, Secret, deliver, queue_run_ends, send

from .helpers import REPO
from .synthetic import finished_run
from .webhook_server import webhook

WF = """\
name: hooked
notify:
{entries}
steps:
  - name: a
    run: echo hi
"""
SITE = str(REPO / "site_configs/lab.yaml")


def _validate(tmp_path: Path, entries: str, *extra: str):
    (tmp_path / "wf.yaml").write_text(WF.format(entries=entries))
    return CliRunner().invoke(main, ["--site", SITE, *extra, "validate", str(tmp_path / "wf.yaml")])


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ("  - {command: [id]}", "cannot give command"),
        ("  - {command: [sh, -c, 'id > /tmp/pwned']}", "cannot give command"),
        (
            "  - {webhook: 'https://h.example/x', secret_env: AWS_SECRET_ACCESS_KEY}",
            "cannot give secret_env",
        ),
        (
            "  - {webhook: 'https://h.example/x', secret_file: ~/.ssh/id_rsa}",
            "cannot give secret_file",
        ),
        (
            "  - {webhook: 'https://h.example/x', secret_file: /proc/self/environ}",
            "cannot give secret_file",
        ),
        ("  - {webhook: 'https://h.example/{secret}'}", "cannot use {secret}"),
        ("  - {webhook: 'http://h.example/x'}", "use https://"),
        ("  - {webhook: 'https://169.254.169.254/latest/meta-data/'}", "link-local"),
        ("  - {webhook: 'https://[fe80::1]/x'}", "link-local"),
        ("  - {webhook: 'https://[fd00:ec2::254]/x'}", "metadata"),
        ("  - {webhook: 'https://100.100.100.200/x'}", "metadata"),
        ("  - {webhook: 'https://metadata.google.internal/x'}", "metadata service"),
        ("  - {webhook: 'https://u:p@h.example/x'}", "must not carry credentials"),
        ("  - {webhook: 'https://{secret}.evil.example/x'}", "never in the host part"),
        ("  - {webhook: 'https://h.example:99999/x'}", "Port out of range"),
        ("  - {webhook: 'ftp://h.example/x'}", "https://"),
        ("  - nosuch-hook", "no target named 'nosuch-hook'"),
        ("  - 'a b'", "is not a target name"),
        ("  - 7", "a target's name or {webhook"),
    ],  # fmt: skip
)
def test_a_workflow_can_give_neither_a_command_nor_a_secret(
    tmp_path: Path, monkeypatch, entries: str, says: str
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    res = _validate(tmp_path, entries)
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'wf.yaml'}:3:" in res.stderr and says in res.stderr, res.stderr
    assert "Traceback" not in res.output


def test_a_campaign_can_give_neither(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "workflow.yaml").write_text((REPO / "examples/campaign/workflow.yaml").read_text())
    camp = (REPO / "examples/campaign/campaign.yaml").read_text()
    (tmp_path / "c.yaml").write_text(camp + "notify:\n  - {command: [id]}\n")
    res = CliRunner().invoke(main, ["campaign", "validate", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2 and "cannot give command" in res.stderr, res.stderr


def test_plain_https_webhooks_and_loopback_http_are_fine(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    entries = (
        "  - {webhook: 'https://hooks.example.org/x?y=1', on: [run_end]}\n"
        "  - {webhook: 'http://127.0.0.1:8080/hook'}\n  - {webhook: 'http://[::1]/h'}"
    )
    res = _validate(tmp_path, entries)
    assert res.exit_code == 0, res.stderr


def _user_targets(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    cfg = tmp_path / "cfg" / "hpcflow"
    cfg.mkdir(parents=True, exist_ok=True)
    f = cfg / "notify.yaml"
    f.write_text(text)
    f.chmod(mode)
    return f


def test_a_workflow_names_a_target_of_your_notify_yaml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    out = tmp_path / "got.json"
    _user_targets(tmp_path, f"targets:\n  team-hook: {{command: [sh, -c, 'cat > {out}']}}\n")
    assert _validate(tmp_path, "  - team-hook").exit_code == 0
    got = tn.targets_for("run_end", [], ["team-hook", PlainWebhook(webhook="https://h.example/")])
    assert got == [
        {"command": ["sh", "-c", f"cat > {out}"], "on": ["run_end", "campaign_tick"]},
        {"webhook": "https://h.example/", "on": ["run_end", "campaign_tick"]},
    ]


@pytest.mark.parametrize(("mode", "owner", "says"), [
    (0o666, None, "writable by others"), (0o620, None, "writable by others"),
    (0o600, 4242, "owned by uid 4242, not you")])  # fmt: skip
def test_a_notify_yaml_others_can_write_is_refused(tmp_path: Path, monkeypatch, mode, owner, says):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    f = _user_targets(tmp_path, "targets:\n  team-hook: {command: [id]}\n", mode)
    if owner is not None:
        os.chown(f, owner, -1)
    res = _validate(tmp_path, "  - team-hook")
    assert res.exit_code == 2 and says in res.stderr, res.stderr


def test_a_name_that_resolves_to_a_metadata_address_is_not_sent(monkeypatch) -> None:
    from hpcflow.util import webhook as wh

    monkeypatch.setattr(wh, "_resolve", lambda host, port, timeout: ["169.254.169.254"])
    why = send({"webhook": "https://innocent.example/x"}, {"kind": "run_end"}, 2)
    assert why is not None and "resolves to 169.254.169.254 is link-local" in why
    monkeypatch.setattr(wh, "_resolve", lambda host, port, timeout: ["::ffff:169.254.169.254"])
    assert "link-local" in (send({"webhook": "https://x.example/"}, {}, 2) or "")


def test_a_lookup_that_hangs_is_bounded(monkeypatch) -> None:
    import socket

    release = threading.Event()

    def hang(*a, **k):
        release.wait(30)
        raise socket.gaierror("released")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    t = time.monotonic()
    try:
        why = send({"webhook": "https://slow-dns.example/x"}, {}, 1.0)
    finally:
        release.set()
    assert why is not None and "no address" in why and time.monotonic() - t < 3


def test_a_redirect_is_never_followed_and_the_token_stays(monkeypatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken-value-1234")
    with webhook() as elsewhere, webhook(status=302) as first:
        first.location = elsewhere.url
        for status in (301, 302, 303, 307, 308):
            first.status = status
            why = send({"webhook": first.url, "secret_env": "HOOK_TOKEN"}, {"k": 1}, 2)
            assert why is not None and "redirects are not followed" in why
    assert len(first.received) == 5 and elsewhere.received == []
    assert first.headers[0]["Authorization"] == "Bearer t0ken-value-1234"


def _finished(tmp_path: Path, targets: list[dict]):
    db, run_id = finished_run(tmp_path, 20)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET notify = ?", (json.dumps(targets),))
    return db, open_db(db), run_id


@pytest.mark.parametrize("secret", ["tok\nen-s3cret-value", "s3cret value with spaces", "a/b?c#d"])
def test_a_secret_never_reaches_an_error_a_log_or_the_database(
    tmp_path: Path, monkeypatch, caplog, secret: str
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    port = 9  # discard: refused at once
    db, engine, run_id = _finished(tmp_path, [
        {"webhook": f"http://127.0.0.1:{port}/hook", "secret_env": "HOOK_TOKEN"},
        {"webhook": f"http://127.0.0.1:{port}/h/{{secret}}", "secret_env": "HOOK_TOKEN"},
        {"webhook": "http://127.0.0.1:9/h", "secret_env": "HOOK_TOKEN"}])  # fmt: skip
    queue_run_ends(engine, [run_id])
    got = deliver(engine)
    assert got["delivered"] == 0 and got["failed"] == 3
    dump = "\n".join(sqlite3.connect(db).iterdump())
    for form in (secret, secret.replace("\n", "%0A"), "en-s3cret"):
        assert form not in dump and form not in caplog.text
    assert "Secret('***')" == repr(Secret(secret)) == str(Secret(secret))


def test_a_header_the_secret_breaks_is_a_reason_not_a_crash(monkeypatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "line1\r\nX-Injected: yes")
    with webhook() as hook:
        why = send({"webhook": hook.url, "secret_env": "HOOK_TOKEN"}, {}, 2)
    assert why is not None and "line1" not in why and "Injected" not in why
    assert "holds a control character" in why
    assert hook.received == []  # nothing sent with a header the secret would have split


def test_an_undeliverable_notice_is_parked_and_never_breaks_a_sync(tmp_path: Path, caplog) -> None:
    db, engine, run_id = _finished(tmp_path, [{"webhook": "http://127.0.0.1:9/hook"}])
    queue_run_ends(engine, [run_id])
    for i in range(MAX_ATTEMPTS):
        assert deliver(engine)["failed"] == 1, i
    assert "parked after 10 attempts" in caplog.text
    assert deliver(engine) == {"delivered": 0, "failed": 0, "left": 0}  # not tried again
    att, err = sqlite3.connect(db).execute("SELECT attempts, error FROM notice").fetchone()
    assert att == MAX_ATTEMPTS and "refused" in err.lower()


def test_a_stored_target_that_no_longer_validates_never_raises(tmp_path: Path) -> None:
    db, engine, run_id = _finished(tmp_path, [{"webhook": "http://evil.example/x"}])
    queue_run_ends(engine, [run_id])
    assert deliver(engine)["failed"] == 1  # http off loopback: refused, as a reason
    err = sqlite3.connect(db).execute("SELECT error FROM notice").fetchone()[0]
    assert "https" in err


def test_targets_stored_before_schema_9_are_parked_by_the_migration(tmp_path: Path) -> None:
    """A pre-9 workflow could store a command; which file gave it cannot be told now."""
    db, engine, run_id = _finished(tmp_path, [{"command": ["id"]}, {"webhook": "https://h.e/"}])
    queue_run_ends(engine, [run_id])
    engine.dispose()
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 8")
    open_db(db).dispose()
    c = sqlite3.connect(db)
    rows = c.execute("SELECT target, attempts, error FROM notice ORDER BY id").fetchall()
    assert json.loads(rows[0][0]) == {
        "command": ["id"],
        "on": ["run_end", "campaign_tick"],
    } or json.loads(rows[0][0])["command"] == ["id"]
    assert rows[0][1] == MAX_ATTEMPTS and "stored before hpcflow took commands" in rows[0][2]
    assert rows[1][1] == 0  # the plain webhook is still delivered
    (kept,) = c.execute("SELECT notify FROM run").fetchone()
    assert json.loads(kept) == [{"webhook": "https://h.e/"}]


def test_a_secret_file_must_be_yours_and_regular(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = time.monotonic()
    why = send({"webhook": "http://127.0.0.1:9/", "secret_file": str(fifo)}, {}, 2)
    assert why is not None and "a FIFO" in why and time.monotonic() - t < 2
    other = tmp_path / "other"
    other.write_text("abc\n")
    other.chmod(0o600)
    os.chown(other, 4242, -1)
    why = send({"webhook": "http://127.0.0.1:9/", "secret_file": str(other)}, {}, 2)
    assert why is not None and "not yours" in why


def test_the_site_may_still_give_commands(tmp_path: Path) -> None:
    t = NotifyTarget.model_validate({"command": ["mail", "me@example.org"], "secret_env": "X"})
    assert t.privileged
