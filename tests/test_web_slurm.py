"""`hpcflow serve` over a finished lab run: the API's counts equal `status --json`, and the
runs page and the run page show them in a real headless Chromium with no console errors; the
background sync brings a running run to its end without any client asking (docs/web.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .browser import blank_png
from .helpers import status, submit
from .web_server import serving

pytestmark = [pytest.mark.slurm, pytest.mark.browser]

WF = """\
name: webrun
steps:
  - name: a
    foreach: {i: {range: [1, 6]}}
    run: |
      echo "element {{ item.i }}"
      [ {{ item.i }} = 4 ] && { echo "boom <b>4</b>" >&2; exit 3; }
      true
  - name: b
    after: {a: any}
    run: sleep 4
"""


def test_a_lab_run_on_the_dashboard(slurm, hpcflow, tmp_path: Path, site_file: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    db = tmp_path / "db" / "tracker.db"
    sub = submit(hpcflow, site_file, wf)
    run_id = sub["run_id"]
    with serving(db, tmp_path) as s:  # with the background sync: nobody calls status
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            doc = s.get(f"/api/runs/{run_id}")[1]
            if doc["state"] not in ("PENDING", "RUNNING"):
                break
            time.sleep(1)
        assert doc["state"] == "FAILED", doc
        cli = status(hpcflow, run_id)
        api = s.get(f"/api/runs/{run_id}")[1]
        assert (
            {n: st["states"] for n, st in api["steps"].items()}
            == {n: st["states"] for n, st in cli["steps"].items()}
            == {"a": {"COMPLETED": 5, "FAILED": 1}, "b": {"COMPLETED": 1}}
        )
        tasks = s.get(f"/api/runs/{run_id}/tasks?step=a&state=FAILED")[1]["tasks"]
        assert [(t["index"], t["exit_code"]) for t in tasks] == [(3, 3)]
        err = s.get(f"/api/runs/{run_id}/logs/a/3?stream=stderr&tail=5")[1]["lines"]
        assert "boom <b>4</b>" in err

        runs_png = _page_png(s.base + "/", f'tr[data-run="{run_id}"] td[data-total]', "7",
                             "dashboard-runs.png")  # fmt: skip
        run_png = _page_png(s.base + f"/runs/{run_id}", 'td[data-step="a"][data-state="FAILED"]',
                            "1", "dashboard-run.png")  # fmt: skip
        log_png = _page_png(s.base + f"/runs/{run_id}/logs/a/3?stream=stderr&follow=1", "#log",
                            None, "dashboard-log.png")  # fmt: skip
    blank = len(blank_png())
    assert min(len(runs_png), len(run_png), len(log_png)) > 3 * blank


def _page_png(url: str, selector: str, want: str | None, name: str) -> bytes:
    """Open ``url``: no console errors, no request off the server, ``selector`` shows
    ``want``; a screenshot under tests/artifacts/."""
    from playwright.sync_api import sync_playwright

    from .browser import ARTIFACTS, FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = b.new_page(viewport={"width": 1200, "height": 1400})
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url, wait_until="load")
        if "follow=1" in url:  # the page refetches the log itself (2 s), within the CSP
            page.wait_for_timeout(2600)
            assert any("/api/runs/" in r and "/logs/" in r for r in requests), requests
        text = page.locator(selector).first.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        png: bytes = page.screenshot(path=str(ARTIFACTS / name))
        b.close()
    base = url.split("/", 3)[:3]
    assert errors == [], errors
    assert all(r.split("/", 3)[:3] == base for r in requests), requests
    if want is not None:
        assert text.strip() == want, (selector, text)
    else:
        assert "boom <b>4</b>" in text  # the log, as text
    return png
