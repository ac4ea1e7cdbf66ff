"""Notifications (docs/notify.md): documents queued in the tracker's notice table, then
delivered by the same call, and again by later syncs until accepted. Delivery never fails a
run or a tick, and takes at most DELIVERY_BUDGET_S per sync whatever the endpoints do."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import Engine

from hpcflow import __version__
from hpcflow.errors import HpcflowError
from hpcflow.spec.notify import NotifyTarget, resolve
from hpcflow.spec.userconfig import load_user_targets
from hpcflow.store import notices
from hpcflow.store.db import Notice, session, utcnow
from hpcflow.store.handles import Handle, Orm
from hpcflow.store.models import MAX_ATTEMPTS  # then parked, with its last error
from hpcflow.util.safeio import open_regular
from hpcflow.util.urls import mask

log = logging.getLogger(__name__)

DELIVERY_BUDGET_S = 5.0  # per sync, for every pending notice together
TIMEOUT_S = 3.0  # per delivery

SECRET_BYTES = 64 * 1024
FAILURE_GROUPS = 20  # failure groups in a run_end document


def targets_for(
    event: str, site: list[NotifyTarget], *untrusted: list[Any]
) -> list[dict[str, Any]]:
    """The targets (as stored: no secrets) that want ``event``, once each: the site's own,
    then those a workflow or campaign file names (resolved in the user's notify.yaml and the
    site file: spec/notify.py) or gives as a plain webhook."""
    user = load_user_targets() if any(isinstance(e, str) for u in untrusted for e in u) else {}
    out: list[dict[str, Any]] = []
    for src in [site, *(resolve(u, site, user) for u in untrusted)]:
        for t in src:
            d = t.stored()
            if event in t.on and d not in out:
                out.append(d)
    return out


def run_end_doc(db: Handle, run_id: str) -> dict[str, Any]:
    """What a run's end says: its state, counts per step, and its failures grouped."""
    return {"kind": "run_end", "hpcflow": __version__, "run_id": run_id,
            **notices.run_end(db, run_id, FAILURE_GROUPS)}  # fmt: skip


def queue_run_ends(engine: Engine, run_ids: list[str]) -> int:
    """A run_end notice per target of each of these runs that has ended (once: by key)."""
    added = 0
    with session(engine) as s:
        for run_id in run_ids:
            targets = notices.end_targets(s, run_id)
            if not targets:
                continue
            doc = run_end_doc(s, run_id)
            for i, t in enumerate(targets):
                added += _queue(s, f"run_end:{run_id}:{i}", t, doc)
        s.commit()
    return added


def queue(engine: Engine, key: str, targets: list[dict[str, Any]], doc: dict[str, Any]) -> int:
    with session(engine) as s:
        n = sum(_queue(s, f"{key}:{i}", t, doc) for i, t in enumerate(targets))
        s.commit()
    return n


def last_batches(engine: Engine, campaign: str) -> dict[str, str] | None:
    """The batch states the campaign's last digest reported (None: no digest yet)."""
    with session(engine) as s:
        doc = notices.last_payload(s, f"campaign_tick:{campaign}:")
    return None if doc is None else dict(doc.get("batches") or {})


def _queue(s: Orm, key: str, target: dict[str, Any], doc: dict[str, Any]) -> int:
    if notices.queued(s, key):
        return 0
    s.add(Notice(key=key, target=target, payload=doc))
    s.flush()
    return 1


