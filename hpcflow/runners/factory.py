"""The runner for a site: LocalRunner on the login node, SSHRunner when the site names a
login host (one connection per process, reused by every call)."""

from __future__ import annotations

import threading
from typing import Any

from hpcflow.runners.base import LocalRunner, Runner

_RUNNERS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def runner_for(site: Any) -> Runner:
    if site is None or not site.login.host:
        return LocalRunner()
    from hpcflow.runners.ssh import SSHRunner

    lg = site.login
    key = (lg.host, lg.user, lg.port, lg.key, lg.known_hosts)
    with _LOCK:
        if key not in _RUNNERS:
            _RUNNERS[key] = SSHRunner(
                lg.host, user=lg.user, port=lg.port, key=lg.key, known_hosts=lg.known_hosts
            )
        return _RUNNERS[key]  # type: ignore[no-any-return]
