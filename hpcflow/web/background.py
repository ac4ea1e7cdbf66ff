"""The dashboard's background sync: every few seconds, what `hpcflow status` would do for the
active runs (under the site's poll budget, so Slurm is asked at most once per poll interval
whatever the browsers do)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_S = 5.0


def start(db_path: Path, stop: threading.Event) -> threading.Thread:
    t = threading.Thread(target=_loop, args=(db_path, stop), name="hpcflow-sync", daemon=True)
    t.start()
    return t


def _loop(db_path: Path, stop: threading.Event) -> None:
    from hpcflow.runners.factory import runner_for
    from hpcflow.spec.site import load_site
    from hpcflow.store.db import open_db
    from hpcflow.tracker.query import active_runs
    from hpcflow.tracker.sync import sync

    engine = open_db(db_path)
    while not stop.wait(EVERY_S):
        try:
            by_site: dict[str, list] = {}
            for r in active_runs(engine):
                by_site.setdefault(r.site, []).append(r)
            for source, runs in by_site.items():
                site = load_site(source)
                sync(engine, runner_for(site), site, runs)
        except Exception as e:  # noqa: BLE001 - the server goes on; the next round retries
            log.warning("hpcflow serve: background sync failed: %s", e)
