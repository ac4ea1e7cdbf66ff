"""`hpcflow report` of a synthetic 100,000-element run in a real headless Chromium: small,
self-contained, counts equal to `status --json`, user text escaped (docs/report.md).
The report of a lab run is checked in tests/test_efficiency_slurm.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .browser import blank_png, opened
from .synthetic import finished_run

pytestmark = pytest.mark.browser


def visible_counts(page, steps: dict) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in steps:
        for cell in page.locator(f'td[data-step="{name}"]').all():
            state = cell.get_attribute("data-state")
            n = int(cell.inner_text())
            if state != "total" and n:
                out.setdefault(name, {})[state] = n
    return out


def test_a_100k_element_report_opens_in_chromium(hpcflow, tmp_path: Path) -> None:
    """Its load time is measured by benchmarks/report_bench.py (docs/benchmarks.md)."""
    db, run_id = finished_run(tmp_path, 33_333)  # 100,001 elements
    env = {"HPCFLOW_DB": str(db)}
    out = tmp_path / "report.html"
    hpcflow("report", run_id, "-o", str(out), check=True, extra_env=env)
    size = out.stat().st_size
    assert size < 5 * 1024 * 1024, size
    html = out.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    doc = json.loads(hpcflow("status", run_id, "--json", check=True, extra_env=env).stdout)
    assert sum(st["total"] for st in doc["steps"].values()) == 100_001
    with opened(out) as b:
        assert b.console_errors == []
        assert b.requests == [out.resolve().as_uri()]  # the file itself, nothing else
        want = {n: st["states"] for n, st in doc["steps"].items()}
        assert visible_counts(b.page, doc["steps"]) == want
        failed = sum(st["states"].get(k, 0) for st in doc["steps"].values()
                     for k in ("FAILED", "OUT_OF_MEMORY"))  # fmt: skip
        assert failed == 268  # every 500th RAS element and the next
        assert f"Failed elements ({failed})" in b.page.locator("#failures").inner_text()
        png = b.screenshot("report-100k.png")
    assert len(png) > 5 * len(blank_png()), "the screenshot looks blank"


def test_what_users_wrote_is_escaped(hpcflow, tmp_path: Path) -> None:
    db, run_id = finished_run(tmp_path, 20)
    evil = '<img src="http://example.invalid/x.png" onerror="alert(1)">'
    with sqlite3.connect(db) as c:
        c.execute("UPDATE run SET label = ?", (evil,))
        c.execute("UPDATE task SET reason = ? WHERE state = 'FAILED'", (evil,))
    log = tmp_path / "run" / "logs" / "ras" / "0" / "0.err"
    log.parent.mkdir(parents=True)
    log.write_text("line one\n" + evil + "\n</pre><script>alert(2)</script>\n")
    out = tmp_path / "report.html"
    hpcflow("report", run_id, "-o", str(out), check=True, extra_env={"HPCFLOW_DB": str(db)})
    html = out.read_text()
    assert evil not in html and "<script>" not in html
    assert "&lt;img src=&quot;http://example.invalid/x.png&quot;" in html
    with opened(out) as b:
        assert b.console_errors == [] and b.requests == [out.resolve().as_uri()]
        text = b.page.locator("#failures").inner_text() + b.page.locator("body").inner_text()
        assert evil in text  # shown as text, as written
        assert "alert(2)" in text and b.page.locator("img").count() == 0