def deliver(engine: Engine, budget_s: float = DELIVERY_BUDGET_S) -> dict[str, int]:
    """Try every pending notice, oldest first, within ``budget_s`` in all; failures are
    logged and kept for the next sync, MAX_ATTEMPTS times, then parked. Never raises for an
    endpoint's or a target's sake, and no secret reaches a message, a log or the database."""
    start = time.monotonic()
    got = {"delivered": 0, "failed": 0, "left": 0}
    with session(engine) as s:
        pending = notices.pending(s, MAX_ATTEMPTS)
    for nid in pending:
        left = budget_s - (time.monotonic() - start)
        if left <= 0.2:
            got["left"] += 1
            continue
        with session(engine) as s:
            n = s.get(Notice, nid)
            if n is None or n.delivered_at is not None:
                continue
            why = send(n.target, n.payload, min(TIMEOUT_S, left))
            n.attempts += 1
            if why is None:
                n.delivered_at, n.error = utcnow(), None
                got["delivered"] += 1
            else:
                n.error = why[:500]
                got["failed"] += 1
                later = ("retried on the next sync" if n.attempts < MAX_ATTEMPTS
                         else f"parked after {MAX_ATTEMPTS} attempts; not tried again")  # fmt: skip
                log.warning("notification %s not delivered (attempt %d): %s; %s",
                            n.key, n.attempts, n.error, later)  # fmt: skip
            s.add(n)
            s.commit()
    return got


class Secret:
    """A secret's value: shown as *** by repr and str, so no message or log can carry it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def send(target: dict[str, Any], doc: dict[str, Any], timeout: float) -> str | None:
    """Deliver one document: None, or why not (never the secret, never an exception)."""
    secret: Secret | None = None
    try:
        t = NotifyTarget.model_validate(target)
        secret = read_secret(t)
        return _send(t, doc, timeout, secret)
    except Exception as e:  # noqa: BLE001 - a target's failure is a reason, not a crash
        why = f"{type(e).__name__}: {e}" if not isinstance(e, HpcflowError) else str(e)
        return mask(why, [secret.reveal()] if secret else [])


def _send(
    t: NotifyTarget, doc: dict[str, Any], timeout: float, secret: Secret | None
) -> str | None:
    value = secret.reveal() if secret else None
    if t.webhook:
        from hpcflow.util.webhook import post_json  # http.client: only when there is one to send

        url, headers = t.webhook, {}
        if value and "{secret}" in url:
            url = url.replace("{secret}", quote(value, safe="/"))  # a path: never a ? or #
        elif value:
            headers["Authorization"] = f"Bearer {value}"
        return post_json(url, doc, timeout, headers, [value] if value else [])
    assert t.command is not None
    env = {"HPCFLOW_NOTIFY_SECRET": value} if value else None
    from hpcflow.runners.base import LocalRunner  # the command runs where hpcflow runs

    try:
        r = LocalRunner().run(t.command, timeout=timeout, input=json.dumps(doc), env=env)
    except HpcflowError as e:
        return mask(str(e), [value] if value else [])
    if r.ok:
        return None
    why = f"{t.command[0]} exited {r.returncode}: {(r.stderr or '').strip()[-200:]}"
    return mask(why, [value] if value else [])


def read_secret(t: NotifyTarget) -> Secret | None:
    """The target's secret, read now. A secret file must be a regular file of yours that
    nobody else can read (at most 64 KiB; its first line). A secret with a control character
    is refused (it would break a header or a URL), without showing it."""
    got = _read_secret(t)
    if got is not None and any(ord(c) < 32 or ord(c) == 127 for c in got.reveal()):
        where = f"secret_env {t.secret_env}" if t.secret_env else f"secret_file {t.secret_file}"
        raise HpcflowError(f"the secret in {where} holds a control character (a newline?)")
    return got


def _read_secret(t: NotifyTarget) -> Secret | None:
    if t.secret_env:
        v = os.environ.get(t.secret_env)
        if not v:
            raise HpcflowError(f"secret_env {t.secret_env} is not set")
        return Secret(v)
    if t.secret_file:
        p = os.path.expanduser(t.secret_file)
        try:
            fd = open_regular(p)
            try:
                st = os.fstat(fd)
                if st.st_uid != os.getuid():
                    raise HpcflowError(f"secret_file {p} is not yours (uid {st.st_uid})")
                if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise HpcflowError(
                        f"secret_file {p} is readable by others; run `chmod 600 {p}`"
                    )
                raw = os.read(fd, SECRET_BYTES)
            finally:
                os.close(fd)
        except OSError as e:
            raise HpcflowError(f"secret_file {p}: {e.strerror or e}") from e
        line = raw.decode("utf-8", errors="replace").split("\n", 1)[0].strip()
        return Secret(line) if line else None
    return None
